// `xdistill eval compare`: win-and-tie of one or more students against a teacher,
// over the benchmarks both files hold (../spec/method.md §4), with uncertainty.
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "xdistill/eval/bootstrap.h"
#include "xdistill/eval/results_file.h"
#include "xdistill/eval/win_tie.h"

namespace xd::eval {

struct CompareOptions {
  double alpha_max = 0.5;                         // range of the reported curve and plot
  std::map<std::string, MetricChoice> metrics;    // per task; key "*" applies to every task
  std::vector<std::string> benchmarks;            // explicit list; empty = top-level tasks
  int bootstrap_replicates = 1000;                // 0 = no bootstrap
  uint64_t seed = 1234;
  double ci_level = 0.95;
  double grid_step = 0.01;                        // α grid of the bootstrap's C_α intervals
};

struct BenchmarkRow {
  std::string name, metric_key;
  bool higher_is_better = true;
  MetricValue teacher, student;
  double threshold = 0;                   // α_b: the tolerance from which the student wins or ties
  std::optional<double> recovery;         // A_S/A_T (A_T/A_S when lower is better)
  std::optional<bool> gap_within_stderr;  // |A_S − A_T| ≤ sqrt(se_S² + se_T²); empty without both stderrs
  std::optional<Interval> recovery_ci;    // paired bootstrap, when both have samples
  size_t paired_samples = 0;
  std::string note;                       // e.g. "teacher scores 0: the student always wins"
};

struct StudentReport {
  std::string name, path;
  std::vector<BenchmarkRow> rows;
  std::vector<std::string> only_teacher, only_student;  // listed, then ignored
  std::vector<std::string> skipped;                     // "task: reason"
  double c0 = 0;
  std::optional<double> alpha_star;                     // empty: C_α < 0.5 on all of [0, 1]
  std::vector<CurveStep> curve;                         // exact steps on [0, alpha_max]
  std::optional<BootstrapResult> bootstrap;
  std::vector<double> bootstrap_grid;
};

struct CompareReport {
  std::string teacher_name, teacher_path;
  CompareOptions options;
  std::vector<StudentReport> students;
};

// Throws xd::Error when a student shares no benchmark with the teacher.
CompareReport compare_results(const ResultsFile& teacher, const std::vector<ResultsFile>& students,
                              const CompareOptions& options);

nlohmann::json report_to_json(const CompareReport& report);
// The table printed by the command: one block per student.
std::string format_report(const CompareReport& report);

}  // namespace xd::eval

namespace xd::eval {

// Everything `eval compare` does after parsing its command line: load the files,
// compare, print the table, write the JSON report and the plot.
struct CompareCommand {
  std::string teacher;
  std::vector<std::string> students;
  std::vector<std::string> metric_specs;  // "task=metric[,filter]" or "metric[,filter]" (every task)
  std::string out_json, plot;
  CompareOptions options;
};
void run_compare_command(const CompareCommand& cmd);

}  // namespace xd::eval
