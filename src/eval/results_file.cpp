#include "xdistill/eval/results_file.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>

#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

namespace xd::eval {
using nlohmann::json;

std::pair<std::string, std::string> split_metric_key(const std::string& key) {
  const auto comma = key.find(',');
  if (comma == std::string::npos) return {key, "none"};
  return {key.substr(0, comma), key.substr(comma + 1)};
}

MetricChoice parse_metric_choice(const std::string& text) {
  if (text.empty()) throw UsageError("empty metric name");
  const auto comma = text.find(',');
  if (comma == std::string::npos) return {text, ""};
  return {text.substr(0, comma), text.substr(comma + 1)};
}

bool default_higher_is_better(const std::string& metric) {
  static const std::set<std::string> lower = {
      "perplexity", "word_perplexity", "byte_perplexity", "token_perplexity",
      "bits_per_byte", "loss", "ter"};
  return lower.count(metric) == 0;
}

namespace {

bool is_stderr_key(const std::string& metric) {
  const std::string suffix = "_stderr";
  return metric.size() > suffix.size() &&
         metric.compare(metric.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The harness writes numbers, but also "N/A" for standard errors it did not compute
// and strings such as "alias"; only finite numbers count.
std::optional<double> number_of(const json& v) {
  if (v.is_number()) return v.get<double>();
  return std::nullopt;
}

TaskResults parse_task(const std::string& name, const json& entry, const std::string& where) {
  if (!entry.is_object())
    throw Error(where + ": results['" + name + "'] is not an object of metrics");
  TaskResults task;
  task.name = name;
  for (const auto& [key, value] : entry.items()) {
    auto [metric, filter] = split_metric_key(key);
    if (is_stderr_key(metric)) continue;
    auto number = number_of(value);
    if (!number) continue;  // "alias", "name", "sample_len", ...
    MetricValue mv{*number, std::nullopt};
    const std::string stderr_key = metric + "_stderr," + filter;
    if (entry.contains(stderr_key)) mv.stderr_value = number_of(entry[stderr_key]);
    else if (entry.contains(metric + "_stderr")) mv.stderr_value = number_of(entry[metric + "_stderr"]);
    task.metrics[metric + "," + filter] = mv;
  }
  return task;
}

void read_directions(const json& root, ResultsFile& file) {
  if (!root.contains("higher_is_better") || !root["higher_is_better"].is_object()) return;
  for (const auto& [task, metrics] : root["higher_is_better"].items()) {
    auto it = file.tasks.find(task);
    if (it == file.tasks.end() || !metrics.is_object()) continue;
    for (const auto& [metric, flag] : metrics.items())
      if (flag.is_boolean()) it->second.higher_is_better[metric] = flag.get<bool>();
  }
}

void mark_subtasks(const json& root, ResultsFile& file) {
  if (!root.contains("group_subtasks") || !root["group_subtasks"].is_object()) return;
  for (const auto& [group, members] : root["group_subtasks"].items()) {
    if (!members.is_array()) continue;
    for (const auto& m : members) {
      if (!m.is_string()) continue;
      auto it = file.tasks.find(m.get<std::string>());
      if (it != file.tasks.end() && m.get<std::string>() != group) it->second.is_subtask = true;
    }
  }
}

std::string model_name_of(const json& root, const std::string& path) {
  if (root.contains("xdistill") && root["xdistill"].contains("model") && root["xdistill"]["model"].is_string())
    return root["xdistill"]["model"].get<std::string>();
  if (root.contains("model_name") && root["model_name"].is_string() && !root["model_name"].get<std::string>().empty())
    return root["model_name"].get<std::string>();
  return std::filesystem::path(path).stem().string();
}

// lm-evaluation-harness --log_samples writes, beside results_<ts>.json, one
// samples_<task>_<ts>.jsonl per task: a line per (document, filter) with "doc_id",
// "filter", "metrics": [names] and each metric's per-document value.
void read_harness_samples(const std::string& results_path, ResultsFile& file) {
  const std::filesystem::path p(results_path);
  const std::string stem = p.stem().string(), prefix = "results_";
  if (stem.rfind(prefix, 0) != 0) return;
  const std::string stamp = stem.substr(prefix.size());
  for (auto& [name, task] : file.tasks) {
    const auto samples = p.parent_path() / ("samples_" + name + "_" + stamp + ".jsonl");
    if (!std::filesystem::is_regular_file(samples)) continue;
    std::istringstream lines(fs::read_text(samples));
    json records = json::array();
    size_t n = 0;
    for (std::string line; std::getline(lines, line);) {
      ++n;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json r;
      try {
        r = json::parse(line);
      } catch (const json::parse_error& e) {
        throw Error(samples.string() + ":" + std::to_string(n) + ": not valid JSON: " + e.what());
      }
      json kept = {{"id", r.value("doc_id", json(nullptr))}, {"filter", r.value("filter", "none")}};
      for (const auto& m : r.value("metrics", json::array()))
        if (m.is_string() && r.contains(m.get<std::string>()) && r[m.get<std::string>()].is_number())
          kept[m.get<std::string>()] = r[m.get<std::string>()];
      records.push_back(std::move(kept));
    }
    task.samples = std::move(records);
  }
}

}  // namespace

ResultsFile parse_results(const json& root, const std::string& path) {
  if (!root.is_object() || !root.contains("results") || !root["results"].is_object())
    throw Error(path + ": not an evaluation results file: expected a top-level object with "
                "\"results\": {task: {\"metric,filter\": value}} (xdistill eval run or lm-evaluation-harness)");
  ResultsFile file;
  file.path = path;
  file.format = root.contains("xdistill") ? "xdistill" : "lm-eval";
  file.model_name = model_name_of(root, path);
  for (const auto& [name, entry] : root["results"].items())
    file.tasks.emplace(name, parse_task(name, entry, path));
  // Older harness versions report group aggregates only under "groups".
  if (root.contains("groups") && root["groups"].is_object())
    for (const auto& [name, entry] : root["groups"].items())
      if (!file.tasks.count(name)) file.tasks.emplace(name, parse_task(name, entry, path));
  read_directions(root, file);
  mark_subtasks(root, file);
  if (root.contains("samples") && root["samples"].is_object())
    for (const auto& [name, records] : root["samples"].items()) {
      auto it = file.tasks.find(name);
      if (it == file.tasks.end()) continue;
      if (!records.is_array())
        throw Error(path + ": samples['" + name + "'] must be an array of per-sample records");
      it->second.samples = records;
    }
  return file;
}

ResultsFile load_results(const std::string& path) {
  if (!std::filesystem::is_regular_file(path))
    throw Error(path + ": results file not found");
  json root;
  try {
    root = json::parse(fs::read_text(path));
  } catch (const json::parse_error& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
  ResultsFile file = parse_results(root, path);
  if (file.format == "lm-eval") read_harness_samples(path, file);
  return file;
}

namespace {

// Filters in order of preference: the harness's strict answer extraction first
// (GSM8K-style tasks), then the unfiltered value, then anything else by name.
int filter_rank(const std::string& filter) {
  if (filter == "strict-match") return 0;
  if (filter == "none") return 1;
  return 2;
}

std::optional<std::string> find_key(const TaskResults& task, const std::string& metric,
                                    const std::string& filter) {
  std::optional<std::string> best;
  int best_rank = 99;
  for (const auto& [key, value] : task.metrics) {
    auto [m, f] = split_metric_key(key);
    if (m != metric) continue;
    if (!filter.empty()) {
      if (f == filter) return key;
      continue;
    }
    const int rank = filter_rank(f);
    if (rank < best_rank) best_rank = rank, best = key;  // map order breaks ties by name
  }
  return best;
}

}  // namespace

std::optional<SelectedMetric> select_metric(const TaskResults& task,
                                            const std::optional<MetricChoice>& choice) {
  static const std::vector<std::string> preference = {
      "acc_norm", "acc", "exact_match", "pass@1", "pass_at_1", "prompt_level_strict_acc",
      "mc2", "f1", "em", "word_perplexity", "byte_perplexity", "bits_per_byte",
      "token_perplexity", "perplexity"};
  std::optional<std::string> key;
  if (choice) {
    key = find_key(task, choice->metric, choice->filter);
  } else {
    for (const auto& metric : preference)
      if ((key = find_key(task, metric, ""))) break;
  }
  if (!key) return std::nullopt;
  SelectedMetric sel;
  sel.key = *key;
  sel.metric = split_metric_key(*key).first;
  sel.value = task.metrics.at(*key);
  auto dir = task.higher_is_better.find(sel.metric);
  sel.higher_is_better = dir != task.higher_is_better.end() ? dir->second
                                                            : default_higher_is_better(sel.metric);
  return sel;
}

}  // namespace xd::eval
