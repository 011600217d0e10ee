// Paired bootstrap for win-and-tie statistics.
//
// Where both models have per-sample records of a benchmark, the samples are paired
// by id and resampled with replacement (the same draws for teacher and student, so
// their correlation is kept). Each replicate resamples every such benchmark
// independently, keeps the others at their reported values, and recomputes each
// benchmark's recovery, C_α on a grid of α, and α*. Percentile intervals follow.
// The generator is our own (splitmix64) so a seed gives the same intervals on every
// platform and standard library.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "xdistill/eval/results_file.h"

namespace xd::eval {

// How a task's score follows from its samples: f(Σ numerator / Σ denominator).
// Means have denominator 1; bits per byte is Σ(−log₂ p) / Σ bytes; perplexities are
// exp(Σ(−ln p) / Σ words|bytes|tokens).
enum class Aggregation { Ratio, ExpRatio };

struct SampleSeries {
  std::vector<std::string> ids;
  std::vector<double> numerator, denominator;
  Aggregation aggregation = Aggregation::Ratio;
};

// The per-sample series of `metric` in a task's records; empty when the task has
// no records or they lack the metric. Records that carry a "filter" (the harness's
// samples files: one record per document and filter) count only for `filter`.
// Throws on malformed records (no id, a duplicate id, a non-numeric value).
std::optional<SampleSeries> sample_series(const TaskResults& task, const std::string& metric,
                                          const std::string& filter = "none");

double aggregate(const SampleSeries& s);

// Teacher and student series restricted to their common ids, in the same order.
struct PairedSeries {
  SampleSeries teacher, student;
  size_t dropped_teacher = 0, dropped_student = 0;  // ids present in one model only
};
PairedSeries pair_by_id(const SampleSeries& teacher, const SampleSeries& student);

struct BootstrapBenchmark {
  double teacher = 0, student = 0;     // reported values, used when not resampled
  bool higher_is_better = true;
  std::optional<PairedSeries> paired;  // resampled when present and non-empty
};

struct Interval {
  double lo = 0, hi = 0;  // hi may be +inf (α* undefined in the upper replicates)
};

struct BootstrapOptions {
  int replicates = 1000;
  uint64_t seed = 1234;
  double level = 0.95;
  std::vector<double> alpha_grid;  // α values at which C_α's interval is reported
  double alpha_max = 1.0;          // α* above this counts as undefined (+inf)
};

struct BootstrapResult {
  std::vector<std::optional<Interval>> recovery;  // per benchmark; empty if not resampled
  std::vector<Interval> c_alpha;                  // per alpha_grid entry
  Interval alpha_star;
  double alpha_star_undefined_fraction = 0;       // replicates with no α* ≤ alpha_max
  int replicates = 0;
};

BootstrapResult paired_bootstrap(const std::vector<BootstrapBenchmark>& benchmarks,
                                 const BootstrapOptions& options);

// Small deterministic generator (splitmix64), exposed for tests.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next();
  uint64_t below(uint64_t n);  // uniform in [0, n)
 private:
  uint64_t state_;
};

// Percentile interval of `values` (which may hold +inf) at confidence `level`.
Interval percentile_interval(std::vector<double> values, double level);

}  // namespace xd::eval
