// F16 <-> F32 by hand, and the block converters the merge kernels use.
#include "xdistill/merge/convert.h"

#include "xdistill/util/error.h"

namespace xd::merge {

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in f32
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-08f;
    return bits_to_f32(f32_to_bits(magnitude) | sign);
  }
  if (exponent == 31) return bits_to_f32(sign | 0x7f800000u | (mantissa << 13));  // inf / NaN
  return bits_to_f32(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u)  // inf, or NaN (kept quiet, top payload bits kept)
    return sign | 0x7c00u | (a > 0x7f800000u ? 0x0200u | ((a >> 13) & 0x3ffu) : 0u);
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to infinity
  if (a < 0x38800000u) {                         // below 2^-14: an F16 subnormal or zero
    if (a < 0x33000000u) return sign;            // below 2^-25 (a tie at 2^-25 goes to even 0)
    const uint32_t exponent = a >> 23;           // 102..112
    const uint32_t mantissa = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exponent;      // value * 2^24 = mantissa >> shift
    uint32_t q = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (q & 1u))) ++q;
    return sign | static_cast<uint16_t>(q);
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to even;
  // a carry out of the mantissa correctly bumps the exponent.
  const uint32_t rebased = a - 0x38000000u;
  return sign | static_cast<uint16_t>((rebased + 0xfffu + ((rebased >> 13) & 1u)) >> 13);
}

bool is_mergeable_float(io::DType dtype) {
  return dtype == io::DType::BF16 || dtype == io::DType::F16 || dtype == io::DType::F32;
}

void to_f32(const uint8_t* src, io::DType dtype, int64_t n, float* dst) {
  switch (dtype) {
    case io::DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case io::DType::BF16:
      for (int64_t j = 0; j < n; ++j) {
        uint16_t h;
        std::memcpy(&h, src + 2 * j, 2);
        dst[j] = bf16_to_f32(h);
      }
      return;
    case io::DType::F16:
      for (int64_t j = 0; j < n; ++j) {
        uint16_t h;
        std::memcpy(&h, src + 2 * j, 2);
        dst[j] = f16_to_f32(h);
      }
      return;
    default:
      throw Error(std::string("cannot convert ") + io::dtype_name(dtype) + " to f32 for merging");
  }
}

void from_f32(const float* src, int64_t n, io::DType dtype, uint8_t* dst) {
  switch (dtype) {
    case io::DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case io::DType::BF16:
      for (int64_t j = 0; j < n; ++j) {
        const uint16_t h = f32_to_bf16(src[j]);
        std::memcpy(dst + 2 * j, &h, 2);
      }
      return;
    case io::DType::F16:
      for (int64_t j = 0; j < n; ++j) {
        const uint16_t h = f32_to_f16(src[j]);
        std::memcpy(dst + 2 * j, &h, 2);
      }
      return;
    default:
      throw Error(std::string("cannot store merged values as ") + io::dtype_name(dtype));
  }
}

}  // namespace xd::merge
