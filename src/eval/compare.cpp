#include "xdistill/eval/compare.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>

#include "xdistill/util/error.h"
#include "xdistill/util/log.h"

namespace xd::eval {
namespace {

std::optional<MetricChoice> choice_for(const CompareOptions& o, const std::string& task) {
  auto it = o.metrics.find(task);
  if (it == o.metrics.end()) it = o.metrics.find("*");
  if (it == o.metrics.end()) return std::nullopt;
  return it->second;
}

// The metrics both files report for a task, with the directions either file states.
TaskResults common_metrics(const TaskResults& teacher, const TaskResults& student) {
  TaskResults both = teacher;
  both.metrics.clear();
  for (const auto& [key, value] : teacher.metrics)
    if (student.metrics.count(key)) both.metrics[key] = value;
  for (const auto& [metric, hib] : student.higher_is_better) {
    auto it = both.higher_is_better.find(metric);
    if (it != both.higher_is_better.end() && it->second != hib)
      throw Error("benchmark '" + teacher.name + "': the teacher's and the student's files disagree on whether "
                  "higher '" + metric + "' is better");
    both.higher_is_better[metric] = hib;
  }
  return both;
}

std::vector<std::string> benchmark_names(const ResultsFile& file, const CompareOptions& o) {
  std::vector<std::string> names;
  for (const auto& [name, task] : file.tasks)
    if (o.benchmarks.empty() ? !task.is_subtask
                             : std::find(o.benchmarks.begin(), o.benchmarks.end(), name) != o.benchmarks.end())
      names.push_back(name);
  return names;
}

void attach_samples(const TaskResults& teacher, const TaskResults& student, BenchmarkRow& row,
                    std::optional<PairedSeries>& paired) {
  const auto [metric, filter] = split_metric_key(row.metric_key);
  auto ts = sample_series(teacher, metric, filter), ss = sample_series(student, metric, filter);
  if (!ts || !ss) return;
  for (auto [series, reported, who] : {std::tuple{&*ts, row.teacher.value, "teacher"},
                                       std::tuple{&*ss, row.student.value, "student"}}) {
    const double from_samples = aggregate(*series);
    if (std::abs(from_samples - reported) > 1e-6 * std::max(1.0, std::abs(reported)))
      log::warn("benchmark '", row.name, "': the ", who, "'s per-sample records give ", metric, " = ",
                from_samples, " but the file reports ", reported, " (different sample sets?)");
  }
  PairedSeries p = pair_by_id(*ts, *ss);
  if (p.dropped_teacher || p.dropped_student)
    log::warn("benchmark '", row.name, "': ", p.dropped_teacher, " teacher and ", p.dropped_student,
              " student samples have no partner id; the bootstrap uses the ", p.teacher.ids.size(), " common ones");
  row.paired_samples = p.teacher.ids.size();
  if (row.paired_samples > 0) paired = std::move(p);
}

std::optional<BenchmarkRow> make_row(const TaskResults& teacher, const TaskResults& student,
                                     const CompareOptions& o, std::vector<std::string>& skipped,
                                     std::optional<PairedSeries>& paired) {
  const auto choice = choice_for(o, teacher.name);
  auto sel = select_metric(common_metrics(teacher, student), choice);
  if (!sel) {
    skipped.push_back(teacher.name + ": " +
                      (choice ? "metric '" + choice->metric + (choice->filter.empty() ? "" : "," + choice->filter) +
                                    "' not reported by both files"
                              : std::string("no known metric reported by both files; choose one with --metric")));
    return std::nullopt;
  }
  BenchmarkRow row;
  row.name = teacher.name;
  row.metric_key = sel->key;
  row.higher_is_better = sel->higher_is_better;
  row.teacher = teacher.metrics.at(sel->key);
  row.student = student.metrics.at(sel->key);
  row.threshold = tie_threshold(row.teacher.value, row.student.value, row.higher_is_better, row.name);
  row.recovery = recovery(row.teacher.value, row.student.value, row.higher_is_better);
  if (row.teacher.stderr_value && row.student.stderr_value) {
    const double se = std::hypot(*row.teacher.stderr_value, *row.student.stderr_value);
    row.gap_within_stderr = std::abs(row.student.value - row.teacher.value) <= se;
  }
  if (row.teacher.value == 0)
    row.note = row.higher_is_better ? "teacher scores 0: the student always wins or ties"
                                    : "teacher scores 0: the student wins only at 0";
  attach_samples(teacher, student, row, paired);
  return row;
}

StudentReport compare_one(const ResultsFile& teacher, const ResultsFile& student, const CompareOptions& o) {
  StudentReport rep;
  rep.name = student.model_name;
  rep.path = student.path;
  const auto t_names = benchmark_names(teacher, o), s_names = benchmark_names(student, o);
  const std::set<std::string> t_set(t_names.begin(), t_names.end()), s_set(s_names.begin(), s_names.end());
  for (const auto& n : t_names) if (!s_set.count(n)) rep.only_teacher.push_back(n);
  for (const auto& n : s_names) if (!t_set.count(n)) rep.only_student.push_back(n);
  for (const auto& n : o.benchmarks)
    if (!t_set.count(n) && !s_set.count(n)) rep.skipped.push_back(n + ": in neither file");

  std::vector<BootstrapBenchmark> boot;
  for (const auto& name : t_names) {
    if (!s_set.count(name)) continue;
    std::optional<PairedSeries> paired;
    auto row = make_row(teacher.tasks.at(name), student.tasks.at(name), o, rep.skipped, paired);
    if (!row) continue;
    boot.push_back({row->teacher.value, row->student.value, row->higher_is_better, std::move(paired)});
    rep.rows.push_back(std::move(*row));
  }
  if (rep.rows.empty())
    throw Error("no benchmark in common between teacher " + teacher.path + " and student " + student.path +
                " (teacher only: " + std::to_string(rep.only_teacher.size()) + ", student only: " +
                std::to_string(rep.only_student.size()) + ", skipped: " + std::to_string(rep.skipped.size()) + ")");

  std::vector<double> thresholds;
  for (const auto& r : rep.rows) thresholds.push_back(r.threshold);
  rep.c0 = c_alpha(thresholds, 0.0);
  rep.alpha_star = alpha_star(thresholds, 1.0);
  rep.curve = c_alpha_curve(thresholds, o.alpha_max);

  const bool any_paired = std::any_of(boot.begin(), boot.end(), [](const auto& b) { return b.paired.has_value(); });
  if (o.bootstrap_replicates > 0 && any_paired) {
    BootstrapOptions bo;
    bo.replicates = o.bootstrap_replicates;
    bo.seed = o.seed;
    bo.level = o.ci_level;
    const int steps = static_cast<int>(std::llround(o.alpha_max / o.grid_step));
    for (int i = 0; i <= steps; ++i) bo.alpha_grid.push_back(i * o.grid_step);
    rep.bootstrap_grid = bo.alpha_grid;
    rep.bootstrap = paired_bootstrap(boot, bo);
    for (size_t b = 0; b < rep.rows.size(); ++b) rep.rows[b].recovery_ci = rep.bootstrap->recovery[b];
  }
  return rep;
}

}  // namespace

CompareReport compare_results(const ResultsFile& teacher, const std::vector<ResultsFile>& students,
                              const CompareOptions& options) {
  if (!(options.alpha_max > 0 && options.alpha_max <= 1))
    throw UsageError("--alpha-max must be in (0, 1]");
  if (students.empty()) throw UsageError("at least one --student results file is needed");
  CompareReport report;
  report.teacher_name = teacher.model_name;
  report.teacher_path = teacher.path;
  report.options = options;
  for (const auto& s : students) report.students.push_back(compare_one(teacher, s, options));
  return report;
}

}  // namespace xd::eval
