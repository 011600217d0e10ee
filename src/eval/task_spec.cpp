// The declared keys of a task YAML, and loading one into a TaskSpec.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "xdistill/config/config.h"
#include "xdistill/eval/task.h"
#include "xdistill/util/error.h"

namespace xd::eval {
using config::field;
using config::Schema;
using config::Type;
namespace stdfs = std::filesystem;

const char* task_type_name(TaskType t) {
  switch (t) {
    case TaskType::multiple_choice: return "multiple_choice";
    case TaskType::generate_until: return "generate_until";
    case TaskType::loglikelihood_rolling: return "loglikelihood_rolling";
  }
  return "?";
}

const Schema& task_schema() {
  static const Schema schema = [] {
    Schema s("task definition");
    s.add_required("task", Type::String, "task name (the key in the results file)");
    s.add_required("type", Type::String, "what is scored",
                   {"multiple_choice", "generate_until", "loglikelihood_rolling"});
    s.add("version", Type::Int, "1", "version of the task definition, reported in results");
    s.add_records("dataset.splits",
                  {field("name", Type::String, "~", "split name, e.g. test, train, validation"),
                   field("path", Type::String, "~", "JSONL file, one document per line (relative to this YAML)")},
                  "the task's data files by split", "~");
    s.add("dataset.eval_split", Type::String, "test", "split that is scored");
    s.add("dataset.id_field", Type::String, "\"\"", "document field used as sample id; empty = line number");
    s.add("fewshot.num", Type::Int, "0", "number of few-shot examples before each document");
    s.add("fewshot.split", Type::String, "train", "split the few-shot examples are drawn from");
    s.add("fewshot.seed", Type::Int, "1234", "seed of the few-shot draw (drawn per document, the document excluded)");
    s.add("fewshot.delimiter", Type::String, "\"\\n\\n\"", "text between few-shot examples");
    s.add("description", Type::String, "\"\"", "text put before the few-shot examples");
    s.add_required("doc.text", Type::String,
                   "template of the context (multiple_choice), prompt (generate_until) or text (rolling), "
                   "e.g. \"Question: {{question}}\\nAnswer:\"");
    s.add("doc.target", Type::String, "\"\"",
          "template of a few-shot example's answer; empty = the gold choice / the gold answer");
    s.add("doc.target_delimiter", Type::String, "\" \"", "text between the context and an answer");
    s.add("doc.choices_field", Type::String, "choices", "multiple_choice: field holding the list of choices");
    s.add("doc.gold_field", Type::String, "label", "multiple_choice: field holding the gold index or choice text");
    s.add("doc.answer", Type::String, "\"\"", "generate_until: template of the gold answer, e.g. \"{{answer}}\"");
    s.add("generation.until", Type::StringList, "[\"\\n\\n\"]", "stop sequences (the end-of-text token always stops)");
    s.add("generation.max_new_tokens", Type::Int, "256", "token budget of one generation");
    s.add("answer.regex", Type::String, "\"\"", "PCRE2 regex extracting the answer; empty = the whole generation");
    s.add("answer.group", Type::Int, "1", "capture group of answer.regex (0 = the whole match)");
    s.add("answer.select", Type::String, "first", "which match counts when there are several", {"first", "last"});
    s.add("answer.fallback", Type::String, "\"[invalid]\"", "answer when the regex does not match");
    s.add("answer.gold_regex", Type::String, "\"\"", "regex extracting the gold answer from doc.answer (group 1)");
    s.add("answer.filter_name", Type::String, "\"\"",
          "filter name in the metric key (exact_match,NAME); empty = strict-match with a regex, else none");
    s.add("normalize.ignore_case", Type::Bool, "false", "compare case-insensitively");
    s.add("normalize.ignore_punctuation", Type::Bool, "false", "drop ASCII punctuation before comparing");
    s.add("normalize.strip", Type::Bool, "true", "trim surrounding white space before comparing");
    s.add("normalize.regexes_to_ignore", Type::StringList, "[]", "regexes whose matches are deleted before comparing");
    s.add("chat_template", Type::Bool, "false", "wrap the prompt in the tokenizer's chat template (one user turn)");
    s.add("limit", Type::Int, "~", "score at most this many documents (the first ones)");
    s.add("rolling.max_length", Type::Int, "0", "loglikelihood_rolling window in tokens; 0 = the model's context");
    return s;
  }();
  return schema;
}

namespace {

TaskType parse_type(const std::string& s) {
  if (s == "multiple_choice") return TaskType::multiple_choice;
  if (s == "generate_until") return TaskType::generate_until;
  return TaskType::loglikelihood_rolling;  // the schema admits no other value
}

std::string split_path(const config::Config& c, const std::string& split, const stdfs::path& dir,
                       const std::string& yaml, bool required) {
  for (const auto& r : c.records("dataset.splits"))
    if (r.get<std::string>("name") == split) {
      stdfs::path p = r.get<std::string>("path");
      return (p.is_absolute() ? p : dir / p).lexically_normal().string();
    }
  if (required) throw UsageError(yaml + ": dataset.splits has no split named '" + split + "'");
  return "";
}

}  // namespace

TaskSpec load_task(const std::string& yaml_path) {
  if (!stdfs::is_regular_file(yaml_path)) throw UsageError("task file not found: " + yaml_path);
  auto c = config::Config::load(task_schema(), {yaml_path});
  c.check_required();
  const stdfs::path dir = stdfs::path(yaml_path).parent_path();
  TaskSpec t;
  t.yaml_path = yaml_path;
  t.name = c.get<std::string>("task");
  t.type = parse_type(c.get<std::string>("type"));
  t.version = c.get<int64_t>("version");
  if (c.records("dataset.splits").empty()) throw UsageError(yaml_path + ": dataset.splits lists no data file");
  t.eval_split = c.get<std::string>("dataset.eval_split");
  t.eval_split_path = split_path(c, t.eval_split, dir, yaml_path, true);
  t.id_field = c.get<std::string>("dataset.id_field");
  t.num_fewshot = c.get<int64_t>("fewshot.num");
  if (t.num_fewshot < 0) throw UsageError(yaml_path + ": fewshot.num must be >= 0");
  t.fewshot_split = c.get<std::string>("fewshot.split");
  if (t.num_fewshot > 0) t.fewshot_split_path = split_path(c, t.fewshot_split, dir, yaml_path, true);
  t.fewshot_seed = static_cast<uint64_t>(c.get<int64_t>("fewshot.seed"));
  t.fewshot_delimiter = c.get<std::string>("fewshot.delimiter");
  t.description = c.get<std::string>("description");
  t.text_template = c.get<std::string>("doc.text");
  t.target_template = c.get<std::string>("doc.target");
  t.target_delimiter = c.get<std::string>("doc.target_delimiter");
  t.choices_field = c.get<std::string>("doc.choices_field");
  t.gold_field = c.get<std::string>("doc.gold_field");
  t.answer_template = c.get<std::string>("doc.answer");
  if (t.type == TaskType::generate_until && t.answer_template.empty())
    throw UsageError(yaml_path + ": generate_until needs doc.answer, the template of the gold answer");
  t.until = c.get<std::vector<std::string>>("generation.until");
  t.max_new_tokens = c.get<int64_t>("generation.max_new_tokens");
  if (t.max_new_tokens <= 0) throw UsageError(yaml_path + ": generation.max_new_tokens must be > 0");
  t.answer.regex = c.get<std::string>("answer.regex");
  t.answer.group = static_cast<int>(c.get<int64_t>("answer.group"));
  t.answer.select = c.get<std::string>("answer.select");
  t.answer.fallback = c.get<std::string>("answer.fallback");
  t.answer.gold_regex = c.get<std::string>("answer.gold_regex");
  t.answer.filter_name = c.get<std::string>("answer.filter_name");
  if (t.answer.filter_name.empty()) t.answer.filter_name = t.answer.regex.empty() ? "none" : "strict-match";
  if (t.answer.filter_name.find(',') != std::string::npos)
    throw UsageError(yaml_path + ": answer.filter_name may not contain ','");
  t.answer.ignore_case = c.get<bool>("normalize.ignore_case");
  t.answer.ignore_punctuation = c.get<bool>("normalize.ignore_punctuation");
  t.answer.strip = c.get<bool>("normalize.strip");
  t.answer.regexes_to_ignore = c.get<std::vector<std::string>>("normalize.regexes_to_ignore");
  t.chat_template = c.get<bool>("chat_template");
  if (c.has("limit")) t.limit = c.get<int64_t>("limit");
  t.rolling_max_length = c.get<int64_t>("rolling.max_length");
  t.resolved_yaml = c.dump();
  return t;
}

std::vector<std::string> expand_task_paths(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) {
    if (!stdfs::is_directory(p)) {
      out.push_back(p);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& e : stdfs::directory_iterator(p)) {
      const auto ext = e.path().extension();
      if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml")) found.push_back(e.path().string());
    }
    if (found.empty()) throw UsageError("--tasks " + p + ": the folder holds no .yaml task file");
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open the task's data file");
  std::vector<nlohmann::json> docs;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      docs.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::parse_error& e) {
      throw Error(path + ":" + std::to_string(n) + ": not valid JSON: " + e.what());
    }
    if (!docs.back().is_object())
      throw Error(path + ":" + std::to_string(n) + ": expected a JSON object per line");
  }
  return docs;
}

std::string render_template(const std::string& tmpl, const nlohmann::json& doc, const std::string& task) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t open = tmpl.find("{{", pos);
    if (open == std::string::npos) break;
    const size_t close = tmpl.find("}}", open + 2);
    if (close == std::string::npos) throw Error("task '" + task + "': unclosed '{{' in template \"" + tmpl + "\"");
    out += tmpl.substr(pos, open - pos);
    std::string name = tmpl.substr(open + 2, close - open - 2);
    name.erase(0, name.find_first_not_of(' '));
    name.erase(name.find_last_not_of(' ') + 1);
    if (!doc.contains(name))
      throw Error("task '" + task + "': a document has no field '" + name + "' (used in \"" + tmpl + "\")");
    out += doc[name].is_string() ? doc[name].get<std::string>() : doc[name].dump();
    pos = close + 2;
  }
  return out + tmpl.substr(pos);
}

}  // namespace xd::eval
