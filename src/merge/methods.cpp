// The merge methods' element arithmetic (see include/xdistill/merge/methods.h for
// the exact definitions and the papers they follow).
#include "xdistill/merge/methods.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>

#include "xdistill/merge/parallel.h"
#include "xdistill/util/error.h"

namespace xd::merge {

Method parse_method(const std::string& name) {
  if (name == "linear") return Method::Linear;
  if (name == "task_arithmetic") return Method::TaskArithmetic;
  if (name == "ties") return Method::Ties;
  if (name == "dare" || name == "dare_linear") return Method::Dare;
  throw UsageError("unknown merge method '" + name + "' (known: linear, task_arithmetic, ties, dare)");
}

const char* method_name(Method m) {
  switch (m) {
    case Method::Linear: return "linear";
    case Method::TaskArithmetic: return "task_arithmetic";
    case Method::Ties: return "ties";
    case Method::Dare: return "dare";
  }
  return "?";
}

bool needs_base(Method m) { return m != Method::Linear; }
bool uses_density(Method m) { return m == Method::Ties || m == Method::Dare; }

uint64_t tensor_name_key(const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t dare_stream_key(uint64_t seed, const std::string& tensor, size_t expert) {
  return splitmix64(seed ^ splitmix64(tensor_name_key(tensor) ^ splitmix64(static_cast<uint64_t>(expert))));
}

uint32_t dare_keep_below(float density) {
  return static_cast<uint32_t>(std::floor(static_cast<double>(density) * 16777216.0));
}

// ---------------------------------------------------------------- TIES threshold

namespace {
inline uint32_t f32_bits_abs(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u & 0x7fffffffu;
}
}  // namespace

float kth_largest_magnitude(int64_t n, int64_t k, const std::function<void(int64_t, int64_t, float*)>& produce) {
  if (k <= 0) return std::numeric_limits<float>::infinity();
  if (k > n) return 0.f;
  // Non-negative floats order like their bit patterns: select on the high 16 bits,
  // then on the low 16 bits within the chosen high bucket.
  constexpr int64_t kRange = 1 << 16;
  std::vector<uint64_t> histogram(kRange);
  std::mutex merge_mutex;
  auto pass = [&](bool low, uint32_t high_bucket) {
    std::fill(histogram.begin(), histogram.end(), 0);
    parallel_for(n, 1 << 16, [&](int64_t begin, int64_t end) {
      std::vector<uint64_t> local(kRange);
      std::vector<float> values(std::min<int64_t>(end - begin, 1 << 14));
      for (int64_t b = begin; b < end; b += static_cast<int64_t>(values.size())) {
        const int64_t e = std::min<int64_t>(end, b + static_cast<int64_t>(values.size()));
        produce(b, e, values.data());
        for (int64_t j = 0; j < e - b; ++j) {
          const uint32_t bits = f32_bits_abs(values[j]);
          if (!low)
            ++local[bits >> 16];
          else if ((bits >> 16) == high_bucket)
            ++local[bits & 0xffffu];
        }
      }
      std::lock_guard<std::mutex> lock(merge_mutex);
      for (int64_t i = 0; i < kRange; ++i) histogram[i] += local[i];
    });
  };
  auto find_from_top = [&](uint64_t& need) {
    for (int64_t bucket = kRange - 1; bucket >= 0; --bucket) {
      if (histogram[bucket] >= need) return static_cast<uint32_t>(bucket);
      need -= histogram[bucket];
    }
    throw Error("internal: radix select ran out of values");
  };
  uint64_t need = static_cast<uint64_t>(k);
  pass(false, 0);
  const uint32_t high = find_from_top(need);
  pass(true, high);
  const uint32_t low = find_from_top(need);
  uint32_t bits = (high << 16) | low;
  float threshold;
  std::memcpy(&threshold, &bits, 4);
  return threshold;
}

// ---------------------------------------------------------------- combine

namespace {
void combine_ties(const MethodParams& p, const TensorPlan& plan, const float* const* x, const float* base,
                  int64_t n, float* out) {
  const size_t experts = p.weights.size();
  float total_weight = 0.f;
  for (double w : p.weights) total_weight += static_cast<float>(w);
  for (int64_t j = 0; j < n; ++j) {
    double elected = 0.0;
    for (size_t i = 0; i < experts; ++i) {
      const float tau = x[i][j] - base[j];
      if (std::fabs(tau) >= plan.ties_threshold[i]) elected += p.weights[i] * static_cast<double>(tau);
    }
    float numerator = 0.f, denominator = 0.f;
    if (elected != 0.0) {
      for (size_t i = 0; i < experts; ++i) {
        const float tau = x[i][j] - base[j];
        if (tau == 0.f || !(std::fabs(tau) >= plan.ties_threshold[i])) continue;
        if ((tau > 0.f) != (elected > 0.0)) continue;
        numerator += static_cast<float>(p.weights[i]) * tau;
        denominator += static_cast<float>(p.weights[i]);
      }
    }
    const float mean = denominator > 0.f ? numerator / denominator : 0.f;
    out[j] = base[j] + total_weight * mean;
  }
}
}  // namespace

void combine_block(const MethodParams& p, const TensorPlan& plan, const float* const* x, const float* base,
                   int64_t first, int64_t n, float* out) {
  const size_t experts = p.weights.size();
  switch (p.method) {
    case Method::Linear:
      std::fill(out, out + n, 0.f);
      for (size_t i = 0; i < experts; ++i) {
        const float w = static_cast<float>(p.weights[i]);
        const float* xi = x[i];
        for (int64_t j = 0; j < n; ++j) out[j] += w * xi[j];
      }
      return;
    case Method::TaskArithmetic:
      std::fill(out, out + n, 0.f);
      for (size_t i = 0; i < experts; ++i) {
        const float w = static_cast<float>(p.weights[i]);
        const float* xi = x[i];
        for (int64_t j = 0; j < n; ++j) out[j] += w * (xi[j] - base[j]);
      }
      for (int64_t j = 0; j < n; ++j) out[j] += base[j];
      return;
    case Method::Dare:
      std::fill(out, out + n, 0.f);
      for (size_t i = 0; i < experts; ++i) {
        const float scale = static_cast<float>(p.weights[i]) / p.densities[i];
        const uint32_t keep_below = dare_keep_below(p.densities[i]);
        const uint64_t stream = plan.dare_stream[i];
        const float* xi = x[i];
        for (int64_t j = 0; j < n; ++j)
          if (dare_keep(stream, first + j, keep_below)) out[j] += scale * (xi[j] - base[j]);
      }
      for (int64_t j = 0; j < n; ++j) out[j] += base[j];
      return;
    case Method::Ties:
      combine_ties(p, plan, x, base, n, out);
      return;
  }
}

}  // namespace xd::merge
