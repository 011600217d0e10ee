// RMSNorm's backward (rmsnorm_backward_params.h). 512 threads per block, 16 bytes of a
// row per thread per step (up to 2 steps), the block's rows in turn; each thread keeps
// its columns' weight-gradient sums in registers across the rows and writes them once.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "float_cast.cuh"
#include "rmsnorm_backward_params.h"

namespace xd::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kMaxVec = 2;  // 8,192 bf16 columns; more would spill at 512 threads

template <typename T> using Pack = Pack16<T>;

template <typename T> __device__ __forceinline__ float f32(T x) { return FloatCast<T>::to_float(x); }

// Sums of two values over the block, in a fixed order.
__device__ float2 block_sum2(float2 v, float2* red) {
  for (int off = 16; off > 0; off >>= 1) {
    v.x += __shfl_xor_sync(0xffffffffu, v.x, off);
    v.y += __shfl_xor_sync(0xffffffffu, v.y, off);
  }
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float2 total = make_float2(0.f, 0.f);
  for (int w = 0; w < kThreads / 32; ++w) total.x += red[w].x, total.y += red[w].y;
  __syncthreads();
  return total;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) rmsnorm_backward_kernel(RmsNormBackwardParams p) {
  constexpr int E = Pack<T>::n;
  __shared__ float2 red[kThreads / 32];
  const int vecs = p.cols / E;
  float w[kMaxVec][E], dw[kMaxVec][E];
#pragma unroll
  for (int j = 0; j < kMaxVec; ++j) {
    const int v = threadIdx.x + j * kThreads;
    Pack<T> wv;
    if (v < vecs) wv.raw = reinterpret_cast<const uint4*>(p.weight)[v];
#pragma unroll
    for (int i = 0; i < E; ++i) w[j][i] = v < vecs ? f32(wv.e[i]) : 0.f, dw[j][i] = 0.f;
  }
  const int first = blockIdx.x * p.rows_per_block;
  const int last = min(p.rows, first + p.rows_per_block);
  for (int r = first; r < last; ++r) {
    const uint4* x = reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + (long long)r * p.cols);
    const uint4* g = reinterpret_cast<const uint4*>(static_cast<const T*>(p.grad) + (long long)r * p.cols);
    float h[kMaxVec][E], gr[kMaxVec][E];
    float2 sums = make_float2(0.f, 0.f);  // sum x^2, sum g_n x
#pragma unroll
    for (int j = 0; j < kMaxVec; ++j) {
      const int v = threadIdx.x + j * kThreads;
      if (v >= vecs) break;
      Pack<T> a, b;
      a.raw = x[v];
      b.raw = g[v];
#pragma unroll
      for (int i = 0; i < E; ++i) {
        h[j][i] = f32(a.e[i]);
        gr[j][i] = f32(b.e[i]);
        sums.x = fmaf(h[j][i], h[j][i], sums.x);
        sums.y = fmaf(gr[j][i] * w[j][i], h[j][i], sums.y);
      }
    }
    const float2 total = block_sum2(sums, red);
    // The mean rounded before eps is added, as the forward.
    const float rstd = rsqrtf(__fadd_rn(__fmul_rn(total.x, 1.f / p.cols), p.eps));
    const float coef = rstd * rstd * rstd / p.cols * total.y;
    uint4* out = reinterpret_cast<uint4*>(static_cast<T*>(p.grad_x) + (long long)r * p.cols);
#pragma unroll
    for (int j = 0; j < kMaxVec; ++j) {
      const int v = threadIdx.x + j * kThreads;
      if (v >= vecs) break;
      Pack<T> o;
#pragma unroll
      for (int i = 0; i < E; ++i) {
        o.e[i] = FloatCast<T>::from_float(rstd * (gr[j][i] * w[j][i]) - h[j][i] * coef);
        const float n = __fmul_rn(h[j][i], rstd);
        dw[j][i] = fmaf(gr[j][i], p.weight_in_fp32 ? n : round_to<T>(n), dw[j][i]);
      }
      out[v] = o.raw;
    }
  }
  float* partial = p.grad_w_partial + (long long)blockIdx.x * p.cols;
#pragma unroll
  for (int j = 0; j < kMaxVec; ++j) {
    const int v = threadIdx.x + j * kThreads;
    if (v >= vecs) break;
#pragma unroll
    for (int i = 0; i < E; ++i) partial[v * E + i] = dw[j][i];
  }
}

}  // namespace

bool rmsnorm_backward_supports(DecodeDtype dtype, int cols) {
  const int e = dtype == DecodeDtype::f32 ? 4 : 8;
  return cols > 0 && cols % e == 0 && cols / e <= kThreads * kMaxVec;
}

int rmsnorm_backward_blocks(int rows, int rows_per_block) { return (rows + rows_per_block - 1) / rows_per_block; }

void rmsnorm_backward(const RmsNormBackwardParams& p, cudaStream_t stream) {
  if (p.rows <= 0) return;
  const int blocks = rmsnorm_backward_blocks(p.rows, p.rows_per_block);
  switch (p.dtype) {
    case DecodeDtype::f32: rmsnorm_backward_kernel<float><<<blocks, kThreads, 0, stream>>>(p); break;
    case DecodeDtype::bf16: rmsnorm_backward_kernel<__nv_bfloat16><<<blocks, kThreads, 0, stream>>>(p); break;
    case DecodeDtype::f16: rmsnorm_backward_kernel<__half><<<blocks, kThreads, 0, stream>>>(p); break;
  }
}

}  // namespace xd::kernels
