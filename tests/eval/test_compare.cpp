// Comparing a student's lm-evaluation-harness results with its teacher's.
#include <gtest/gtest.h>

#include "xdistill/eval/compare.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

using namespace xd::eval;

namespace {
std::string fixture(const std::string& name) { return std::string(XD_SOURCE_DIR) + "/tests/eval/fixtures/" + name; }

const BenchmarkRow& row(const StudentReport& s, const std::string& name) {
  for (const auto& r : s.rows)
    if (r.name == name) return r;
  throw std::runtime_error("no row " + name);
}
}  // namespace

TEST(Compare, HarnessFilesHandComputed) {
  const auto teacher = load_results(fixture("lm_eval_teacher.json"));
  const auto student = load_results(fixture("lm_eval_student.json"));
  const auto report = compare_results(teacher, {student}, CompareOptions{});
  const auto& s = report.students.at(0);
  ASSERT_EQ(s.rows.size(), 8u);  // top-level tasks in both files (mmlu's subtasks are not benchmarks)
  EXPECT_EQ(s.only_teacher, std::vector<std::string>{"truthfulqa_mc2"});
  EXPECT_EQ(s.only_student, std::vector<std::string>{"lambada_openai"});
  EXPECT_NEAR(row(s, "arc_challenge").threshold, 0.1, 1e-12);
  EXPECT_NEAR(*row(s, "arc_challenge").recovery, 0.9, 1e-12);
  EXPECT_EQ(row(s, "gsm8k").metric_key, "exact_match,strict-match");
  EXPECT_NEAR(row(s, "gsm8k").threshold, 0.2, 1e-12);
  EXPECT_FALSE(row(s, "wikitext").higher_is_better);
  EXPECT_NEAR(row(s, "wikitext").threshold, 0.1, 1e-12);
  EXPECT_NEAR(*row(s, "wikitext").recovery, 10.0 / 11.0, 1e-12);
  // Thresholds 0, 0, .05, .05, .1, .1, .2, .2 -> C_0 = 2/8, α* = 0.05.
  EXPECT_DOUBLE_EQ(s.c0, 0.25);
  ASSERT_TRUE(s.alpha_star);
  EXPECT_NEAR(*s.alpha_star, 0.05, 1e-12);
  // No per-sample records in harness files: stderr flags instead of a bootstrap.
  EXPECT_FALSE(s.bootstrap);
  EXPECT_TRUE(*row(s, "arc_easy").gap_within_stderr);   // equal scores
  EXPECT_FALSE(*row(s, "piqa").gap_within_stderr);      // 0.02 > hypot(0.0093, 0.0093)
  EXPECT_FALSE(row(s, "wikitext").gap_within_stderr);   // "N/A" stderr: no flag at all
}

TEST(Compare, MetricOverrideChangesTheBenchmark) {
  const auto teacher = load_results(fixture("lm_eval_teacher.json"));
  const auto student = load_results(fixture("lm_eval_student.json"));
  CompareOptions o;
  o.metrics["gsm8k"] = parse_metric_choice("exact_match,flexible-extract");
  o.metrics["*"] = parse_metric_choice("acc");
  const auto s = compare_results(teacher, {student}, o).students.at(0);
  EXPECT_NEAR(row(s, "gsm8k").threshold, 1 - 0.51 / 0.52, 1e-12);
  EXPECT_EQ(row(s, "arc_easy").metric_key, "acc,none");
  // wikitext has no acc: listed as skipped, not compared.
  EXPECT_EQ(s.rows.size(), 7u);
  ASSERT_EQ(s.skipped.size(), 1u);
  EXPECT_NE(s.skipped[0].find("wikitext"), std::string::npos);
}

TEST(Compare, ExplicitBenchmarkList) {
  const auto teacher = load_results(fixture("lm_eval_teacher.json"));
  const auto student = load_results(fixture("lm_eval_student.json"));
  CompareOptions o;
  o.benchmarks = {"mmlu_formal_logic", "arc_challenge", "lambada_openai"};
  const auto s = compare_results(teacher, {student}, o).students.at(0);
  ASSERT_EQ(s.rows.size(), 2u);  // a subtask may be named explicitly
  EXPECT_EQ(s.only_student, std::vector<std::string>{"lambada_openai"});
  EXPECT_DOUBLE_EQ(*s.alpha_star, 0.0);  // formal_logic ties: C_0 = 1/2
}

TEST(Compare, NoBenchmarkInCommonIsAnError) {
  nlohmann::json a = {{"results", {{"piqa", {{"acc,none", 0.8}}}}}};
  nlohmann::json b = {{"results", {{"arc_easy", {{"acc,none", 0.7}}}}}};
  try {
    compare_results(parse_results(a, "t.json"), {parse_results(b, "s.json")}, CompareOptions{});
    FAIL() << "expected an error";
  } catch (const xd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no benchmark in common"), std::string::npos) << e.what();
  }
}

