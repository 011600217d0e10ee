#include <iostream>

#include "xdistill/eval/compare.h"
#include "xdistill/eval/plot.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"

namespace xd::eval {

namespace {
void parse_metric_specs(const std::vector<std::string>& specs, CompareOptions& options) {
  for (const auto& spec : specs) {
    const auto eq = spec.find('=');
    const std::string task = eq == std::string::npos ? "*" : spec.substr(0, eq);
    const std::string metric = eq == std::string::npos ? spec : spec.substr(eq + 1);
    if (task.empty() || metric.empty())
      throw UsageError("--metric '" + spec + "': expected TASK=METRIC[,FILTER] or METRIC[,FILTER]");
    options.metrics[task] = parse_metric_choice(metric);
  }
}
}  // namespace

void run_compare_command(const CompareCommand& cmd) {
  CompareOptions options = cmd.options;
  parse_metric_specs(cmd.metric_specs, options);
  const ResultsFile teacher = load_results(cmd.teacher);
  std::vector<ResultsFile> students;
  for (const auto& s : cmd.students) students.push_back(load_results(s));
  const CompareReport report = compare_results(teacher, students, options);
  std::cout << format_report(report) << std::flush;
  if (!cmd.out_json.empty()) {
    fs::write_atomic(cmd.out_json, report_to_json(report).dump(2) + "\n");
    log::info("wrote ", cmd.out_json);
  }
  if (!cmd.plot.empty()) {
    std::vector<PlotSeries> series;
    for (const auto& s : report.students) series.push_back({s.name, s.curve, s.alpha_star});
    write_c_alpha_plot(cmd.plot, series, options.alpha_max, "Win-and-tie rate vs tolerance (teacher: " +
                                                                report.teacher_name + ")");
    log::info("wrote ", cmd.plot);
  }
}

}  // namespace xd::eval
