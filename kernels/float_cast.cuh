// Conversions between the model dtypes (float32, bfloat16, float16) and float32 in
// device code, and the value a float32 number takes once stored in a tensor of
// dtype T (what ATen's elementwise ops produce). Shared by the decode-step kernels.
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

// x rounded to T and back.
template <typename T> __device__ __forceinline__ float round_to(float x) {
  return FloatCast<T>::to_float(FloatCast<T>::from_float(x));
}

}  // namespace xd::kernels
