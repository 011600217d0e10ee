// Conversions, hashing, radix select and the DARE hash: the merge's building blocks.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "xdistill/merge/content_hash.h"
#include "xdistill/merge/convert.h"
#include "xdistill/merge/methods.h"
#include "xdistill/merge/parallel.h"

using namespace xd::merge;

TEST(Convert, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
  // 1 + 2^-8 lies exactly between bf16 1.0 (even) and 1 + 2^-7: ties to even (down).
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f808000u)), 0x3f80);
  // 1 + 3·2^-8 lies between 1 + 2^-7 (odd) and 1 + 2^-6: ties to even (up).
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f818000u)), 0x3f82);
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x3f808001u)), 0x3f81);  // just above the tie: up
  EXPECT_EQ(f32_to_bf16(bits_to_f32(0x7f7fffffu)), 0x7f80);  // max float rounds to inf
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(bits_to_f32(0x7f800001u)))));  // NaN payload in low bits stays NaN
  for (uint32_t h = 0; h < 65536; ++h) {  // every bf16 survives the round trip
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(f)) {
      EXPECT_EQ(f32_to_bf16(f), h);
    }
  }
}

TEST(Convert, F16MatchesADoubleReference) {
  // Every f16 value round-trips, and every midpoint between neighbours rounds to the even one.
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    ASSERT_EQ(f32_to_f16(f), h) << h;
    ASSERT_EQ(f32_to_f16(-f), h | 0x8000u) << h;
    if (h + 1 < 0x7c00) {
      const double mid = (static_cast<double>(f) + f16_to_f32(static_cast<uint16_t>(h + 1))) / 2;
      const uint16_t even = (h & 1) ? h + 1 : h;
      ASSERT_EQ(f32_to_f16(static_cast<float>(mid)), even) << "midpoint above " << h;
    }
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f32_to_f16(65504.f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.f), 0x7c00);  // rounds to infinity
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie between 0 and the smallest subnormal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7c00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))));
}

TEST(ContentHash, Xxh64KnownVectors) {
  EXPECT_EQ(hex64(xxh64("", 0)), "ef46db3751d8e999");
  EXPECT_EQ(hex64(xxh64("a", 1)), "d24ec4f1a98c6e5b");
  EXPECT_EQ(hex64(xxh64("abc", 3)), "44bc2cf5ad770999");
  // Long inputs take the 4-lane path; they must depend on every byte.
  std::string s(1000, 'x');
  const uint64_t h = xxh64(s.data(), s.size());
  s[999] = 'y';
  EXPECT_NE(h, xxh64(s.data(), s.size()));
}

TEST(Ties, KthLargestMagnitudeIsExact) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (int64_t n : {1, 7, 1000, 200003}) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = normal(rng);
    for (size_t i = 0; i < v.size(); i += 5) v[i] = 0.5f;  // ties
    auto produce = [&](int64_t b, int64_t e, float* out) { std::copy(v.begin() + b, v.begin() + e, out); };
    std::vector<float> sorted(v.size());
    std::transform(v.begin(), v.end(), sorted.begin(), [](float x) { return std::fabs(x); });
    std::sort(sorted.rbegin(), sorted.rend());
    for (int64_t k : {int64_t{1}, n / 3 + 1, n}) {
      EXPECT_EQ(kth_largest_magnitude(n, k, produce), sorted[static_cast<size_t>(k - 1)]) << n << " " << k;
    }
    EXPECT_TRUE(std::isinf(kth_largest_magnitude(n, 0, produce)));
  }
}

// An independent spelling of the DARE keep rule documented in methods.h.
static uint64_t mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

TEST(Dare, KeepRuleMatchesTheDocumentedHashAndRate) {
  uint64_t fnv = 0xcbf29ce484222325ull;
  for (unsigned char c : std::string("w")) fnv = (fnv ^ c) * 0x100000001b3ull;
  const uint64_t stream = mix(42 ^ mix(fnv ^ mix(1)));
  EXPECT_EQ(dare_stream_key(42, "w", 1), stream);
  int64_t kept = 0;
  const int64_t n = 200000;
  for (int64_t j = 0; j < n; ++j) {
    const bool expected = (mix(stream ^ static_cast<uint64_t>(j)) >> 40) < static_cast<uint64_t>(0.3 * 16777216.0);
    ASSERT_EQ(dare_keep(stream, j, dare_keep_below(0.3f)), expected);
    kept += expected;
  }
  EXPECT_NEAR(static_cast<double>(kept) / n, 0.3, 0.005);
  EXPECT_EQ(dare_keep_below(1.0f), 1u << 24);  // density 1 keeps everything
}

TEST(Parallel, CoversEveryIndexOnceAndRethrows) {
  set_threads(4);
  std::vector<int> hits(100001);
  parallel_for(static_cast<int64_t>(hits.size()), 100, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
  });
  EXPECT_TRUE(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
  EXPECT_THROW(parallel_for(1000, 10, [](int64_t, int64_t) { throw std::runtime_error("x"); }), std::runtime_error);
  set_threads(0);
}
