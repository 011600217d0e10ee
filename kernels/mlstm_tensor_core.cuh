// Tensor-core variant of block_mm for 16-bit inputs: the same product (fp32
// operands in shared memory, fp32 accumulators in the 16 x 16 thread layout of
// block_mm), computed with mma.sync m16n8k16 in bf16 with fp32 accumulation,
// each operand split into two bf16 parts (about 16 significant bits); the warp results go
// through a shared-memory scratch tile (M x N fp32) back into the caller's
// register layout, so the kernels' epilogues are the same for both paths.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "mlstm_common.cuh"

namespace xd::kernels {

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// x = hi + lo with hi = bf16(x), lo = bf16(x - hi), for a pair of columns.
__device__ __forceinline__ void split_bf16(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const float h0 = __bfloat162float(__float2bfloat16_rn(x0)), h1 = __bfloat162float(__float2bfloat16_rn(x1));
  hi = pack_bf16(h0, h1);
  lo = pack_bf16(x0 - h0, x1 - h1);
}

__device__ __forceinline__ void mma_bf16(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// scratch[M][N] (leading dimension N + 1) = A (M x K) * B (K x N); K a multiple of 16
// (operands are zero-padded in shared memory). M in {64, 128}, N in {64, 128}.
template <int M, int N, bool TA, bool TB>
__device__ __forceinline__ void tc_product_to_scratch(float* scratch, const float* A, int lda, const float* B, int ldb,
                                                      int K) {
  constexpr int kTilesM = M / 16, kWarps = kThreads / 32;
  constexpr int kWarpsN = kWarps / kTilesM;           // warps sharing one 16-row band
  constexpr int kTilesN = N / 8 / kWarpsN;            // 8-column tiles per warp
  static_assert(kWarps % kTilesM == 0 && (N / 8) % kWarpsN == 0, "tile split");
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = lane / 4, tig = lane % 4;
  const int row0 = (warp % kTilesM) * 16, col0 = (warp / kTilesM) * kTilesN * 8;
  auto a_at = [&](int r, int k) { return TA ? A[k * lda + r] : A[r * lda + k]; };
  auto b_at = [&](int k, int c) { return TB ? B[c * ldb + k] : B[k * ldb + c]; };
  float acc[kTilesN][4];
#pragma unroll
  for (int n = 0; n < kTilesN; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
  for (int k0 = 0; k0 < K; k0 += 16) {
    const int ra = row0 + group, ka = k0 + 2 * tig;
    uint32_t a_hi[4], a_lo[4];
    split_bf16(a_at(ra, ka), a_at(ra, ka + 1), a_hi[0], a_lo[0]);
    split_bf16(a_at(ra + 8, ka), a_at(ra + 8, ka + 1), a_hi[1], a_lo[1]);
    split_bf16(a_at(ra, ka + 8), a_at(ra, ka + 9), a_hi[2], a_lo[2]);
    split_bf16(a_at(ra + 8, ka + 8), a_at(ra + 8, ka + 9), a_hi[3], a_lo[3]);
#pragma unroll
    for (int n = 0; n < kTilesN; ++n) {
      const int cb = col0 + n * 8 + group;
      uint32_t b_hi[2], b_lo[2];
      split_bf16(b_at(ka, cb), b_at(ka + 1, cb), b_hi[0], b_lo[0]);
      split_bf16(b_at(ka + 8, cb), b_at(ka + 9, cb), b_hi[1], b_lo[1]);
      // Three bf16 products (hi*hi + hi*lo + lo*hi) carry ~16 bits of each operand:
      // one bf16 product loses too much where the normaliser's terms cancel.
      mma_bf16(acc[n], a_lo, b_hi);
      mma_bf16(acc[n], a_hi, b_lo);
      mma_bf16(acc[n], a_hi, b_hi);
    }
  }
#pragma unroll
  for (int n = 0; n < kTilesN; ++n) {
    const int c = col0 + n * 8 + 2 * tig, r = row0 + group;
    scratch[r * (N + 1) + c] = acc[n][0];
    scratch[r * (N + 1) + c + 1] = acc[n][1];
    scratch[(r + 8) * (N + 1) + c] = acc[n][2];
    scratch[(r + 8) * (N + 1) + c + 1] = acc[n][3];
  }
}

// acc += A * B in block_mm's layout, on tensor cores when TC (scratch: at
// least (16 RM) x (16 CN + 1) floats), in fp32 FMA otherwise. Every thread of
// the block must call it (it synchronises when it uses tensor cores).
template <bool TC, int RM, int CN, bool TA, bool TB>
__device__ __forceinline__ void block_mm_auto(float (&acc)[RM][CN], const float* A, int lda, const float* B, int ldb,
                                              int K, int ty, int tx, float* scratch) {
  if constexpr (TC) {
    constexpr int M = 16 * RM, N = 16 * CN;
    tc_product_to_scratch<M, N, TA, TB>(scratch, A, lda, B, ldb, (K + 15) / 16 * 16);
    __syncthreads();
#pragma unroll
    for (int r = 0; r < RM; ++r)
#pragma unroll
      for (int c = 0; c < CN; ++c) acc[r][c] += scratch[(ty + 16 * r) * (N + 1) + tx + 16 * c];
    __syncthreads();
  } else {
    block_mm<RM, CN, TA, TB>(acc, A, lda, B, ldb, K, ty, tx);
  }
}

}  // namespace xd::kernels
