#include "xdistill/eval/win_tie.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "xdistill/util/error.h"

namespace xd::eval {
namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();

void check_score(double v, const char* who, const std::string& benchmark) {
  if (!std::isfinite(v) || v < 0)
    throw Error(detail_concat("win-and-tie: benchmark '", benchmark, "': ", who, " score ", v,
                              " is negative or not finite; a relative tolerance needs scores >= 0"));
}
}  // namespace

double tie_threshold(double teacher, double student, bool higher_is_better,
                     const std::string& benchmark) {
  check_score(teacher, "teacher", benchmark);
  check_score(student, "student", benchmark);
  if (higher_is_better) {
    if (student >= teacher) return 0.0;  // also covers teacher == 0
    return 1.0 - student / teacher;      // teacher > 0 here
  }
  if (student <= teacher) return 0.0;
  if (teacher == 0.0) return kInf;       // student > 0 = (1 + α)·0 for every α
  return student / teacher - 1.0;
}

bool wins_or_ties(double teacher, double student, bool higher_is_better, double alpha) {
  return alpha >= tie_threshold(teacher, student, higher_is_better) - kBoundaryEpsilon;
}

std::optional<double> recovery(double teacher, double student, bool higher_is_better) {
  const double num = higher_is_better ? student : teacher;
  const double den = higher_is_better ? teacher : student;
  if (den == 0.0) return std::nullopt;
  return num / den;
}

double c_alpha(const std::vector<double>& thresholds, double alpha) {
  if (thresholds.empty()) return 0.0;
  size_t won = 0;
  for (double t : thresholds) won += alpha >= t - kBoundaryEpsilon;
  return static_cast<double>(won) / thresholds.size();
}

std::optional<double> alpha_star(const std::vector<double>& thresholds, double alpha_max) {
  if (thresholds.empty()) return std::nullopt;
  std::vector<double> sorted = thresholds;
  std::sort(sorted.begin(), sorted.end());
  // C_α ≥ 0.5  ⇔  (#thresholds ≤ α) ≥ n/2  ⇔  α ≥ the ⌈n/2⌉-th smallest threshold.
  const size_t k = (sorted.size() + 1) / 2;
  const double star = std::max(0.0, sorted[k - 1]);
  if (star > alpha_max + kBoundaryEpsilon) return std::nullopt;
  return std::min(star, alpha_max);
}

std::vector<CurveStep> c_alpha_curve(const std::vector<double>& thresholds, double alpha_max) {
  std::vector<CurveStep> steps{{0.0, c_alpha(thresholds, 0.0)}};
  std::vector<double> sorted = thresholds;
  std::sort(sorted.begin(), sorted.end());
  for (double t : sorted) {
    if (t <= kBoundaryEpsilon || t > alpha_max + kBoundaryEpsilon) continue;
    if (t - steps.back().alpha <= kBoundaryEpsilon) continue;  // ties share one step
    steps.push_back({t, c_alpha(thresholds, t)});
  }
  return steps;
}

}  // namespace xd::eval
