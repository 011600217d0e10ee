// The hybrid block's branch mix (hybrid_mix_params.h). A warp owns one (b, s, h) row
// of Dh elements, four consecutive elements per lane per step (8 or 16 bytes) where the
// layouts allow it, one element per lane otherwise. Rows go in [B,S,H] order, so the
// [B,S,H,Dh] tensors are read and written as contiguous runs.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "float_cast.cuh"
#include "hybrid_mix_params.h"

namespace xd::kernels {
namespace {

constexpr int kWarps = 8;

template <typename T> struct Quad {
  using Raw = typename std::conditional<sizeof(T) == 4, float4, uint2>::type;
  union {
    Raw raw;
    T e[4];
  };
};

template <typename T> __device__ __forceinline__ void load4(const T* p, float v[4]) {
  Quad<T> q;
  q.raw = *reinterpret_cast<const typename Quad<T>::Raw*>(p);
#pragma unroll
  for (int i = 0; i < 4; ++i) v[i] = FloatCast<T>::to_float(q.e[i]);
}

template <typename T> __device__ __forceinline__ void store4(T* p, const float v[4]) {
  Quad<T> q;
#pragma unroll
  for (int i = 0; i < 4; ++i) q.e[i] = FloatCast<T>::from_float(v[i]);
  *reinterpret_cast<typename Quad<T>::Raw*>(p) = q.raw;
}

struct Row {
  long long bsh;        // (b*S + s)*H + h: the gate's index, and the [B,S,H,Dh] row
  long long g_off, l_off, bhs;  // global's and local's row offsets; (b*H + h)*S + s
};

__device__ __forceinline__ Row row_of(const HybridMixParams& p, long long r) {
  const int h = static_cast<int>(r % p.H);
  const long long bs = r / p.H;
  const int s = static_cast<int>(bs % p.S), b = static_cast<int>(bs / p.S);
  return {r, b * p.g_sb + h * p.g_sh + s * p.g_ss, b * p.l_sb + h * p.l_sh + s * p.l_ss,
          ((long long)b * p.H + h) * p.S + s};
}

template <typename T, bool kVec>
__global__ void __launch_bounds__(kWarps * 32) mix_forward_kernel(HybridMixParams p) {
  const int lane = threadIdx.x % 32;
  const long long rows = (long long)p.B * p.S * p.H;
  for (long long r = blockIdx.x * (long long)kWarps + threadIdx.x / 32; r < rows; r += (long long)gridDim.x * kWarps) {
    const Row row = row_of(p, r);
    const float o = p.gate[row.bsh];
    const T* g = static_cast<const T*>(p.global) + row.g_off;
    const T* l = static_cast<const T*>(p.local) + row.l_off;
    T* out = static_cast<T*>(p.out) + row.bsh * p.D;
    if constexpr (kVec) {
      for (int d = lane * 4; d < p.D; d += 128) {
        float gv[4], lv[4], ov[4];
        load4(g + d, gv);
        load4(l + d, lv);
#pragma unroll
        for (int i = 0; i < 4; ++i) ov[i] = o * gv[i] + (1.f - o) * lv[i];
        store4(out + d, ov);
      }
    } else {
      for (int d = lane; d < p.D; d += 32) {
        const float gv = FloatCast<T>::to_float(g[d]), lv = FloatCast<T>::to_float(l[d]);
        out[d] = FloatCast<T>::from_float(o * gv + (1.f - o) * lv);
      }
    }
  }
}

template <typename T, bool kVec>
__global__ void __launch_bounds__(kWarps * 32) mix_backward_kernel(HybridMixParams p) {
  const int lane = threadIdx.x % 32;
  const long long rows = (long long)p.B * p.S * p.H;
  for (long long r = blockIdx.x * (long long)kWarps + threadIdx.x / 32; r < rows; r += (long long)gridDim.x * kWarps) {
    const Row row = row_of(p, r);
    const float o = p.gate[row.bsh];
    const T* g = static_cast<const T*>(p.global) + row.g_off;
    const T* l = static_cast<const T*>(p.local) + row.l_off;
    const T* gr = static_cast<const T*>(p.grad) + row.bsh * p.D;
    T* dg = p.grad_global ? static_cast<T*>(p.grad_global) + row.bhs * p.D : nullptr;
    T* dl = p.grad_local ? static_cast<T*>(p.grad_local) + row.bsh * p.D : nullptr;
    float acc = 0.f;
    if constexpr (kVec) {
      for (int d = lane * 4; d < p.D; d += 128) {
        float grv[4], v[4];
        load4(gr + d, grv);
        if (p.grad_gate) {
          float gv[4], lv[4];
          load4(g + d, gv);
          load4(l + d, lv);
          // grad*g - grad*l rounded once: each product of two 16-bit floats is exact in float32.
#pragma unroll
          for (int i = 0; i < 4; ++i) acc += fmaf(grv[i], gv[i], -(grv[i] * lv[i]));
        }
        if (dg) {
#pragma unroll
          for (int i = 0; i < 4; ++i) v[i] = grv[i] * o;
          store4(dg + d, v);
        }
        if (dl) {
#pragma unroll
          for (int i = 0; i < 4; ++i) v[i] = grv[i] * (1.f - o);
          store4(dl + d, v);
        }
      }
    } else {
      for (int d = lane; d < p.D; d += 32) {
        const float grv = FloatCast<T>::to_float(gr[d]);
        if (p.grad_gate) {
          const float gv = FloatCast<T>::to_float(g[d]), lv = FloatCast<T>::to_float(l[d]);
          acc += fmaf(grv, gv, -(grv * lv));
        }
        if (dg) dg[d] = FloatCast<T>::from_float(grv * o);
        if (dl) dl[d] = FloatCast<T>::from_float(grv * (1.f - o));
      }
    }
    if (p.grad_gate) {
      for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
      if (lane == 0) p.grad_gate[row.bsh] = acc;
    }
  }
}

// Four elements per lane: Dh, every row stride and every base a multiple of 4 elements
// on 4-element boundaries.
bool vectorizable(const HybridMixParams& p, int elem) {
  const auto ok_ptr = [&](const void* ptr) {
    return ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % (4 * static_cast<uintptr_t>(elem)) == 0;
  };
  const auto ok_stride = [](long long s) { return s % 4 == 0; };
  return p.D % 4 == 0 && ok_ptr(p.global) && ok_ptr(p.local) && ok_ptr(p.grad) && ok_ptr(p.out) &&
         ok_ptr(p.grad_global) && ok_ptr(p.grad_local) && ok_stride(p.g_sb) && ok_stride(p.g_sh) &&
         ok_stride(p.g_ss) && ok_stride(p.l_sb) && ok_stride(p.l_sh) && ok_stride(p.l_ss);
}

int grid(const HybridMixParams& p) {
  const long long blocks = ((long long)p.B * p.S * p.H + kWarps - 1) / kWarps;
  return static_cast<int>(blocks < 65535 ? (blocks > 0 ? blocks : 1) : 65535);
}

template <typename T> void forward(const HybridMixParams& p, cudaStream_t s) {
  if (vectorizable(p, sizeof(T))) mix_forward_kernel<T, true><<<grid(p), kWarps * 32, 0, s>>>(p);
  else mix_forward_kernel<T, false><<<grid(p), kWarps * 32, 0, s>>>(p);
}

template <typename T> void backward(const HybridMixParams& p, cudaStream_t s) {
  if (vectorizable(p, sizeof(T))) mix_backward_kernel<T, true><<<grid(p), kWarps * 32, 0, s>>>(p);
  else mix_backward_kernel<T, false><<<grid(p), kWarps * 32, 0, s>>>(p);
}

}  // namespace

void hybrid_mix_forward(const HybridMixParams& p, cudaStream_t stream) {
  if ((long long)p.B * p.S * p.H == 0) return;
  switch (p.dtype) {
    case DecodeDtype::f32: forward<float>(p, stream); break;
    case DecodeDtype::bf16: forward<__nv_bfloat16>(p, stream); break;
    case DecodeDtype::f16: forward<__half>(p, stream); break;
  }
}

void hybrid_mix_backward(const HybridMixParams& p, cudaStream_t stream) {
  if ((long long)p.B * p.S * p.H == 0) return;
  switch (p.dtype) {
    case DecodeDtype::f32: backward<float>(p, stream); break;
    case DecodeDtype::bf16: backward<__nv_bfloat16>(p, stream); break;
    case DecodeDtype::f16: backward<__half>(p, stream); break;
  }
}

}  // namespace xd::kernels
