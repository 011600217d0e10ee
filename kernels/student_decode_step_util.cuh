// Block-wide helpers of the student decode-step kernels (student_decode_step.cu,
// student_decode_step_phases.cuh): model-dtype loads, stores and rounding, 16-byte
// row loads and the block reduction.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "float_cast.cuh"

namespace xd::kernels::decode_step {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxReduce = 4;  // values reduced at once by block_reduce

template <typename T> using Elem = FloatCast<T>;

template <typename T> __device__ __forceinline__ float ld(const T* p) { return Elem<T>::to_float(*p); }
template <typename T> __device__ __forceinline__ void st(T* p, float x) { *p = Elem<T>::from_float(x); }
// x as a tensor of dtype T would hold it.
template <typename T> __device__ __forceinline__ float rnd(float x) { return round_to<T>(x); }

// Elements of T in one 16-byte load.
template <typename T> struct Vec {
  static constexpr int n = 16 / sizeof(T);
};

template <typename T>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[Vec<T>::n]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
  for (int i = 0; i < Vec<T>::n; ++i) out[i] = Elem<T>::to_float(e[i]);
}

template <int N>
__device__ __forceinline__ void load_vec_smem(const float* p, float (&out)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = p[i];
}

struct Sum {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct Max {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Every thread gets the reduction of v over the block. Starts with a barrier so
// that the scratch of an earlier reduction is free, which also makes every shared
// write before the call visible after it.
template <int N, typename Op>
__device__ __forceinline__ void block_reduce(float (&v)[N], float* scratch, Op op) {
  static_assert(N <= kMaxReduce, "block_reduce: too many values");
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1)
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = op(v[i], __shfl_xor_sync(0xffffffffu, v[i], off));
  __syncthreads();
  if (lane == 0)
#pragma unroll
    for (int i = 0; i < N; ++i) scratch[warp * N + i] = v[i];
  __syncthreads();
#pragma unroll
  for (int i = 0; i < N; ++i) {
    float r = scratch[i];
    for (int w = 1; w < kWarps; ++w) r = op(r, scratch[w * N + i]);
    v[i] = r;
  }
}

// rope<T>: float_cast.cuh.

}  // namespace xd::kernels::decode_step
