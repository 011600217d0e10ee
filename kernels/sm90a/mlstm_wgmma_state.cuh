// One chunk's step of the mLSTM state on warpgroup tensor cores (wgmma, sm_90a), shared by
// the wgmma chunk scan and the walking wgmma backward, so that the walk carries C and n
// bit for bit as the scan stores them:
//   X <- decay X + (row_scale w o rows)^T cols      (two 64 x 64 fp32 accumulator tiles)
//   x_d <- decay x_d + row_scale sum_j w_j rows_jd  (fp32 FMA, four chains)
// (row_scale w o rows)^T comes from the rows tile (64 positions x 128, K-major core
// blocks) through ldmatrix.trans, is weighted in fp32 and split into bf16 hi + lo with
// explicitly rounded operations (no contraction into an FMA that one inlining site might
// make and another not).
#pragma once
#include <cuda_bf16.h>

#include "mlstm_mma.cuh"
#include "wgmma.cuh"

namespace xd::kernels::wgmma_state {

constexpr int kL = 64;   // chunk
constexpr int kD = 128;  // state rows held (zero-padded)

// ldmatrix row addresses of (w o rows)^T for warp `warp` of the warpgroup: lanes 8 m..
// address matrix m = (positions 8 (m / 2).., state rows 16 warp + 8 (m % 2)..).
__device__ __forceinline__ int transposed_base(int warp, int lane) {
  return wgmma::core_index(lane % 8 + 8 * (lane / 16), 16 * warp + 8 * ((lane / 8) % 2), kD);
}

// The hi and lo A fragments of state tile mt (state rows 64 mt..), k-steps over positions.
__device__ __forceinline__ void weighted_rows(uint32_t (&hi)[4][4], uint32_t (&lo)[4][4], const __nv_bfloat16* rows,
                                              int base, int mt, const float* w, float row_scale, int tq) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    uint32_t raw[4];
    mma::ldsm_x4_trans(raw, rows + base + kk * 2 * (kD / 8) * 64 + mt * 8 * 64);
    const int j0 = 16 * kk + 2 * tq;
    const float w0 = __fmul_rn(row_scale, w[j0]), w1 = __fmul_rn(row_scale, w[j0 + 1]);
    const float w8 = __fmul_rn(row_scale, w[j0 + 8]), w9 = __fmul_rn(row_scale, w[j0 + 9]);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 x = mma::unpack(raw[e]);
      const float y0 = __fmul_rn(x.x, e < 2 ? w0 : w8), y1 = __fmul_rn(x.y, e < 2 ? w1 : w9);
      hi[kk][e] = mma::pack(y0, y1);
      const float2 h = mma::unpack(hi[kk][e]);
      lo[kk][e] = mma::pack(__fsub_rn(y0, h.x), __fsub_rn(y1, h.y));
    }
  }
}

// tile += fragments x cols (b: 64 positions x 64 state columns, MN-major from desc(kk)).
template <typename Desc>
__device__ __forceinline__ void add_products(float (&tile)[32], const uint32_t (&hi)[4][4], const uint32_t (&lo)[4][4],
                                             Desc desc) {
  wgmma::fence_operands(tile);
  wgmma::fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    const uint64_t d = desc(kk);
    wgmma::mma_m64n64k16_rs(tile, lo[kk], d, true);
    wgmma::mma_m64n64k16_rs(tile, hi[kk], d, true);
  }
  wgmma::commit();
}

// x_d's step for state row d.
__device__ __forceinline__ float vector_step(float x_d, float decay, float row_scale, const float* vec_w,
                                             const __nv_bfloat16* rows, int d) {
  float s[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll 4
  for (int j = 0; j < kL; j += 4)
#pragma unroll
    for (int u = 0; u < 4; ++u) s[u] = fmaf(vec_w[j + u], __bfloat162float(rows[wgmma::core_index(j + u, d, kD)]), s[u]);
  return fmaf(x_d, decay, __fmul_rn(row_scale, (s[0] + s[1]) + (s[2] + s[3])));
}

}  // namespace xd::kernels::wgmma_state
