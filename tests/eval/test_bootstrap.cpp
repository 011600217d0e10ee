// Paired bootstrap: reproducible under a seed, and statistically sensible.
#include <gtest/gtest.h>

#include <cmath>

#include "xdistill/eval/bootstrap.h"
#include "xdistill/eval/compare.h"
#include "xdistill/util/error.h"

using namespace xd::eval;
using nlohmann::json;

namespace {

// Bernoulli-like 0/1 samples with exactly `ones` ones out of n, spread by a fixed stride.
json records(int n, int ones, int stride) {
  json r = json::array();
  std::vector<int> v(n, 0);
  for (int k = 0, i = 0; k < ones; ++k, i = (i + stride) % n) {
    while (v[i]) i = (i + 1) % n;
    v[i] = 1;
  }
  for (int i = 0; i < n; ++i) r.push_back({{"id", std::to_string(i)}, {"acc", v[i]}});
  return r;
}

ResultsFile file_with(const std::string& name, const std::vector<std::tuple<std::string, int, int, int>>& tasks) {
  json root = {{"results", json::object()}, {"samples", json::object()}, {"xdistill", {{"model", name}}}};
  for (const auto& [task, n, ones, stride] : tasks) {
    root["results"][task] = {{"acc,none", static_cast<double>(ones) / n}};
    root["samples"][task] = records(n, ones, stride);
  }
  return parse_results(root, name + ".json");
}

}  // namespace

