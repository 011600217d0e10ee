// AdamW with fp32 masters in one pass (adamw_step_params.h). Four elements per thread
// per iteration: float4 loads of the fp32 state, 8-byte loads of a bf16/fp16
// gradient, so the kernel runs at the copy bandwidth. Tensors whose length or
// addresses do not allow the vector path take the scalar loop.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "adamw_step_params.h"
#include "float_cast.cuh"

namespace xd::kernels {
namespace {

constexpr int kThreads = 256;

struct AdamWScalars {
  float lr, beta1, beta2, eps, decay_factor, grad_scale, step_size, bc2_sqrt;
};

__device__ __forceinline__ float adamw_update(float w, float g, float& m, float& v, const AdamWScalars& s) {
  w *= s.decay_factor;
  m = s.beta1 * m + (1.f - s.beta1) * g;
  v = s.beta2 * v + (1.f - s.beta2) * g * g;
  const float denom = sqrtf(v) / s.bc2_sqrt + s.eps;
  return w - s.step_size * m / denom;
}

template <typename G, typename P>
__global__ void __launch_bounds__(kThreads) adamw_vec4_kernel(AdamWStepParams p, AdamWScalars s) {
  const long long quads = p.n / 4;
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long q = blockIdx.x * (long long)blockDim.x + threadIdx.x; q < quads; q += stride) {
    float4 w = reinterpret_cast<const float4*>(p.master)[q];
    float4 m = reinterpret_cast<const float4*>(p.exp_avg)[q];
    float4 v = reinterpret_cast<const float4*>(p.exp_avg_sq)[q];
    float g[4] = {0.f, 0.f, 0.f, 0.f};
    if (p.grad) {
      if constexpr (sizeof(G) == 4) {
        const float4 gv = reinterpret_cast<const float4*>(p.grad)[q];
        g[0] = gv.x, g[1] = gv.y, g[2] = gv.z, g[3] = gv.w;
      } else {
        union {
          uint2 raw;
          G e[4];
        } gv;
        gv.raw = reinterpret_cast<const uint2*>(p.grad)[q];
        for (int i = 0; i < 4; ++i) g[i] = FloatCast<G>::to_float(gv.e[i]);
      }
      for (int i = 0; i < 4; ++i) g[i] *= s.grad_scale;
    }
    w.x = adamw_update(w.x, g[0], m.x, v.x, s);
    w.y = adamw_update(w.y, g[1], m.y, v.y, s);
    w.z = adamw_update(w.z, g[2], m.z, v.z, s);
    w.w = adamw_update(w.w, g[3], m.w, v.w, s);
    reinterpret_cast<float4*>(p.master)[q] = w;
    reinterpret_cast<float4*>(p.exp_avg)[q] = m;
    reinterpret_cast<float4*>(p.exp_avg_sq)[q] = v;
    if (p.param) {
      if constexpr (sizeof(P) == 4) {
        reinterpret_cast<float4*>(p.param)[q] = w;
      } else {
        union {
          uint2 raw;
          P e[4];
        } out;
        out.e[0] = FloatCast<P>::from_float(w.x), out.e[1] = FloatCast<P>::from_float(w.y);
        out.e[2] = FloatCast<P>::from_float(w.z), out.e[3] = FloatCast<P>::from_float(w.w);
        reinterpret_cast<uint2*>(p.param)[q] = out.raw;
      }
    }
  }
}

template <typename G, typename P>
__global__ void __launch_bounds__(kThreads) adamw_scalar_kernel(AdamWStepParams p, AdamWScalars s, long long first) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = first + blockIdx.x * (long long)blockDim.x + threadIdx.x; i < p.n; i += stride) {
    const float g = p.grad ? FloatCast<G>::to_float(static_cast<const G*>(p.grad)[i]) * s.grad_scale : 0.f;
    const float w = adamw_update(p.master[i], g, p.exp_avg[i], p.exp_avg_sq[i], s);
    p.master[i] = w;
    if (p.param) static_cast<P*>(p.param)[i] = FloatCast<P>::from_float(w);
  }
}

bool aligned(const void* ptr, int bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

int grid_for(long long work) {
  const long long blocks = (work + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 8192 ? (blocks > 0 ? blocks : 1) : 8192);
}

template <typename G, typename P>
void launch(const AdamWStepParams& p, const AdamWScalars& s, cudaStream_t stream) {
  const int gbytes = static_cast<int>(sizeof(G)) * 4, pbytes = static_cast<int>(sizeof(P)) * 4;
  const bool vec = aligned(p.master, 16) && aligned(p.exp_avg, 16) && aligned(p.exp_avg_sq, 16) &&
                   (!p.grad || aligned(p.grad, gbytes)) && (!p.param || aligned(p.param, pbytes));
  long long done = 0;
  if (vec && p.n >= 4) {
    adamw_vec4_kernel<G, P><<<grid_for(p.n / 4), kThreads, 0, stream>>>(p, s);
    done = p.n / 4 * 4;
  }
  if (done < p.n) adamw_scalar_kernel<G, P><<<grid_for(p.n - done), kThreads, 0, stream>>>(p, s, done);
}

template <typename G>
void dispatch_param(const AdamWStepParams& p, const AdamWScalars& s, cudaStream_t stream) {
  switch (p.param ? p.param_dtype : DecodeDtype::f32) {
    case DecodeDtype::f32: launch<G, float>(p, s, stream); break;
    case DecodeDtype::bf16: launch<G, __nv_bfloat16>(p, s, stream); break;
    case DecodeDtype::f16: launch<G, __half>(p, s, stream); break;
  }
}

}  // namespace

void adamw_step(const AdamWStepParams& p, cudaStream_t stream) {
  if (p.n <= 0) return;
  const AdamWScalars s{p.lr,
                       p.beta1,
                       p.beta2,
                       p.eps,
                       1.f - p.lr * p.weight_decay,
                       p.grad_scale,
                       p.lr / p.bias_correction1,
                       p.bias_correction2_sqrt};
  switch (p.grad ? p.grad_dtype : DecodeDtype::f32) {
    case DecodeDtype::f32: dispatch_param<float>(p, s, stream); break;
    case DecodeDtype::bf16: dispatch_param<__nv_bfloat16>(p, s, stream); break;
    case DecodeDtype::f16: dispatch_param<__half>(p, s, stream); break;
  }
}

}  // namespace xd::kernels
