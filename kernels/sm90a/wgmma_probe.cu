// wgmma_probe_gemm (contract in wgmma_probe.h): the operands go to shared memory in the
// K-major core-matrix layout, then K / 16 asynchronous m64n64k16 products accumulate
// into registers, which go out through the documented fragment layout. A wrong
// descriptor field (lbo against sbo) or fragment index shows as a wrong product in the
// test, not as a silent slowdown.
#include <cuda_bf16.h>

#include "wgmma.cuh"
#include "wgmma_probe.h"

namespace xd::kernels {
namespace {

using bf16 = __nv_bfloat16;

__global__ void __launch_bounds__(128) wgmma_probe_kernel(const bf16* a, const bf16* b, float* c, int K,
                                                          bool swap_offsets) {
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* sa = smem;
  unsigned char* sb = smem + 64 * K * sizeof(bf16);
  for (int idx = threadIdx.x; idx < 64 * K; idx += blockDim.x) {
    const uint32_t off = wgmma::core_offset(idx / K, idx % K, K);
    *reinterpret_cast<bf16*>(sa + off) = a[idx];
    *reinterpret_cast<bf16*>(sb + off) = b[idx];
  }
  wgmma::fence_shared_for_async();
  __syncthreads();

  float d[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) d[i] = 0.f;
  wgmma::fence();
  for (int s = 0; s < K / 16; ++s) {
    const uint32_t off = wgmma::core_offset(0, 16 * s, K);
    wgmma::mma_m64n64k16(d, wgmma::k_major_desc(sa + off, K, swap_offsets), wgmma::k_major_desc(sb + off, K, swap_offsets),
                         s > 0);
  }
  wgmma::commit();
  wgmma::wait<0>();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) c[(16 * warp + g + 8 * (e / 2)) * 64 + 8 * j + 2 * t + e % 2] = d[4 * j + e];
}

// c [64 x N] = a [64 x K] b [K x N]: b MN-major (row-major core blocks), a K-major in
// shared memory or, with registers_a, loaded by each thread straight into the
// documented A fragment; N = 72 or 64.
template <int N>
__global__ void __launch_bounds__(128) wgmma_probe_mn_kernel(const bf16* a, const bf16* b, float* c, int K,
                                                             bool registers_a, bool swap_offsets) {
  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* sa = smem;
  unsigned char* sb = smem + 64 * K * sizeof(bf16);
  for (int idx = threadIdx.x; idx < 64 * K; idx += blockDim.x)
    *reinterpret_cast<bf16*>(sa + wgmma::core_offset(idx / K, idx % K, K)) = a[idx];
  for (int idx = threadIdx.x; idx < K * N; idx += blockDim.x)
    *reinterpret_cast<bf16*>(sb + wgmma::core_offset(idx / N, idx % N, N)) = b[idx];
  wgmma::fence_shared_for_async();
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  float d[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; ++i) d[i] = 0.f;
  for (int s = 0; s < K / 16; ++s) {
    const uint64_t desc_b = wgmma::mn_major_desc(sb + wgmma::core_offset(16 * s, 0, N), N, swap_offsets);
    wgmma::fence();
    if (registers_a) {
      const bf16* row = a + (16 * warp + g) * K + 16 * s + 2 * t;
      auto pair = [](const bf16* x) { return *reinterpret_cast<const uint32_t*>(x); };
      const uint32_t frag[4] = {pair(row), pair(row + 8 * K), pair(row + 8), pair(row + 8 * K + 8)};
      if constexpr (N == 72) wgmma::mma_m64n72k16_rs(d, frag, desc_b, s > 0);
      else wgmma::mma_m64n64k16_rs(d, frag, desc_b, s > 0);
      wgmma::commit();
      wgmma::wait<0>();  // frag is rewritten by the next step
    } else {
      const uint64_t desc_a = wgmma::k_major_desc(sa + wgmma::core_offset(0, 16 * s, K), K);
      if constexpr (N == 72) wgmma::mma_m64n72k16_ss(d, desc_a, desc_b, s > 0);
      else wgmma::mma_m64n64k16<1>(d, desc_a, desc_b, s > 0);
      wgmma::commit();
      wgmma::wait<0>();
    }
  }
#pragma unroll
  for (int j = 0; j < N / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) c[(16 * warp + g + 8 * (e / 2)) * N + 8 * j + 2 * t + e % 2] = d[4 * j + e];
}


}  // namespace

bool wgmma_probe_gemm(const void* a, const void* b, float* c, int K, cudaStream_t stream, bool swap_offsets) {
  if (K < 16 || K > kWgmmaProbeMaxK || K % 16 != 0 || !wgmma::current_device_is_sm90()) return false;
  const int smem = 2 * 64 * K * static_cast<int>(sizeof(bf16));
  cudaFuncSetAttribute(wgmma_probe_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  wgmma_probe_kernel<<<1, 128, smem, stream>>>(static_cast<const bf16*>(a), static_cast<const bf16*>(b), c, K,
                                               swap_offsets);
  return true;
}

bool wgmma_probe_mn_major(const void* a, const void* b, float* c, int K, int N, bool registers_a,
                          cudaStream_t stream, bool swap_offsets) {
  if (K < 16 || K > kWgmmaProbeMaxK || K % 16 != 0 || !wgmma::current_device_is_sm90()) return false;
  if (N != 72 && N != 64) return false;
  const int smem = (64 * K + K * N) * static_cast<int>(sizeof(bf16));
  auto kernel = N == 72 ? wgmma_probe_mn_kernel<72> : wgmma_probe_mn_kernel<64>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  kernel<<<1, 128, smem, stream>>>(static_cast<const bf16*>(a), static_cast<const bf16*>(b), c, K, registers_a,
                                   swap_offsets);
  return true;
}

}  // namespace xd::kernels
