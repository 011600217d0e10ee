// Device helpers shared by the mLSTM kernels: dtype conversion, tile loads into
// shared memory, and a register-tiled fp32 block product.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace xd::kernels {

constexpr int kThreads = 256;  // 16 x 16 thread grid for every block product

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half(x); }

// dst[t][d] = scale * src[t0 + t][d] for t < rows, d < DMAX (zero beyond S or D);
// dst has leading dimension ld.
template <int DMAX, typename T>
__device__ __forceinline__ void load_tile(float* dst, int ld, const T* src, int t0, int rows, int S, int D,
                                          float scale) {
  for (int idx = threadIdx.x; idx < rows * DMAX; idx += kThreads) {
    const int t = idx / DMAX, d = idx % DMAX;
    float x = 0.f;
    if (t0 + t < S && d < D) x = to_float(src[(size_t)(t0 + t) * D + d]) * scale;
    dst[t * ld + d] = x;
  }
}

// acc[r][c] += sum_{kk<K} A(row, kk) B(kk, col) with row = ty + 16 r, col = tx + 16 c.
// A(row,kk) = TA ? A[kk*lda + row] : A[row*lda + kk]; B(kk,col) = TB ? B[col*ldb + kk] : B[kk*ldb + col].
// Leading dimensions are odd (padded by one) so the 16 lanes of a row hit 16 banks.
template <int RM, int CN, bool TA, bool TB>
__device__ __forceinline__ void block_mm(float (&acc)[RM][CN], const float* A, int lda, const float* B, int ldb, int K,
                                         int ty, int tx) {
#pragma unroll 4
  for (int kk = 0; kk < K; ++kk) {
    float a[RM], b[CN];
#pragma unroll
    for (int r = 0; r < RM; ++r) a[r] = TA ? A[kk * lda + ty + 16 * r] : A[(ty + 16 * r) * lda + kk];
#pragma unroll
    for (int c = 0; c < CN; ++c) b[c] = TB ? B[(tx + 16 * c) * ldb + kk] : B[kk * ldb + tx + 16 * c];
#pragma unroll
    for (int r = 0; r < RM; ++r)
#pragma unroll
      for (int c = 0; c < CN; ++c) acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
  }
}

// The intra-chunk weight exp(row_log_t + col_log_j), each log split into float32
// hi + lo (GateTablesParams::row_log_lo): the hi parts are tens and cancel exactly
// where the weight is large, so they are added first and the residues after.
__device__ __forceinline__ float chunk_weight(float row_hi, float row_lo, float col_hi, float col_lo) {
  return expf((row_hi + col_hi) + (row_lo + col_lo));
}

template <int RM, int CN>
__device__ __forceinline__ void zero(float (&acc)[RM][CN]) {
#pragma unroll
  for (int r = 0; r < RM; ++r)
#pragma unroll
    for (int c = 0; c < CN; ++c) acc[r][c] = 0.f;
}

}  // namespace xd::kernels
