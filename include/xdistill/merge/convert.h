// Float conversions between the stored dtypes (BF16, F16, F32) and f32, by hand
// (no torch): the merge accumulates in f32 and rounds once at the end.
// Rounding to BF16 and F16 is round-to-nearest-even; NaN stays NaN (quiet), and
// F16 overflows to infinity as IEEE 754 prescribes.
#pragma once
#include <cstdint>
#include <cstring>

#include "xdistill/io/safetensors.h"

namespace xd::merge {

inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(static_cast<uint32_t>(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);  // ties go to the even neighbour
  return static_cast<uint16_t>((u + rounding) >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Whether the merge handles this dtype as floating point (BF16, F16, F32).
bool is_mergeable_float(io::DType dtype);

// dst[j] = f32(src[j]) for j < n; src is stored as `dtype` (BF16, F16 or F32).
void to_f32(const uint8_t* src, io::DType dtype, int64_t n, float* dst);
// dst (stored as `dtype`) = round(src[j]) for j < n.
void from_f32(const float* src, int64_t n, io::DType dtype, uint8_t* dst);

}  // namespace xd::merge
