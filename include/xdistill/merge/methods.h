// The merge methods, element by element, in f32. Notation per tensor: θ_i the
// value of expert i, θ0 the base (the seed θ(0) the experts were trained from),
// τ_i = θ_i − θ0 its task vector, λ_i its weight, d_i its density.
//
//   linear          θ = Σ λ_i θ_i                              (the paper's Stage III, method.md §3)
//   task_arithmetic θ = θ0 + Σ λ_i τ_i                         (Ilharco et al. 2023)
//   dare            θ = θ0 + Σ λ_i m_i ⊙ τ_i / d_i             (Yu et al. 2023, "DARE")
//                   m_i[j] = 1 with probability d_i, from a counter-based hash of
//                   (seed, tensor name, expert index, element index): reproducible
//                   whatever the thread count or chunking (see dare_keep).
//   ties            (Yadav et al. 2023, "TIES-Merging")
//                   1. trim: τ̂_i keeps the entries of τ_i whose |τ_i| is at least the
//                      k_i-th largest |τ_i| of the tensor, k_i = round(d_i · n) (entries
//                      tied at the threshold are all kept); the rest become 0.
//                   2. elect: γ[j] = sign(Σ_i λ_i τ̂_i[j]) (summed in f64 with the f64
//                      weights, in expert order, so an exactly tied vote is 0, not noise).
//                   3. disjoint mean over A_j = {i : τ̂_i[j] ≠ 0, sign τ̂_i[j] = γ[j]}:
//                      τ_m[j] = Σ_{A_j} λ_i τ̂_i[j] / Σ_{A_j} λ_i   (0 if A_j is empty)
//                   θ = θ0 + (Σ_i λ_i) · τ_m
//                   So λ_i weight each expert inside the mean (uniform λ: the paper's
//                   plain mean), and their sum is the paper's global scale λ (1 when
//                   the weights are normalised, as by default).
// All sums over experts run in expert order, in f32 unless noted.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace xd::merge {

enum class Method { Linear, TaskArithmetic, Ties, Dare };
Method parse_method(const std::string& name);  // throws UsageError listing the methods
const char* method_name(Method method);
bool needs_base(Method method);     // every method but linear
bool uses_density(Method method);   // ties and dare

struct MethodParams {
  Method method = Method::Linear;
  std::vector<double> weights;   // λ_i, one per expert (f32 in the sums, f64 in the TIES vote)
  std::vector<float> densities;  // d_i in (0, 1], one per expert (ties, dare)
  uint64_t seed = 0;             // dare
};

// Per-tensor state: the TIES thresholds and the DARE stream of each expert.
struct TensorPlan {
  std::vector<float> ties_threshold;  // keep |τ_i| >= threshold (+inf keeps nothing)
  std::vector<uint64_t> dare_stream;  // per expert: dare_stream_key(seed, name, i)
};

// FNV-1a 64 of the tensor name (simple to reproduce in a test).
uint64_t tensor_name_key(const std::string& name);
uint64_t splitmix64(uint64_t z);
// DARE's per-expert stream key for one tensor, and the keep decision of element
// `index`: keep iff the top 24 bits of splitmix64(stream ^ index) < floor(d · 2^24).
uint64_t dare_stream_key(uint64_t seed, const std::string& tensor, size_t expert);
inline bool dare_keep(uint64_t stream, int64_t index, uint32_t keep_below) {
  return (splitmix64(stream ^ static_cast<uint64_t>(index)) >> 40) < keep_below;
}
uint32_t dare_keep_below(float density);

// The k-th largest |v| (k >= 1) of n values produced range by range by
// produce(begin, end, out); exact, by a two-pass radix select over the f32 bits
// with O(1) memory besides the produced ranges. Returns +inf for k == 0 and
// 0 for k > n.
float kth_largest_magnitude(int64_t n, int64_t k,
                            const std::function<void(int64_t, int64_t, float*)>& produce);

// Combines one block of n elements starting at element `first` of the tensor:
// experts[i] points to expert i's values, base to θ0's (ignored for linear).
void combine_block(const MethodParams& params, const TensorPlan& plan, const float* const* experts,
                   const float* base, int64_t first, int64_t n, float* out);

}  // namespace xd::merge
