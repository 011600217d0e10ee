#include "xdistill/eval/bootstrap.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include "xdistill/eval/win_tie.h"
#include "xdistill/util/error.h"

namespace xd::eval {
using nlohmann::json;

uint64_t SplitMix64::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t SplitMix64::below(uint64_t n) {
  // Lemire's multiply-shift: the bias (< n / 2^64) is far below bootstrap noise.
  return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
}

namespace {

std::string record_id(const json& r, const std::string& task, size_t index) {
  const json* id = r.contains("id") ? &r["id"] : r.contains("doc_id") ? &r["doc_id"] : nullptr;
  if (!id) throw Error(detail_concat("samples['", task, "'][", index, "]: record has no \"id\""));
  return id->is_string() ? id->get<std::string>() : id->dump();
}

double record_number(const json& r, const std::string& field, const std::string& task, size_t index) {
  if (!r.contains(field) || !r[field].is_number())
    throw Error(detail_concat("samples['", task, "'][", index, "]: field \"", field,
                              "\" is missing or not a number"));
  return r[field].get<double>();
}

}  // namespace

std::optional<SampleSeries> sample_series(const TaskResults& task, const std::string& metric,
                                          const std::string& filter) {
  if (!task.samples.is_array() || task.samples.empty()) return std::nullopt;
  json records = json::array();
  for (const auto& r : task.samples)
    if (!r.contains("filter") || (r["filter"].is_string() && r["filter"].get<std::string>() == filter))
      records.push_back(r);
  if (records.empty()) return std::nullopt;
  // Language-modelling metrics are ratios of sums over samples, not means.
  static const std::map<std::string, std::pair<std::string, Aggregation>> ratio_metrics = {
      {"bits_per_byte", {"bytes", Aggregation::Ratio}},
      {"byte_perplexity", {"bytes", Aggregation::ExpRatio}},
      {"word_perplexity", {"words", Aggregation::ExpRatio}},
      {"token_perplexity", {"tokens", Aggregation::ExpRatio}}};
  const auto ratio = ratio_metrics.find(metric);
  const json& first = records.front();
  if (ratio == ratio_metrics.end() ? !first.contains(metric) : !first.contains("loglikelihood"))
    return std::nullopt;

  SampleSeries s;
  std::set<std::string> seen;
  for (size_t i = 0; i < records.size(); ++i) {
    const json& r = records[i];
    std::string id = record_id(r, task.name, i);
    if (!seen.insert(id).second)
      throw Error(detail_concat("samples['", task.name, "']: duplicate id '", id, "'"));
    s.ids.push_back(std::move(id));
    if (ratio == ratio_metrics.end()) {
      s.numerator.push_back(record_number(r, metric, task.name, i));
      s.denominator.push_back(1.0);
    } else {
      const double nll = -record_number(r, "loglikelihood", task.name, i);
      s.numerator.push_back(metric == "bits_per_byte" ? nll / std::log(2.0) : nll);
      s.denominator.push_back(record_number(r, ratio->second.first, task.name, i));
      s.aggregation = ratio->second.second;
    }
  }
  return s;
}

double aggregate(const SampleSeries& s) {
  double num = 0, den = 0;
  for (size_t i = 0; i < s.numerator.size(); ++i) num += s.numerator[i], den += s.denominator[i];
  if (den == 0) return std::numeric_limits<double>::quiet_NaN();
  const double ratio = num / den;
  return s.aggregation == Aggregation::ExpRatio ? std::exp(ratio) : ratio;
}

PairedSeries pair_by_id(const SampleSeries& teacher, const SampleSeries& student) {
  std::map<std::string, size_t> student_index;
  for (size_t i = 0; i < student.ids.size(); ++i) student_index[student.ids[i]] = i;
  PairedSeries p;
  p.teacher.aggregation = teacher.aggregation;
  p.student.aggregation = student.aggregation;
  for (size_t i = 0; i < teacher.ids.size(); ++i) {
    auto it = student_index.find(teacher.ids[i]);
    if (it == student_index.end()) {
      ++p.dropped_teacher;
      continue;
    }
    for (auto* side : {&p.teacher, &p.student}) side->ids.push_back(teacher.ids[i]);
    p.teacher.numerator.push_back(teacher.numerator[i]);
    p.teacher.denominator.push_back(teacher.denominator[i]);
    p.student.numerator.push_back(student.numerator[it->second]);
    p.student.denominator.push_back(student.denominator[it->second]);
  }
  p.dropped_student = student.ids.size() - p.teacher.ids.size();
  return p;
}

Interval percentile_interval(std::vector<double> values, double level) {
  if (values.empty()) return {};
  std::sort(values.begin(), values.end());
  const double tail = (1.0 - level) / 2.0;
  // Nearest rank, so +inf entries stay +inf instead of poisoning an interpolation.
  auto at = [&](double q) {
    const double pos = q * static_cast<double>(values.size() - 1);
    return values[static_cast<size_t>(std::llround(pos))];
  };
  return {at(tail), at(1.0 - tail)};
}

namespace {

// One replicate's resampled score pair for a paired benchmark.
std::pair<double, double> resample(const PairedSeries& p, SplitMix64& rng) {
  const size_t n = p.teacher.numerator.size();
  double tn = 0, td = 0, sn = 0, sd = 0;
  for (size_t k = 0; k < n; ++k) {
    const size_t i = rng.below(n);
    tn += p.teacher.numerator[i], td += p.teacher.denominator[i];
    sn += p.student.numerator[i], sd += p.student.denominator[i];
  }
  auto finish = [](double num, double den, Aggregation a) {
    const double r = num / den;
    return a == Aggregation::ExpRatio ? std::exp(r) : r;
  };
  return {finish(tn, td, p.teacher.aggregation), finish(sn, sd, p.student.aggregation)};
}

}  // namespace

BootstrapResult paired_bootstrap(const std::vector<BootstrapBenchmark>& benchmarks,
                                 const BootstrapOptions& options) {
  if (options.replicates < 2) throw UsageError("bootstrap needs at least 2 replicates");
  if (!(options.level > 0 && options.level < 1)) throw UsageError("confidence level must be in (0, 1)");
  const size_t nb = benchmarks.size();
  const double inf = std::numeric_limits<double>::infinity();
  SplitMix64 rng(options.seed);

  std::vector<std::vector<double>> recovery_draws(nb), c_draws(options.alpha_grid.size());
  std::vector<double> star_draws;
  std::vector<double> thresholds(nb);
  for (int r = 0; r < options.replicates; ++r) {
    for (size_t b = 0; b < nb; ++b) {
      const auto& bm = benchmarks[b];
      double t = bm.teacher, s = bm.student;
      const bool resampled = bm.paired && !bm.paired->teacher.ids.empty();
      if (resampled) std::tie(t, s) = resample(*bm.paired, rng);
      thresholds[b] = tie_threshold(t, s, bm.higher_is_better);
      if (resampled) {
        auto rec = recovery(t, s, bm.higher_is_better);
        recovery_draws[b].push_back(rec ? *rec : inf);
      }
    }
    for (size_t g = 0; g < options.alpha_grid.size(); ++g)
      c_draws[g].push_back(c_alpha(thresholds, options.alpha_grid[g]));
    auto star = alpha_star(thresholds, options.alpha_max);
    star_draws.push_back(star ? *star : inf);
  }

  BootstrapResult out;
  out.replicates = options.replicates;
  for (size_t b = 0; b < nb; ++b)
    out.recovery.push_back(recovery_draws[b].empty()
                               ? std::nullopt
                               : std::optional<Interval>(percentile_interval(recovery_draws[b], options.level)));
  for (auto& draws : c_draws) out.c_alpha.push_back(percentile_interval(draws, options.level));
  out.alpha_star = percentile_interval(star_draws, options.level);
  out.alpha_star_undefined_fraction =
      static_cast<double>(std::count(star_draws.begin(), star_draws.end(), inf)) / star_draws.size();
  return out;
}

}  // namespace xd::eval
