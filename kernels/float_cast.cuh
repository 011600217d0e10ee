// Conversions between the model dtypes (float32, bfloat16, float16) and float32 in
// device code, and the value a float32 number takes once stored in a tensor of
// dtype T (what ATen's elementwise ops produce), and RoPE rounded as ATen's ops.
// Shared by the decode-step and inference row kernels.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace xd::kernels {

template <typename T> struct FloatCast;
template <> struct FloatCast<float> {
  static __device__ __forceinline__ float to_float(float x) { return x; }
  static __device__ __forceinline__ float from_float(float x) { return x; }
};
template <> struct FloatCast<__nv_bfloat16> {
  static __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
};
template <> struct FloatCast<__half> {
  static __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half from_float(float x) { return __float2half_rn(x); }
};

// 16 bytes of T, for vector loads and stores.
template <typename T> struct Pack16 {
  static constexpr int n = 16 / sizeof(T);
  union {
    uint4 raw;
    T e[16 / sizeof(T)];
  };
};

// x rounded to T and back.
template <typename T> __device__ __forceinline__ float round_to(float x) {
  return FloatCast<T>::to_float(FloatCast<T>::from_float(x));
}

// HF's rotate-half RoPE of one element: x cos + r sin with r = (-x2, x1). In the
// model dtype every product and the sum are rounded (ATen on bf16 tensors, cos and
// sin cast to the model dtype first); in fp32 (OLMo) once at the end.
template <typename T>
__device__ __forceinline__ float rope(float x, float r, float c, float s, bool in_fp32) {
  if (in_fp32) return round_to<T>(__fadd_rn(__fmul_rn(x, c), __fmul_rn(r, s)));
  const float a = round_to<T>(__fmul_rn(x, round_to<T>(c))), b = round_to<T>(__fmul_rn(r, round_to<T>(s)));
  return round_to<T>(__fadd_rn(a, b));
}

}  // namespace xd::kernels
