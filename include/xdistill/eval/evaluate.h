// Scoring one task through a LanguageModelBackend, and assembling a results file in
// lm-evaluation-harness's layout (readable by `eval compare` and by harness tools).
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "xdistill/eval/lm_backend.h"
#include "xdistill/eval/task.h"

namespace xd::eval {

struct MetricResult {
  double value = 0;
  std::optional<double> stderr_value;
  bool higher_is_better = true;
};

struct TaskOutcome {
  std::string name;
  std::map<std::string, MetricResult> metrics;  // "metric,filter"
  nlohmann::json samples = nlohmann::json::array();  // per-sample records: id + per-metric scores
  int64_t n_original = 0, n_effective = 0;
};

// `limit` (when set) overrides the task's own limit.
TaskOutcome evaluate_task(const TaskSpec& task, LanguageModelBackend& backend,
                          std::optional<int64_t> limit = std::nullopt);

// The documents' prompts: description, seeded few-shot examples (the document itself
// excluded when both come from the same split), then the document's text.
std::string build_prompt(const TaskSpec& task, const nlohmann::json& doc, size_t doc_index,
                         const std::vector<nlohmann::json>& fewshot_pool, bool same_split);

// Indices of `k` few-shot examples out of `pool_size`, drawn without replacement
// from a generator seeded by (seed, doc_key), skipping `exclude` (pool_size = none).
std::vector<size_t> draw_fewshot(size_t pool_size, size_t k, uint64_t seed, const std::string& doc_key,
                                 size_t exclude);

// Mean and standard error of the mean (sample standard deviation, n − 1), as the harness.
std::pair<double, std::optional<double>> mean_and_stderr(const std::vector<double>& values);
// Number of Unicode code points of UTF-8 text (the harness's len() of a Python str).
size_t count_characters(const std::string& utf8);
// Words as the harness counts them for word perplexity: pieces of re.split(r"\s+", text).
size_t count_words(const std::string& text);

// {results, higher_is_better, n-shot, n-samples, versions, configs, samples, xdistill: header}.
nlohmann::json results_json(const std::vector<TaskSpec>& tasks, const std::vector<TaskOutcome>& outcomes,
                            const nlohmann::json& header);

}  // namespace xd::eval
