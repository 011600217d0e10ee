// Reading evaluation result files: xdistill's own (`xdistill eval run`) and
// EleutherAI lm-evaluation-harness's (results_<date>.json).
//
// Both share the harness's layout, so one reader serves both:
//   { "results": { task: { "acc,none": 0.71, "acc_stderr,none": 0.01, "alias": "arc_easy" } },
//     "groups": {...}, "group_subtasks": { group: [task, ...] },
//     "higher_is_better": { task: { "acc": true } }, "n-samples": {...}, "configs": {...}, ... }
// Keys are "metric,filter"; a key without a comma is read with filter "none".
// xdistill's files add "xdistill": {"version": N, ...} and "samples": { task: [ {id, ...} ] }
// (per-sample records, which enable the paired bootstrap).
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace xd::eval {

struct MetricValue {
  double value = 0;
  std::optional<double> stderr_value;  // absent or "N/A" in the file -> empty
};

struct TaskResults {
  std::string name;
  std::map<std::string, MetricValue> metrics;  // "metric,filter" -> value
  std::map<std::string, bool> higher_is_better; // "metric" -> direction, where the file says
  nlohmann::json samples;                        // array of per-sample records, or null
  bool is_subtask = false;                       // listed under some group in group_subtasks
};

struct ResultsFile {
  std::string path;
  std::string format;      // "xdistill" or "lm-eval"
  std::string model_name;  // from the file where present, else the file's stem
  std::map<std::string, TaskResults> tasks;
};

ResultsFile parse_results(const nlohmann::json& root, const std::string& path);
ResultsFile load_results(const std::string& path);

// "acc,none" -> {"acc", "none"}; "acc" -> {"acc", "none"}.
std::pair<std::string, std::string> split_metric_key(const std::string& key);

// Which metric represents a task. Empty filter = choose automatically.
struct MetricChoice {
  std::string metric;
  std::string filter;
};
// Parses "acc_norm" or "exact_match,strict-match".
MetricChoice parse_metric_choice(const std::string& text);

// The metric chosen for one task, with its value, standard error and direction.
struct SelectedMetric {
  std::string key;     // "metric,filter" as in the file
  std::string metric;  // without the filter
  MetricValue value;
  bool higher_is_better = true;
};

// Default preference when no choice is given: acc_norm, acc, exact_match (filter
// strict-match, then none, then any), pass@1, prompt-level strict accuracy, ...,
// then the lower-is-better language-modelling metrics (word perplexity first). Empty when the task has none
// of them (the caller lists it as skipped).
std::optional<SelectedMetric> select_metric(const TaskResults& task,
                                            const std::optional<MetricChoice>& choice);

// Direction of a metric when the file does not say: perplexities, bits per byte
// and losses are lower-is-better, everything else higher-is-better.
bool default_higher_is_better(const std::string& metric);

}  // namespace xd::eval