TEST(Compare, TeacherZeroAndBoundary) {
  nlohmann::json t = {{"results", {{"zero", {{"acc,none", 0.0}}}, {"edge", {{"acc,none", 0.8}}}}}};
  nlohmann::json s = {{"results", {{"zero", {{"acc,none", 0.1}}}, {"edge", {{"acc,none", 0.72}}}}}};
  const auto rep = compare_results(parse_results(t, "t.json"), {parse_results(s, "s.json")}, CompareOptions{});
  const auto& st = rep.students.at(0);
  EXPECT_DOUBLE_EQ(row(st, "zero").threshold, 0.0);
  EXPECT_FALSE(row(st, "zero").recovery.has_value());
  EXPECT_NE(row(st, "zero").note.find("teacher scores 0"), std::string::npos);
  // At α = 0.1 the edge benchmark is exactly at the boundary, which counts.
  double c = 0;
  for (const auto& step : st.curve)
    if (step.alpha <= 0.1 + 1e-12) c = step.c;
  EXPECT_DOUBLE_EQ(c, 1.0);
  const auto j = report_to_json(rep);
  EXPECT_TRUE(j["students"][0]["benchmarks"][0]["recovery"].is_null() ||
              j["students"][0]["benchmarks"][1]["recovery"].is_null());
  EXPECT_DOUBLE_EQ(j["students"][0]["alpha_star"].get<double>(), 0.0);
}

TEST(Compare, SeveralStudentsAndJson) {
  const auto teacher = load_results(fixture("lm_eval_teacher.json"));
  const auto student = load_results(fixture("lm_eval_student.json"));
  const auto rep = compare_results(teacher, {student, teacher}, CompareOptions{});
  ASSERT_EQ(rep.students.size(), 2u);
  EXPECT_DOUBLE_EQ(*rep.students[1].alpha_star, 0.0);  // the teacher against itself is lossless
  EXPECT_DOUBLE_EQ(rep.students[1].c0, 1.0);
  const auto j = report_to_json(rep);
  EXPECT_NEAR(j["students"][0]["alpha_star"].get<double>(), 0.05, 1e-12);
  EXPECT_EQ(j["students"][0]["only_in_teacher"][0], "truthfulqa_mc2");
  const std::string table = format_report(rep);
  EXPECT_NE(table.find("alpha* = 0.0500"), std::string::npos) << table;
  EXPECT_NE(table.find("lambada_openai"), std::string::npos) << table;
}

TEST(Compare, HarnessLoggedSamplesEnableTheBootstrap) {
  // lm-evaluation-harness --log_samples: samples_<task>_<ts>.jsonl beside results_<ts>.json.
  const std::string stamp = "results_2025-01-14T10-30-00.123456.json";
  const auto teacher = load_results(fixture("harness_logged_teacher/" + stamp));
  const auto student = load_results(fixture("harness_logged_student/" + stamp));
  ASSERT_EQ(teacher.tasks.at("gsm8k").samples.size(), 60u);  // one line per (document, filter)
  // The per-filter records reproduce the reported value.
  const auto strict = sample_series(teacher.tasks.at("gsm8k"), "exact_match", "strict-match");
  ASSERT_TRUE(strict);
  EXPECT_EQ(strict->ids.size(), 30u);
  EXPECT_NEAR(aggregate(*strict), teacher.tasks.at("gsm8k").metrics.at("exact_match,strict-match").value, 1e-12);
  const auto flex = sample_series(teacher.tasks.at("gsm8k"), "exact_match", "flexible-extract");
  EXPECT_NEAR(aggregate(*flex), teacher.tasks.at("gsm8k").metrics.at("exact_match,flexible-extract").value, 1e-12);

  CompareOptions o;
  o.bootstrap_replicates = 500;
  const auto s = compare_results(teacher, {student}, o).students.at(0);
  ASSERT_TRUE(s.bootstrap);
  EXPECT_EQ(row(s, "piqa").paired_samples, 40u);
  EXPECT_EQ(row(s, "gsm8k").paired_samples, 30u);
  for (const auto& r : s.rows) {
    ASSERT_TRUE(r.recovery_ci);
    EXPECT_LE(r.recovery_ci->lo, *r.recovery);
    EXPECT_GE(r.recovery_ci->hi, *r.recovery);
  }
  // Without the samples files the same results give no bootstrap.
  const auto bare = parse_results(nlohmann::json::parse(xd::fs::read_text(fixture("harness_logged_teacher/" + stamp))), "x.json");
  EXPECT_TRUE(bare.tasks.at("piqa").samples.is_null());
}
