// RMSNorm (with the residual add in front), SiLU * mul and RoPE for decode steps and
// inference prefills: one block of 512 threads per row for the norm, the row held in
// registers between the sum of squares and the scaling; flat elementwise grids for
// SiLU * mul and RoPE.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "decode_norm_mlp_params.h"
#include "float_cast.cuh"

namespace xd::kernels {
namespace {

constexpr int kNormThreads = 512;
constexpr int kMaxVec = kDecodeNormMaxVectorsPerThread;

template <typename T> using Cvt = FloatCast<T>;
template <typename T> __device__ __forceinline__ float rnd(float x) { return round_to<T>(x); }

template <typename T> using Pack = Pack16<T>;

template <typename T>
__global__ void __launch_bounds__(kNormThreads) rmsnorm_kernel(DecodeRmsNormParams p) {
  constexpr int E = Pack<T>::n;
  __shared__ float red[kNormThreads / 32];
  const int r = blockIdx.x, tid = threadIdx.x, vecs = p.cols / E;
  const uint4* x = reinterpret_cast<const uint4*>(static_cast<const T*>(p.x) + (long long)r * p.cols);
  const uint4* y = p.y ? reinterpret_cast<const uint4*>(static_cast<const T*>(p.y) + (long long)r * p.cols) : nullptr;
  uint4* sum = p.y ? reinterpret_cast<uint4*>(static_cast<T*>(p.sum) + (long long)r * p.cols) : nullptr;
  float h[kMaxVec][E];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kMaxVec; ++j) {
    const int v = tid + j * kNormThreads;
    if (v >= vecs) break;
    Pack<T> a, b, s;
    a.raw = x[v];
    if (y) b.raw = y[v];
#pragma unroll
    for (int i = 0; i < E; ++i) {
      h[j][i] = y ? rnd<T>(Cvt<T>::to_float(a.e[i]) + Cvt<T>::to_float(b.e[i])) : Cvt<T>::to_float(a.e[i]);
      s.e[i] = Cvt<T>::from_float(h[j][i]);
      ss = fmaf(h[j][i], h[j][i], ss);
    }
    if (y) sum[v] = s.raw;
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  if (tid % 32 == 0) red[tid / 32] = ss;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int w = 0; w < kNormThreads / 32; ++w) total += red[w];
  // The mean rounded before eps is added, as ATen's two ops (no fused multiply-add).
  const float rstd = rsqrtf(__fadd_rn(__fmul_rn(total, 1.f / p.cols), p.eps));
  const uint4* w = reinterpret_cast<const uint4*>(p.weight);
  uint4* out = reinterpret_cast<uint4*>(static_cast<T*>(p.out) + (long long)r * p.cols);
#pragma unroll
  for (int j = 0; j < kMaxVec; ++j) {
    const int v = tid + j * kNormThreads;
    if (v >= vecs) break;
    Pack<T> wv, o;
    wv.raw = w[v];
#pragma unroll
    for (int i = 0; i < E; ++i) {
      const float n = __fmul_rn(h[j][i], rstd);
      o.e[i] = Cvt<T>::from_float(__fmul_rn(Cvt<T>::to_float(wv.e[i]), p.weight_in_fp32 ? n : rnd<T>(n)));
    }
    out[v] = o.raw;
  }
}

template <typename T>
__global__ void silu_mul_kernel(DecodeSiluMulParams p) {
  const long long total = (long long)p.rows * p.cols;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)gridDim.x * blockDim.x) {
    const float g = Cvt<T>::to_float(static_cast<const T*>(p.gate)[idx]), u = Cvt<T>::to_float(static_cast<const T*>(p.up)[idx]);
    const float act = rnd<T>(g / (1.f + expf(-g)));
    static_cast<T*>(p.out)[idx] = Cvt<T>::from_float(__fmul_rn(act, u));
  }
}

// 16 bytes of gate and up per thread and iteration (rows contiguous, 16-byte aligned).
template <typename T>
__global__ void silu_mul_vec_kernel(DecodeSiluMulParams p) {
  using V = Pack<T>;
  const long long vectors = (long long)p.rows * p.cols / V::n;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < vectors;
       idx += (long long)gridDim.x * blockDim.x) {
    V g, u, o;
    g.raw = reinterpret_cast<const uint4*>(p.gate)[idx];
    u.raw = reinterpret_cast<const uint4*>(p.up)[idx];
#pragma unroll
    for (int i = 0; i < V::n; ++i) {
      const float x = Cvt<T>::to_float(g.e[i]);
      o.e[i] = Cvt<T>::from_float(__fmul_rn(rnd<T>(x / (1.f + expf(-x))), Cvt<T>::to_float(u.e[i])));
    }
    reinterpret_cast<uint4*>(p.out)[idx] = o.raw;
  }
}

