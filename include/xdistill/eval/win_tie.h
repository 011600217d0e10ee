// Win-and-tie evaluation (../spec/method.md §4).
//
// A student "wins or ties" a benchmark b at relative tolerance α when
//   higher is better:  A_S(b) ≥ (1 − α) · A_T(b)
//   lower is better:   A_S(b) ≤ (1 + α) · A_T(b)     (perplexity, bits per byte, ...)
// C_α is the fraction of benchmarks won or tied, and α* = inf{α ∈ [0,1] : C_α ≥ 0.5}.
//
// For each benchmark the indicator is a step in α: it turns on at one threshold
//   α_b = max(0, 1 − A_S/A_T)   (higher is better)
//   α_b = max(0, A_S/A_T − 1)   (lower is better)
// and stays on. So C_α is a step function whose only breakpoints are the α_b, and
// α* is exactly the ⌈n/2⌉-th smallest α_b (no grid search).
//
// Teacher score 0: with higher-is-better, A_S ≥ 0 = (1 − α)·0 always holds, so the
// student always wins (α_b = 0); with lower-is-better it wins only when A_S = 0 too.
// Scores must be finite and non-negative: a relative tolerance means nothing for a
// negative score, so those are errors, never silently compared.
//
// A student exactly at the boundary counts as a win-or-tie. Floating point makes
// (1 − 0.1)·0.8 a hair above 0.72, so comparisons allow kBoundaryEpsilon on α.
#pragma once
#include <optional>
#include <string>
#include <vector>

namespace xd::eval {

inline constexpr double kBoundaryEpsilon = 1e-9;

// The tolerance α_b at which the student starts to win or tie; +inf if it never does.
// Throws xd::Error naming `benchmark` for negative or non-finite scores.
double tie_threshold(double teacher, double student, bool higher_is_better,
                     const std::string& benchmark = "");

// The indicator 1_α(b).
bool wins_or_ties(double teacher, double student, bool higher_is_better, double alpha);

// Recovery: A_S/A_T for higher-is-better, A_T/A_S for lower-is-better, so that 1 is
// parity and above 1 means the student is better. Empty when the denominator is 0.
std::optional<double> recovery(double teacher, double student, bool higher_is_better);

// C_α from the per-benchmark thresholds.
double c_alpha(const std::vector<double>& thresholds, double alpha);

// α* = inf{α ∈ [0, alpha_max] : C_α ≥ 0.5}; empty when no such α exists.
std::optional<double> alpha_star(const std::vector<double>& thresholds, double alpha_max = 1.0);

// One step of C_α: the value `c` holds from `alpha` up to the next step's alpha.
struct CurveStep {
  double alpha = 0;
  double c = 0;
};
// The exact step function on [0, alpha_max]: a step at 0 and one at each distinct
// threshold inside (0, alpha_max].
std::vector<CurveStep> c_alpha_curve(const std::vector<double>& thresholds, double alpha_max);

}  // namespace xd::eval
