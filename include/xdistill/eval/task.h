// Task definitions for `xdistill eval run`: a YAML file, declared with the config
// system (`xdistill config options --kind task` lists every key), pointing at local
// JSONL files, one document per line. Three types, as in lm-evaluation-harness:
//   multiple_choice        context + choices + gold -> acc, acc_norm
//   generate_until         prompt -> greedy generation until a stop sequence
//                          -> answer extraction (regex) -> normalisation -> exact_match
//   loglikelihood_rolling  whole text -> word/byte perplexity, bits per byte
// Templates such as "Question: {{question}}\nAnswer:" take fields of the document.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "xdistill/config/schema.h"

namespace xd::eval {

enum class TaskType { multiple_choice, generate_until, loglikelihood_rolling };
const char* task_type_name(TaskType t);

struct AnswerSpec {
  std::string regex;          // empty: the whole generation is the answer
  int group = 1;              // capture group of the regex (0 = whole match)
  std::string select = "first";  // which match when several: first | last
  std::string fallback = "[invalid]";
  std::string gold_regex;     // applied to the gold text (e.g. "#### (.*)"); empty: as is
  std::string filter_name;    // the filter part of the metric key ("strict-match")
  // Normalisation before comparing, as the harness's exact_match options.
  bool ignore_case = false, ignore_punctuation = false, strip = true;
  std::vector<std::string> regexes_to_ignore;
};

struct TaskSpec {
  std::string name, yaml_path;
  TaskType type = TaskType::multiple_choice;
  int64_t version = 1;
  std::string eval_split_path, fewshot_split_path;  // resolved file paths
  std::string eval_split, fewshot_split;
  int64_t num_fewshot = 0;
  uint64_t fewshot_seed = 1234;
  std::string fewshot_delimiter = "\n\n", target_delimiter = " ", description;
  std::string id_field;       // empty: the line number is the id
  std::string text_template;  // context (MC), prompt (generation), text (rolling)
  std::string target_template;  // few-shot answer text; empty: the gold choice (MC) / answer (generation)
  std::string choices_field, gold_field;  // MC
  std::string answer_template;            // generation: the gold answer
  std::vector<std::string> until;         // generation stop sequences
  int64_t max_new_tokens = 256;
  AnswerSpec answer;
  bool chat_template = false;
  std::optional<int64_t> limit;
  int64_t rolling_max_length = 0;          // 0: the model's maximum context
  std::string resolved_yaml;               // the full resolved definition, kept in results
};

const config::Schema& task_schema();

// Loads and validates one task YAML; relative data paths are relative to the YAML's folder.
TaskSpec load_task(const std::string& yaml_path);
// Expands directories into their *.yaml/*.yml files (sorted); files are kept as given.
std::vector<std::string> expand_task_paths(const std::vector<std::string>& paths);

// Reads a JSONL file of objects; errors name the file and line.
std::vector<nlohmann::json> read_jsonl(const std::string& path);

// Replaces each "{{field}}" by the document's field (strings as is, other values as
// JSON text). Throws naming the task and the field when the document lacks it.
std::string render_template(const std::string& tmpl, const nlohmann::json& doc, const std::string& task);

}  // namespace xd::eval
