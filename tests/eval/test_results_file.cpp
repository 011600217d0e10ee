// Parsing lm-evaluation-harness result files (fixtures in the harness's real layout)
// and choosing each task's metric.
#include <gtest/gtest.h>

#include "xdistill/eval/results_file.h"
#include "xdistill/util/error.h"

using namespace xd::eval;

namespace {
std::string fixture(const std::string& name) { return std::string(XD_SOURCE_DIR) + "/tests/eval/fixtures/" + name; }
}  // namespace

TEST(ResultsFile, ReadsHarnessLayout) {
  const auto f = load_results(fixture("lm_eval_teacher.json"));
  EXPECT_EQ(f.format, "lm-eval");
  EXPECT_EQ(f.model_name, "meta-llama/Llama-3.1-8B");
  const auto& arc = f.tasks.at("arc_easy");
  EXPECT_DOUBLE_EQ(arc.metrics.at("acc,none").value, 0.8118686868686869);
  EXPECT_DOUBLE_EQ(*arc.metrics.at("acc,none").stderr_value, 0.0081);
  EXPECT_DOUBLE_EQ(arc.metrics.at("acc_norm,none").value, 0.80);
  EXPECT_EQ(arc.metrics.size(), 2u);  // "alias" and the *_stderr keys are not metrics
  EXPECT_FALSE(arc.is_subtask);
  // "N/A" standard errors are absent, not zero.
  EXPECT_FALSE(f.tasks.at("wikitext").metrics.at("word_perplexity,none").stderr_value.has_value());
  EXPECT_FALSE(f.tasks.at("wikitext").higher_is_better.at("word_perplexity"));
  // Group members are marked; the group itself is top-level.
  EXPECT_FALSE(f.tasks.at("mmlu").is_subtask);
  EXPECT_TRUE(f.tasks.at("mmlu_humanities").is_subtask);
  EXPECT_TRUE(f.tasks.at("mmlu_formal_logic").is_subtask);
}

TEST(ResultsFile, OlderLayoutWithGroupsSection) {
  const auto f = load_results(fixture("lm_eval_old_layout.json"));
  ASSERT_TRUE(f.tasks.count("ai2_arc"));
  EXPECT_DOUBLE_EQ(f.tasks.at("ai2_arc").metrics.at("acc_norm,none").value, 0.64);
  EXPECT_EQ(f.model_name, "lm_eval_old_layout");  // no model_name: the file's stem
}

TEST(ResultsFile, DefaultMetricChoice) {
  const auto f = load_results(fixture("lm_eval_teacher.json"));
  auto pick = [&](const std::string& task) { return select_metric(f.tasks.at(task), std::nullopt)->key; };
  EXPECT_EQ(pick("arc_easy"), "acc_norm,none");
  EXPECT_EQ(pick("winogrande"), "acc,none");                // no acc_norm there
  EXPECT_EQ(pick("gsm8k"), "exact_match,strict-match");     // strict filter preferred
  EXPECT_EQ(pick("wikitext"), "word_perplexity,none");
  EXPECT_FALSE(select_metric(f.tasks.at("wikitext"), std::nullopt)->higher_is_better);
  EXPECT_TRUE(select_metric(f.tasks.at("gsm8k"), std::nullopt)->higher_is_better);
}

TEST(ResultsFile, ExplicitMetricChoice) {
  const auto f = load_results(fixture("lm_eval_teacher.json"));
  const auto& gsm = f.tasks.at("gsm8k");
  auto flex = select_metric(gsm, parse_metric_choice("exact_match,flexible-extract"));
  ASSERT_TRUE(flex);
  EXPECT_DOUBLE_EQ(flex->value.value, 0.52);
  EXPECT_EQ(select_metric(f.tasks.at("arc_easy"), parse_metric_choice("acc"))->key, "acc,none");
  EXPECT_FALSE(select_metric(gsm, parse_metric_choice("acc")).has_value());
  EXPECT_FALSE(select_metric(gsm, parse_metric_choice("exact_match,nope")).has_value());
}

TEST(ResultsFile, DirectionFallbackTable) {
  EXPECT_FALSE(default_higher_is_better("perplexity"));
  EXPECT_FALSE(default_higher_is_better("bits_per_byte"));
  EXPECT_TRUE(default_higher_is_better("acc"));
  // Without a higher_is_better section the table decides.
  nlohmann::json root = {{"results", {{"lambada", {{"perplexity,none", 3.5}, {"acc,none", 0.7}}}}}};
  auto f = parse_results(root, "x.json");
  auto sel = select_metric(f.tasks.at("lambada"), parse_metric_choice("perplexity"));
  EXPECT_FALSE(sel->higher_is_better);
}

TEST(ResultsFile, KeysWithoutFilterAndErrors) {
  nlohmann::json root = {{"results", {{"t", {{"acc", 0.5}, {"acc_stderr", 0.1}}}}}};
  auto f = parse_results(root, "x.json");
  EXPECT_DOUBLE_EQ(f.tasks.at("t").metrics.at("acc,none").value, 0.5);
  EXPECT_DOUBLE_EQ(*f.tasks.at("t").metrics.at("acc,none").stderr_value, 0.1);
  EXPECT_THROW(parse_results(nlohmann::json::object(), "x.json"), xd::Error);
  EXPECT_THROW(load_results(fixture("does_not_exist.json")), xd::Error);
  EXPECT_EQ(split_metric_key("exact_match,strict-match"), (std::pair<std::string, std::string>{"exact_match", "strict-match"}));
}
