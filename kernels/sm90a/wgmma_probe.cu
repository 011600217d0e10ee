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
  const uint32_t k_step = wgmma::kCoreBytes, row_step = (K / 8) * wgmma::kCoreBytes;
  const uint32_t lbo = swap_offsets ? row_step : k_step, sbo = swap_offsets ? k_step : row_step;
  for (int s = 0; s < K / 16; ++s) {
    const uint32_t off = wgmma::core_offset(0, 16 * s, K);
    wgmma::mma_m64n64k16(d, wgmma::descriptor(sa + off, lbo, sbo), wgmma::descriptor(sb + off, lbo, sbo), s > 0);
  }
  wgmma::commit();
  wgmma::wait<0>();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) c[(16 * warp + g + 8 * (e / 2)) * 64 + 8 * j + 2 * t + e % 2] = d[4 * j + e];
}

}  // namespace

bool wgmma_probe_gemm(const void* a, const void* b, float* c, int K, cudaStream_t stream, bool swap_offsets) {
  if (K < 16 || K > kWgmmaProbeMaxK || K % 16 != 0) return false;
  int dev = 0, major = 0, minor = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  if (major != 9 || minor != 0) return false;
  const int smem = 2 * 64 * K * static_cast<int>(sizeof(bf16));
  cudaFuncSetAttribute(wgmma_probe_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  wgmma_probe_kernel<<<1, 128, smem, stream>>>(static_cast<const bf16*>(a), static_cast<const bf16*>(b), c, K,
                                               swap_offsets);
  return true;
}

}  // namespace xd::kernels
