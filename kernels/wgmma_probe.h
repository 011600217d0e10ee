// The wgmma building block checked on its own (kernels/sm90a/wgmma_probe.cu; no torch
// headers): c [64 x 64] float32 = a [64 x K] times b^T (b [64 x K]), a and b bf16
// row-major in global memory, on one warpgroup through wgmma's shared-memory
// descriptors (kernels/sm90a/wgmma.cuh). Its GPU test holds it to a float64 product.
#pragma once
#include <cuda_runtime.h>

namespace xd::kernels {

constexpr int kWgmmaProbeMaxK = 256;

// False, with nothing launched, unless K is a multiple of 16 in [16, 256] and the
// current device is compute capability 9.0 (wgmma is sm_90a only). swap_offsets: the
// descriptors' two offset fields exchanged, the other reading of the PTX manual's
// "leading" and "stride" byte offsets; the test runs it only to say which reading holds
// when the first one fails.
bool wgmma_probe_gemm(const void* a, const void* b, float* c, int K, cudaStream_t stream, bool swap_offsets = false);

// The forms the wgmma mLSTM kernels use: c [64 x N] float32 = a [64 x K] b [K x N], b
// row-major in global memory and MN-major in shared memory; a from shared memory
// (K-major) or, with registers_a, from registers in the A fragment layout; N = 64 or 72.
// Same conditions and swap_offsets as above; false for another N.
bool wgmma_probe_mn_major(const void* a, const void* b, float* c, int K, int N, bool registers_a,
                          cudaStream_t stream, bool swap_offsets = false);

}  // namespace xd::kernels