TEST(Bootstrap, SplitMixReferenceValues) {
  // Reference outputs of splitmix64 from state 0 (Vigna's published generator).
  SplitMix64 rng(0);
  EXPECT_EQ(rng.next(), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(rng.next(), 0x6E789E6AA1B965F4ull);
  SplitMix64 r2(7);
  for (int i = 0; i < 1000; ++i) EXPECT_LT(r2.below(13), 13u);
}

TEST(Bootstrap, ReproducibleUnderSeed) {
  const auto t = file_with("t", {{"a", 200, 160, 7}, {"b", 300, 150, 11}, {"c", 100, 90, 3}});
  const auto s = file_with("s", {{"a", 200, 150, 5}, {"b", 300, 140, 13}, {"c", 100, 80, 7}});
  CompareOptions o;
  o.bootstrap_replicates = 300;
  o.seed = 42;
  const auto r1 = report_to_json(compare_results(t, {s}, o));
  const auto r2 = report_to_json(compare_results(t, {s}, o));
  EXPECT_EQ(r1.dump(), r2.dump());
  o.seed = 43;
  const auto r3 = report_to_json(compare_results(t, {s}, o));
  EXPECT_NE(r1["students"][0]["bootstrap"].dump(), r3["students"][0]["bootstrap"].dump());
  ASSERT_FALSE(r1["students"][0]["bootstrap"].is_null());
  EXPECT_EQ(r1["students"][0]["bootstrap"]["C_alpha_ci"].size(), 51u);  // α = 0, 0.01, ..., 0.5
}

TEST(Bootstrap, IdenticalModelsGiveDegenerateIntervals) {
  const auto t = file_with("t", {{"a", 50, 30, 7}, {"b", 60, 20, 11}});
  CompareOptions o;
  o.bootstrap_replicates = 200;
  const auto s = compare_results(t, {t}, o).students.at(0);
  ASSERT_TRUE(s.bootstrap);
  for (const auto& r : s.rows) {
    EXPECT_DOUBLE_EQ(r.recovery_ci->lo, 1.0);
    EXPECT_DOUBLE_EQ(r.recovery_ci->hi, 1.0);
  }
  EXPECT_DOUBLE_EQ(s.bootstrap->alpha_star.lo, 0.0);
  EXPECT_DOUBLE_EQ(s.bootstrap->alpha_star.hi, 0.0);
}

TEST(Bootstrap, RecoveryIntervalMatchesDeltaMethod) {
  // Independent teacher/student correctness: p_T = 0.8, p_S = 0.6 on n = 800.
  // Delta method: Var(S/T) ≈ r² (Var S / S² + Var T / T²), r = 0.75.
  const int n = 800;
  const auto t = file_with("t", {{"a", n, 640, 7}});
  const auto s = file_with("s", {{"a", n, 480, 13}});
  CompareOptions o;
  o.bootstrap_replicates = 2000;
  o.ci_level = 0.95;
  const auto rep = compare_results(t, {s}, o).students.at(0);
  const auto ci = *rep.rows[0].recovery_ci;
  // The fixed strides make the pairs close to independent; the paired bootstrap keeps
  // whatever correlation they have, so compare with the exact paired delta method.
  const auto& ts = rep.rows[0];
  (void)ts;
  double cov = 0;
  const auto tr = records(n, 640, 7), sr = records(n, 480, 13);
  for (int i = 0; i < n; ++i) cov += (tr[i]["acc"].get<double>() - 0.8) * (sr[i]["acc"].get<double>() - 0.6);
  cov /= n;
  const double r = 0.75, var_t = 0.8 * 0.2 / n, var_s = 0.6 * 0.4 / n, cov_m = cov / n;
  const double se = r * std::sqrt(var_s / 0.36 + var_t / 0.64 - 2 * cov_m / (0.8 * 0.6));
  EXPECT_LT(ci.lo, 0.75);
  EXPECT_GT(ci.hi, 0.75);
  EXPECT_NEAR((ci.hi - ci.lo) / (2 * 1.96), se, 0.15 * se);
}

TEST(Bootstrap, PairsByIdAndAggregatesRatios) {
  TaskResults t;
  t.name = "wt";
  t.samples = json::array({{{"id", "x"}, {"loglikelihood", -10.0}, {"bytes", 20}, {"words", 4}},
                           {{"id", "y"}, {"loglikelihood", -30.0}, {"bytes", 40}, {"words", 6}}});
  auto bpb = sample_series(t, "bits_per_byte");
  ASSERT_TRUE(bpb);
  EXPECT_NEAR(aggregate(*bpb), 40.0 / 60.0 / std::log(2.0), 1e-12);
  auto wp = sample_series(t, "word_perplexity");
  EXPECT_NEAR(aggregate(*wp), std::exp(40.0 / 10.0), 1e-9);
  EXPECT_FALSE(sample_series(t, "acc"));

  TaskResults s = t;
  s.samples = json::array({{{"id", "y"}, {"loglikelihood", -33.0}, {"bytes", 40}, {"words", 6}},
                           {{"id", "z"}, {"loglikelihood", -1.0}, {"bytes", 2}, {"words", 1}}});
  auto p = pair_by_id(*bpb, *sample_series(s, "bits_per_byte"));
  ASSERT_EQ(p.teacher.ids, std::vector<std::string>{"y"});
  EXPECT_EQ(p.dropped_teacher, 1u);
  EXPECT_EQ(p.dropped_student, 1u);
  EXPECT_NEAR(aggregate(p.student), 33.0 / 40.0 / std::log(2.0), 1e-12);

  TaskResults dup = t;
  dup.samples = json::array({{{"id", "x"}, {"acc", 1}}, {{"id", "x"}, {"acc", 0}}});
  EXPECT_THROW(sample_series(dup, "acc"), xd::Error);
}

TEST(Bootstrap, PercentileInterval) {
  std::vector<double> v;
  for (int i = 0; i <= 100; ++i) v.push_back(i);
  const auto iv = percentile_interval(v, 0.9);
  EXPECT_DOUBLE_EQ(iv.lo, 5);
  EXPECT_DOUBLE_EQ(iv.hi, 95);
  v.back() = INFINITY;
  EXPECT_TRUE(std::isinf(percentile_interval(v, 0.999).hi));
}