// One thread per 16 bytes of the first half of a row and the matching 16 bytes of the
// second half (the partners r = (-x2, x1) of each other), so every byte is loaded once.
template <typename T>
__global__ void rope_rows_vec_kernel(RopeRowsParams p) {
  using V = Pack<T>;
  const int half = p.D / 2, per_row = half / V::n;
  const long long total = (long long)p.B * p.H * p.T * per_row;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)gridDim.x * blockDim.x) {
    const int d0 = static_cast<int>(idx % per_row) * V::n;
    long long row = idx / per_row;
    const int t = static_cast<int>(row % p.T);
    row /= p.T;
    const int h = static_cast<int>(row % p.H), b = static_cast<int>(row / p.H);
    const T* x = static_cast<const T*>(p.x) + b * p.x_sb + h * p.x_sh + t * p.x_st;
    T* out = static_cast<T*>(p.out) + b * p.out_sb + h * p.out_sh + t * p.out_st;
    V lo, hi, out_lo, out_hi;
    lo.raw = *reinterpret_cast<const uint4*>(x + d0);
    hi.raw = *reinterpret_cast<const uint4*>(x + d0 + half);
    const float* c = p.cos + (long long)t * p.D;
    const float* sn = p.sin + (long long)t * p.D;
#pragma unroll
    for (int i = 0; i < V::n; ++i) {
      const float x1 = Cvt<T>::to_float(lo.e[i]), x2 = Cvt<T>::to_float(hi.e[i]);
      const int d = d0 + i;
      out_lo.e[i] = Cvt<T>::from_float(rope<T>(x1, -x2, c[d], sn[d], p.in_fp32));
      out_hi.e[i] = Cvt<T>::from_float(rope<T>(x2, x1, c[d + half], sn[d + half], p.in_fp32));
    }
    *reinterpret_cast<uint4*>(out + d0) = out_lo.raw;
    *reinterpret_cast<uint4*>(out + d0 + half) = out_hi.raw;
  }
}

// One thread per output element; the partner element r = (-x2, x1) is read from the
// same row (an L1 hit), so each row is read from memory once.
template <typename T>
__global__ void rope_rows_kernel(RopeRowsParams p) {
  const long long total = (long long)p.B * p.H * p.T * p.D;
  const int half = p.D / 2;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)gridDim.x * blockDim.x) {
    const int d = static_cast<int>(idx % p.D);
    long long row = idx / p.D;
    const int t = static_cast<int>(row % p.T);
    row /= p.T;
    const int h = static_cast<int>(row % p.H), b = static_cast<int>(row / p.H);
    const T* x = static_cast<const T*>(p.x) + b * p.x_sb + h * p.x_sh + t * p.x_st;
    const float xd = Cvt<T>::to_float(x[d]);
    const float r = d < half ? -Cvt<T>::to_float(x[d + half]) : Cvt<T>::to_float(x[d - half]);
    const long long at = (long long)t * p.D + d;
    const float y = rope<T>(xd, r, p.cos[at], p.sin[at], p.in_fp32);
    (static_cast<T*>(p.out) + b * p.out_sb + h * p.out_sh + t * p.out_st)[d] = Cvt<T>::from_float(y);
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

template <typename T>
void launch_rope(const RopeRowsParams& p, cudaStream_t stream) {
  const int n = 16 / static_cast<int>(sizeof(T));
  const auto row_ok = [&](long long stride) { return (stride * (long long)sizeof(T)) % 16 == 0; };
  const int threads = 256;
  if (p.D % (2 * n) == 0 && aligned16(p.x) && aligned16(p.out) && row_ok(p.x_sb) && row_ok(p.x_sh) &&
      row_ok(p.x_st) && row_ok(p.out_sb) && row_ok(p.out_sh) && row_ok(p.out_st)) {
    const long long work = (long long)p.B * p.H * p.T * (p.D / (2 * n));
    const long long blocks = (work + threads - 1) / threads;
    rope_rows_vec_kernel<T><<<static_cast<int>(blocks < 8192 ? blocks : 8192), threads, 0, stream>>>(p);
    return;
  }
  const long long total = (long long)p.B * p.H * p.T * p.D;
  const long long blocks = (total + threads - 1) / threads;
  rope_rows_kernel<T><<<static_cast<int>(blocks < 8192 ? blocks : 8192), threads, 0, stream>>>(p);
}

template <typename T>
void launch_norm(const DecodeRmsNormParams& p, cudaStream_t stream) {
  rmsnorm_kernel<T><<<p.rows, kNormThreads, 0, stream>>>(p);
}

template <typename T>
void launch_silu(const DecodeSiluMulParams& p, cudaStream_t stream) {
  const long long total = (long long)p.rows * p.cols;
  const int threads = 256;
  const int n = 16 / static_cast<int>(sizeof(T));
  if (total % n == 0 && aligned16(p.gate) && aligned16(p.up) && aligned16(p.out)) {
    const long long blocks = (total / n + threads - 1) / threads;
    silu_mul_vec_kernel<T><<<static_cast<int>(blocks < 8192 ? blocks : 8192), threads, 0, stream>>>(p);
    return;
  }
  const long long blocks = (total + threads - 1) / threads;
  silu_mul_kernel<T><<<static_cast<int>(blocks < 4096 ? blocks : 4096), threads, 0, stream>>>(p);
}

int elements_per_vector(DecodeDtype dtype) { return dtype == DecodeDtype::f32 ? 4 : 8; }

}  // namespace

bool decode_rmsnorm_supports(DecodeDtype dtype, int cols) {
  const int e = elements_per_vector(dtype);
  return cols > 0 && cols % e == 0 && cols / e <= kNormThreads * kMaxVec;
}

void decode_rmsnorm(const DecodeRmsNormParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DecodeDtype::f32: launch_norm<float>(p, stream); break;
    case DecodeDtype::bf16: launch_norm<__nv_bfloat16>(p, stream); break;
    case DecodeDtype::f16: launch_norm<__half>(p, stream); break;
  }
}

void decode_silu_mul(const DecodeSiluMulParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DecodeDtype::f32: launch_silu<float>(p, stream); break;
    case DecodeDtype::bf16: launch_silu<__nv_bfloat16>(p, stream); break;
    case DecodeDtype::f16: launch_silu<__half>(p, stream); break;
  }
}

void rope_rows(const RopeRowsParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DecodeDtype::f32: launch_rope<float>(p, stream); break;
    case DecodeDtype::bf16: launch_rope<__nv_bfloat16>(p, stream); break;
    case DecodeDtype::f16: launch_rope<__half>(p, stream); break;
  }
}

}  // namespace xd::kernels
