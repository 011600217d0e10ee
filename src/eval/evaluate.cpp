// Scoring the three task types through a LanguageModelBackend, and the results file.
#include <cmath>
#include <tuple>

#include "xdistill/eval/answer.h"
#include "xdistill/eval/evaluate.h"
#include "xdistill/util/error.h"
#include "xdistill/util/log.h"

namespace xd::eval {
using nlohmann::json;

namespace {

struct Docs {
  std::vector<json> eval, fewshot;
  bool same_split = false;
  int64_t n_original = 0;
};

Docs load_docs(const TaskSpec& task, std::optional<int64_t> limit) {
  Docs d;
  d.eval = read_jsonl(task.eval_split_path);
  d.n_original = static_cast<int64_t>(d.eval.size());
  if (task.num_fewshot > 0) {
    d.same_split = task.fewshot_split_path == task.eval_split_path;
    d.fewshot = d.same_split ? d.eval : read_jsonl(task.fewshot_split_path);
  }
  if (!limit) limit = task.limit;
  if (limit && *limit >= 0 && *limit < d.n_original) d.eval.resize(*limit);
  if (d.eval.empty()) throw Error("task '" + task.name + "': " + task.eval_split_path + " holds no document");
  return d;
}

json sample_id(const TaskSpec& task, const json& doc, size_t index) {
  if (task.id_field.empty()) return std::to_string(index);
  if (!doc.contains(task.id_field))
    throw Error(detail_concat("task '", task.name, "': document ", index, " has no id field '", task.id_field, "'"));
  const json& id = doc[task.id_field];
  return id.is_string() ? id : json(id.dump());
}

std::string prompt_of(const TaskSpec& task, const Docs& d, size_t i, LanguageModelBackend& backend) {
  std::string prompt = build_prompt(task, d.eval[i], i, d.fewshot, d.same_split);
  return task.chat_template ? backend.apply_chat_template(prompt) : prompt;
}

void add_mean_metric(TaskOutcome& out, const std::string& key, const std::vector<double>& values) {
  auto [mean, se] = mean_and_stderr(values);
  out.metrics[key] = {mean, se, true};
}

// Choices and gold index of one multiple-choice document, validated.
std::pair<std::vector<std::string>, size_t> choices_and_gold(const TaskSpec& task, const json& doc, size_t i) {
  auto where = [&] { return detail_concat("task '", task.name, "', document ", i, ": "); };
  if (!doc.contains(task.choices_field) || !doc[task.choices_field].is_array() || doc[task.choices_field].empty())
    throw Error(where() + "field '" + task.choices_field + "' must be a non-empty list of choices");
  std::vector<std::string> choices;
  for (const auto& c : doc[task.choices_field]) choices.push_back(c.is_string() ? c.get<std::string>() : c.dump());
  if (!doc.contains(task.gold_field)) throw Error(where() + "no gold field '" + task.gold_field + "'");
  const json& gold = doc[task.gold_field];
  if (gold.is_number_integer()) {
    const int64_t g = gold.get<int64_t>();
    if (g < 0 || g >= static_cast<int64_t>(choices.size()))
      throw Error(where() + detail_concat("gold index ", g, " is outside the ", choices.size(), " choices"));
    return {choices, static_cast<size_t>(g)};
  }
  for (size_t c = 0; c < choices.size(); ++c)
    if (gold.is_string() && choices[c] == gold.get<std::string>()) return {choices, c};
  throw Error(where() + "gold " + gold.dump() + " is neither a choice index nor one of the choices");
}

void run_multiple_choice(const TaskSpec& task, const Docs& d, LanguageModelBackend& backend, TaskOutcome& out) {
  std::vector<LoglikelihoodQuery> queries;
  std::vector<std::vector<std::string>> choices(d.eval.size());
  std::vector<size_t> gold(d.eval.size());
  // In chat mode the answer opens the assistant's turn, so no delimiter precedes it.
  const std::string delimiter = task.chat_template ? "" : task.target_delimiter;
  for (size_t i = 0; i < d.eval.size(); ++i) {
    std::tie(choices[i], gold[i]) = choices_and_gold(task, d.eval[i], i);
    const std::string context = prompt_of(task, d, i, backend);
    for (const auto& c : choices[i]) queries.push_back({context, delimiter + c});
  }
  const auto answers = backend.loglikelihood(queries, task.name);
  std::vector<double> acc, acc_norm;
  size_t q = 0;
  for (size_t i = 0; i < d.eval.size(); ++i) {
    json lls = json::array();
    size_t best = 0, best_norm = 0;
    double best_ll = -INFINITY, best_norm_ll = -INFINITY;
    for (size_t c = 0; c < choices[i].size(); ++c, ++q) {
      const double ll = answers[q].logprob;
      // acc_norm divides by the choice's length in characters, as the harness does.
      const double norm = ll / std::max<size_t>(1, count_characters(choices[i][c]));
      lls.push_back(ll);
      if (ll > best_ll) best_ll = ll, best = c;          // first maximum wins, as numpy's argmax
      if (norm > best_norm_ll) best_norm_ll = norm, best_norm = c;
    }
    acc.push_back(best == gold[i]);
    acc_norm.push_back(best_norm == gold[i]);
    out.samples.push_back({{"id", sample_id(task, d.eval[i], i)}, {"acc", acc.back()}, {"acc_norm", acc_norm.back()},
                           {"gold", gold[i]}, {"pred", best}, {"loglikelihoods", lls}});
  }
  add_mean_metric(out, "acc,none", acc);
  add_mean_metric(out, "acc_norm,none", acc_norm);
}

void run_generate_until(const TaskSpec& task, const Docs& d, LanguageModelBackend& backend, TaskOutcome& out) {
  check_answer_regexes(task.answer, task.name);
  std::vector<GenerationQuery> queries;
  for (size_t i = 0; i < d.eval.size(); ++i)
    queries.push_back({prompt_of(task, d, i, backend), task.until, task.max_new_tokens});
  const auto generations = backend.generate_until(queries, task.name);
  std::vector<double> em;
  for (size_t i = 0; i < d.eval.size(); ++i) {
    const std::string gold = extract_gold(render_template(task.answer_template, d.eval[i], task.name), task.answer);
    const std::string pred = extract_answer(generations[i], task.answer);
    em.push_back(exact_match(pred, gold, task.answer));
    out.samples.push_back({{"id", sample_id(task, d.eval[i], i)}, {"exact_match", em.back()},
                           {"generation", generations[i]}, {"extracted", pred}, {"gold", gold}});
  }
  add_mean_metric(out, "exact_match," + task.answer.filter_name, em);
}

void run_rolling(const TaskSpec& task, const Docs& d, LanguageModelBackend& backend, TaskOutcome& out) {
  std::vector<std::string> texts;
  for (const auto& doc : d.eval) texts.push_back(render_template(task.text_template, doc, task.name));
  const auto answers = backend.loglikelihood_rolling(texts, task.rolling_max_length, task.name);
  double nll = 0, words = 0, bytes = 0, tokens = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const double w = count_words(texts[i]), b = texts[i].size();
    nll -= answers[i].logprob, words += w, bytes += b, tokens += answers[i].tokens;
    out.samples.push_back({{"id", sample_id(task, d.eval[i], i)}, {"loglikelihood", answers[i].logprob},
                           {"words", w}, {"bytes", b}, {"tokens", answers[i].tokens}});
  }
  // Corpus-level ratios as the harness aggregates them; no standard error is given.
  out.metrics["word_perplexity,none"] = {std::exp(nll / words), std::nullopt, false};
  out.metrics["byte_perplexity,none"] = {std::exp(nll / bytes), std::nullopt, false};
  out.metrics["bits_per_byte,none"] = {nll / bytes / std::log(2.0), std::nullopt, false};
  out.metrics["token_perplexity,none"] = {std::exp(nll / std::max(1.0, tokens)), std::nullopt, false};
}

}  // namespace

