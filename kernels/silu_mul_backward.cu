// The backward of out = round(round(silu(g)) * u) for training, one pass: 16 bytes of
// g, u and the upstream gradient per thread, both input gradients written once
// (ATen's autograd makes three passes and keeps silu(g) for it).
//   d_u = grad * round(silu(g)),   d_g = grad * u * s * (1 + g (1 - s)),  s = sigmoid(g)
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "float_cast.cuh"
#include "silu_mul_backward_params.h"

namespace xd::kernels {
namespace {

template <typename T> __device__ __forceinline__ void silu_mul_grads(float g, float u, float gr, float& dg, float& du) {
  const float den = 1.f + expf(-g), s = 1.f / den;
  du = gr * round_to<T>(g / den);  // the forward's rounded silu(g), as decode_norm_mlp.cu forms it
  dg = gr * u * s * (1.f + g * (1.f - s));
}

template <typename T>
__global__ void silu_mul_backward_vec_kernel(SiluMulBackwardParams p) {
  using V = Pack16<T>;
  const long long vectors = p.n / V::n;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < vectors;
       idx += (long long)gridDim.x * blockDim.x) {
    V g, u, gr, dg, du;
    g.raw = reinterpret_cast<const uint4*>(p.gate)[idx];
    u.raw = reinterpret_cast<const uint4*>(p.up)[idx];
    gr.raw = reinterpret_cast<const uint4*>(p.grad)[idx];
#pragma unroll
    for (int i = 0; i < V::n; ++i) {
      float a, b;
      silu_mul_grads<T>(FloatCast<T>::to_float(g.e[i]), FloatCast<T>::to_float(u.e[i]),
                        FloatCast<T>::to_float(gr.e[i]), a, b);
      dg.e[i] = FloatCast<T>::from_float(a);
      du.e[i] = FloatCast<T>::from_float(b);
    }
    reinterpret_cast<uint4*>(p.d_gate)[idx] = dg.raw;
    reinterpret_cast<uint4*>(p.d_up)[idx] = du.raw;
  }
}

template <typename T>
__global__ void silu_mul_backward_kernel(SiluMulBackwardParams p) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < p.n; i += (long long)gridDim.x * blockDim.x) {
    float a, b;
    silu_mul_grads<T>(FloatCast<T>::to_float(static_cast<const T*>(p.gate)[i]),
                      FloatCast<T>::to_float(static_cast<const T*>(p.up)[i]),
                      FloatCast<T>::to_float(static_cast<const T*>(p.grad)[i]), a, b);
    static_cast<T*>(p.d_gate)[i] = FloatCast<T>::from_float(a);
    static_cast<T*>(p.d_up)[i] = FloatCast<T>::from_float(b);
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

template <typename T> void launch(const SiluMulBackwardParams& p, cudaStream_t stream) {
  const int threads = 256, n = 16 / static_cast<int>(sizeof(T));
  const bool vec = p.n % n == 0 && aligned16(p.gate) && aligned16(p.up) && aligned16(p.grad) && aligned16(p.d_gate) &&
                   aligned16(p.d_up);
  const long long work = vec ? p.n / n : p.n;
  const long long blocks = (work + threads - 1) / threads;
  const int grid = static_cast<int>(blocks < 8192 ? blocks : 8192);
  if (vec) silu_mul_backward_vec_kernel<T><<<grid, threads, 0, stream>>>(p);
  else silu_mul_backward_kernel<T><<<grid, threads, 0, stream>>>(p);
}

}  // namespace

void silu_mul_backward(const SiluMulBackwardParams& p, cudaStream_t stream) {
  if (p.n <= 0) return;
  switch (p.dtype) {
    case DecodeDtype::f32: launch<float>(p, stream); break;
    case DecodeDtype::bf16: launch<__nv_bfloat16>(p, stream); break;
    case DecodeDtype::f16: launch<__half>(p, stream); break;
  }
}

}  // namespace xd::kernels
