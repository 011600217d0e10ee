// Small, portable random-number helpers for the loader. The standard library's
// distributions are implementation-defined, so data order would differ between
// standard libraries; these are fully specified here.
#pragma once
#include <cstdint>
#include <numeric>
#include <vector>

namespace xd::data {

// SplitMix64's output function: a bijective 64-bit mixer.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A hash of two words, for counter-based streams: hash2(seed, counter).
inline uint64_t hash2(uint64_t a, uint64_t b) { return mix64(mix64(a) ^ (b * 0xd6e8feb86659fd93ull)); }

// Uniform double in [0, 1) from the top 53 bits.
inline double unit_interval(uint64_t x) { return static_cast<double>(x >> 11) * 0x1.0p-53; }

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() { return mix64(state_++ * 0x9e3779b97f4a7c15ull); }
  // Uniform in [0, n), unbiased (rejects the top partial block of 2^64).
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
      const uint64_t x = next();
      if (x < limit) return x % n;
    }
  }

 private:
  uint64_t state_;
};

// Fisher-Yates permutation of 0..n-1.
inline std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  SplitMix64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(uint64_t(i) + 1)]);
  return perm;
}

}  // namespace xd::data