TaskOutcome evaluate_task(const TaskSpec& task, LanguageModelBackend& backend, std::optional<int64_t> limit) {
  const Docs d = load_docs(task, limit);
  TaskOutcome out;
  out.name = task.name;
  out.n_original = d.n_original;
  out.n_effective = static_cast<int64_t>(d.eval.size());
  log::info("task ", task.name, " (", task_type_name(task.type), "): ", out.n_effective, " of ", out.n_original,
            " documents, ", task.num_fewshot, "-shot");
  switch (task.type) {
    case TaskType::multiple_choice: run_multiple_choice(task, d, backend, out); break;
    case TaskType::generate_until: run_generate_until(task, d, backend, out); break;
    case TaskType::loglikelihood_rolling: run_rolling(task, d, backend, out); break;
  }
  return out;
}

json results_json(const std::vector<TaskSpec>& tasks, const std::vector<TaskOutcome>& outcomes,
                  const json& header) {
  json j = {{"results", json::object()}, {"higher_is_better", json::object()}, {"n-shot", json::object()},
            {"n-samples", json::object()}, {"versions", json::object()}, {"configs", json::object()},
            {"samples", json::object()}, {"xdistill", header}};
  for (size_t t = 0; t < outcomes.size(); ++t) {
    const auto& o = outcomes[t];
    json r = {{"alias", o.name}};
    for (const auto& [key, m] : o.metrics) {
      const auto comma = key.find(',');
      const std::string metric = key.substr(0, comma), filter = key.substr(comma + 1);
      r[key] = m.value;
      r[metric + "_stderr," + filter] = m.stderr_value ? json(*m.stderr_value) : json("N/A");
      j["higher_is_better"][o.name][metric] = m.higher_is_better;
    }
    j["results"][o.name] = r;
    j["n-shot"][o.name] = tasks[t].num_fewshot;
    j["n-samples"][o.name] = {{"original", o.n_original}, {"effective", o.n_effective}};
    j["versions"][o.name] = tasks[t].version;
    j["configs"][o.name] = {{"task", tasks[t].name}, {"output_type", task_type_name(tasks[t].type)},
                            {"yaml_path", tasks[t].yaml_path}, {"resolved", tasks[t].resolved_yaml}};
    j["samples"][o.name] = o.samples;
  }
  return j;
}

}  // namespace xd::eval
