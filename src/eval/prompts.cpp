// Prompt construction (description, few-shot examples, document) and the small
// counting helpers the harness's metrics rely on.
#include <cmath>

#include "xdistill/eval/bootstrap.h"
#include "xdistill/eval/evaluate.h"
#include "xdistill/util/error.h"

namespace xd::eval {
using nlohmann::json;

namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// The answer text of a few-shot example: doc.target when set, else the gold choice
// (multiple_choice) or the gold answer (generate_until).
std::string example_target(const TaskSpec& task, const json& doc) {
  if (!task.target_template.empty()) return render_template(task.target_template, doc, task.name);
  if (task.type == TaskType::generate_until) return render_template(task.answer_template, doc, task.name);
  const json& choices = doc.at(task.choices_field);
  const json& gold = doc.at(task.gold_field);
  if (gold.is_number_integer()) return choices.at(gold.get<size_t>()).get<std::string>();
  return gold.get<std::string>();
}

}  // namespace

std::vector<size_t> draw_fewshot(size_t pool_size, size_t k, uint64_t seed, const std::string& doc_key,
                                 size_t exclude) {
  const size_t available = pool_size - (exclude < pool_size ? 1 : 0);
  if (k > available)
    throw Error(detail_concat("few-shot: ", k, " examples requested but the few-shot split has only ", available,
                              " usable documents"));
  // Partial Fisher-Yates over a lazily materialised permutation of [0, pool_size).
  SplitMix64 rng(seed ^ fnv1a(doc_key));
  std::vector<size_t> perm(pool_size);
  for (size_t i = 0; i < pool_size; ++i) perm[i] = i;
  std::vector<size_t> chosen;
  for (size_t i = 0; chosen.size() < k; ++i) {
    const size_t j = i + rng.below(pool_size - i);
    std::swap(perm[i], perm[j]);
    if (perm[i] != exclude) chosen.push_back(perm[i]);
  }
  return chosen;
}

std::string build_prompt(const TaskSpec& task, const json& doc, size_t doc_index,
                         const std::vector<json>& fewshot_pool, bool same_split) {
  std::string prompt = task.description;
  if (task.num_fewshot > 0) {
    const std::string key = std::to_string(doc_index);
    const size_t exclude = same_split ? doc_index : fewshot_pool.size();
    for (size_t i : draw_fewshot(fewshot_pool.size(), task.num_fewshot, task.fewshot_seed, key, exclude)) {
      const json& ex = fewshot_pool[i];
      prompt += render_template(task.text_template, ex, task.name) + task.target_delimiter +
                example_target(task, ex) + task.fewshot_delimiter;
    }
  }
  return prompt + render_template(task.text_template, doc, task.name);
}

std::pair<double, std::optional<double>> mean_and_stderr(const std::vector<double>& v) {
  if (v.empty()) return {std::nan(""), std::nullopt};
  double sum = 0;
  for (double x : v) sum += x;
  const double mean = sum / v.size();
  if (v.size() < 2) return {mean, std::nullopt};
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return {mean, std::sqrt(ss / (v.size() - 1)) / std::sqrt(static_cast<double>(v.size()))};
}

size_t count_characters(const std::string& utf8) {
  size_t n = 0;
  for (unsigned char c : utf8) n += (c & 0xC0) != 0x80;
  return n;
}

size_t count_words(const std::string& text) {
  // re.split(r"\s+", text) yields one more piece than there are runs of white space.
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  size_t runs = 0;
  for (size_t i = 0; i < text.size(); ++i)
    if (space(text[i]) && (i == 0 || !space(text[i - 1]))) ++runs;
  return runs + 1;
}

}  // namespace xd::eval
