// The two renderings of a comparison: the JSON report and the printed table.
#include <cmath>
#include <cstdio>
#include <sstream>

#include "xdistill/eval/compare.h"

namespace xd::eval {
using nlohmann::json;

namespace {

json number_or_null(std::optional<double> v) {
  if (!v || !std::isfinite(*v)) return nullptr;
  return *v;
}

json interval_json(const std::optional<Interval>& iv) {
  if (!iv) return nullptr;
  return json::array({number_or_null(iv->lo), number_or_null(iv->hi)});
}

json row_json(const BenchmarkRow& r) {
  return {{"name", r.name},
          {"metric", r.metric_key},
          {"higher_is_better", r.higher_is_better},
          {"teacher", r.teacher.value},
          {"teacher_stderr", number_or_null(r.teacher.stderr_value)},
          {"student", r.student.value},
          {"student_stderr", number_or_null(r.student.stderr_value)},
          {"recovery", number_or_null(r.recovery)},
          {"tie_threshold", number_or_null(r.threshold)},
          {"gap_within_stderr", r.gap_within_stderr ? json(*r.gap_within_stderr) : json(nullptr)},
          {"recovery_ci", interval_json(r.recovery_ci)},
          {"paired_samples", r.paired_samples},
          {"note", r.note}};
}

json student_json(const StudentReport& s, const CompareOptions& o) {
  json j = {{"name", s.name}, {"path", s.path}, {"alpha_star", number_or_null(s.alpha_star)},
            {"C_0", s.c0}, {"lossless", s.c0 >= 0.5}};
  j["curve"] = json::array();
  for (const auto& step : s.curve) j["curve"].push_back({{"alpha", step.alpha}, {"C", step.c}});
  j["benchmarks"] = json::array();
  for (const auto& r : s.rows) j["benchmarks"].push_back(row_json(r));
  j["only_in_teacher"] = s.only_teacher;
  j["only_in_student"] = s.only_student;
  j["skipped"] = s.skipped;
  if (s.bootstrap) {
    json b = {{"replicates", s.bootstrap->replicates}, {"seed", o.seed}, {"level", o.ci_level},
              {"alpha_star_ci", interval_json(s.bootstrap->alpha_star)},
              {"alpha_star_undefined_fraction", s.bootstrap->alpha_star_undefined_fraction}};
    b["C_alpha_ci"] = json::array();
    for (size_t g = 0; g < s.bootstrap_grid.size(); ++g)
      b["C_alpha_ci"].push_back({{"alpha", s.bootstrap_grid[g]},
                                 {"lo", s.bootstrap->c_alpha[g].lo},
                                 {"hi", s.bootstrap->c_alpha[g].hi}});
    j["bootstrap"] = std::move(b);
  } else {
    j["bootstrap"] = nullptr;
  }
  return j;
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string score_text(const MetricValue& m) {
  std::string s = fmt("%.4f", m.value);
  if (m.stderr_value) s += fmt("±%.4f", *m.stderr_value);
  return s;
}

std::string pad(const std::string& s, size_t width) {
  // Width in characters, not bytes ("±" is two bytes in UTF-8).
  size_t chars = 0;
  for (unsigned char c : s) chars += (c & 0xC0) != 0x80;
  return chars >= width ? s + " " : s + std::string(width - chars, ' ');
}

}  // namespace

json report_to_json(const CompareReport& report) {
  json j = {{"teacher", {{"name", report.teacher_name}, {"path", report.teacher_path}}},
            {"alpha_max", report.options.alpha_max},
            {"definition", "1_alpha(b) = A_S >= (1-alpha) A_T (higher is better) or A_S <= (1+alpha) A_T "
                           "(lower is better); C_alpha = mean_b 1_alpha(b); alpha_star = inf{alpha in [0,1]: "
                           "C_alpha >= 0.5}; recovery = A_S/A_T (A_T/A_S when lower is better)"}};
  j["students"] = json::array();
  for (const auto& s : report.students) j["students"].push_back(student_json(s, report.options));
  return j;
}

std::string format_report(const CompareReport& report) {
  std::ostringstream os;
  const double level = report.options.ci_level * 100;
  os << "teacher: " << report.teacher_name << " (" << report.teacher_path << ")\n";
  for (const auto& s : report.students) {
    os << "\nstudent: " << s.name << " (" << s.path << ")\n";
    os << pad("benchmark", 28) << pad("metric", 34) << pad("teacher", 17) << pad("student", 17)
       << pad("recovery", 10) << pad("alpha_b", 9) << pad(fmt("%.0f%% CI", level), 18) << "note\n";
    for (const auto& r : s.rows) {
      std::string ci = r.recovery_ci ? "[" + fmt("%.3f", r.recovery_ci->lo) + ", " +
                                           (std::isfinite(r.recovery_ci->hi) ? fmt("%.3f", r.recovery_ci->hi) : "inf") + "]"
                                     : "-";
      std::string note = r.note;
      if (r.gap_within_stderr && *r.gap_within_stderr)
        note = "gap within stderr" + (note.empty() ? "" : "; " + note);
      os << pad(r.name, 28) << pad(r.metric_key + (r.higher_is_better ? "" : " (lower)"), 34)
         << pad(score_text(r.teacher), 17) << pad(score_text(r.student), 17)
         << pad(r.recovery ? fmt("%.4f", *r.recovery) : "-", 10)
         << pad(std::isfinite(r.threshold) ? fmt("%.4f", r.threshold) : "never", 9) << pad(ci, 18) << note << "\n";
    }
    os << "C_0 = " << fmt("%.4f", s.c0) << (s.c0 >= 0.5 ? " (lossless)" : "") << "   alpha* = "
       << (s.alpha_star ? fmt("%.4f", *s.alpha_star) : "none (C_alpha < 0.5 on [0,1])");
    if (s.bootstrap) {
      const auto& iv = s.bootstrap->alpha_star;
      os << "   " << fmt("%.0f%% CI", level) << " [" << (std::isfinite(iv.lo) ? fmt("%.4f", iv.lo) : "none") << ", "
         << (std::isfinite(iv.hi) ? fmt("%.4f", iv.hi) : "none") << "] (" << s.bootstrap->replicates
         << " paired bootstrap replicates)";
    }
    os << "\n";
    if (!s.only_teacher.empty() || !s.only_student.empty()) {
      auto list = [](const std::vector<std::string>& v) {
        std::string out;
        for (const auto& n : v) out += (out.empty() ? "" : ", ") + n;
        return out.empty() ? std::string("-") : out;
      };
      os << "ignored, only in the teacher's file: " << list(s.only_teacher) << "\n";
      os << "ignored, only in the student's file: " << list(s.only_student) << "\n";
    }
    for (const auto& k : s.skipped) os << "skipped: " << k << "\n";
  }
  return os.str();
}

}  // namespace xd::eval
