// The phases of the per-chunk mLSTM gradients on warpgroup tensor cores (wgmma, sm_90a),
// shared by the two kernels of mlstm_wgmma_backward.cu: one block = two warpgroups = one
// (chunk, head) at a time. With D_tj = exp(row_log_t + col_log_j) (j <= t):
//   1. scores_phase: A_tj = scale D_tj (inv_den_t (dh_t.v_j) + ddn_t)   warpgroup 0
//                    B_tj = scale D_tj inv_den_t (q_t.k_j)               warpgroup 1
//      formed in fp32 accumulators from exact bf16 products (the normaliser's cancelling
//      dP + ddn meet in fp32), stored as bf16 hi + lo.
//   2. dq_phase: dq = scale s_t (inv_den_t dh C^T + ddn_t n) + A K, warpgroup w taking
//      columns 64 w.. (C_{k-1} in the state tiles).
//   3. dk_dv_phase: dk = w_j (v dC^T + dn) + A^T q and dv = w_j k dC + B^T dh, warpgroup
//      w taking columns 64 w.. of both (dC_k in the state tiles).
// A^T and B^T come from their tiles through ldmatrix.trans as register operands; K, q,
// dh and dC as MN-major operands of the row-major core-block tiles (wgmma.cuh). q.dq and
// k.dk (the gates' sums) are taken from the fp32 accumulators, each warpgroup's column
// half into qdot / kdot. Both warpgroups run the same instructions and every k-step count
// is one uniform value (zero-padded tiles): a product on a path that differs between
// warpgroups makes ptxas serialise every wgmma of the kernel.
#pragma once
#include <cuda_bf16.h>

#include "mlstm_mma.cuh"
#include "mlstm_params.h"
#include "wgmma.cuh"

namespace xd::kernels::wgmma_backward {

using mma::bf16;
constexpr int kThreads = 256;  // two warpgroups
constexpr int kL = 64;         // chunk
constexpr int kD = 128;        // head dimensions held (zero-padded)

struct Smem {
  bf16 q[kL * kD], k[kL * kD], v[kL * kD], dh[kL * kD];  // [t][d], core blocks
  bf16 st_hi[kD * kD], st_lo[kD * kD];                    // C_{k-1}, then dC_k: [d][e]
  bf16 a_hi[kL * kL], a_lo[kL * kL], b_hi[kL * kL], b_lo[kL * kL];  // [t][j]
  float n[kD], dn[kD];
  float row_log[kL], col_log[kL], carry[kL], key_w[kL], inv_den[kL], ddn[kL];
  float qdot[2][kL], kdot[2][kL];  // the two warpgroups' column halves
};

using mma::pack;
using mma::unpack;
__device__ __forceinline__ int blk(int row, int col, int cols) { return wgmma::core_index(row, col, cols); }

// K-major operand: rows r0..r0+63 of a tile of `cols` columns, K columns 16 s...
template <int cols>
__device__ __forceinline__ uint64_t k_major(const bf16* tile, int r0, int s) {
  return wgmma::k_major_desc(tile + blk(r0, 16 * s, cols), cols);
}
// MN-major operand: K rows 16 s.., N columns n0..n0+63 of a row-major tile of `cols` columns.
template <int cols>
__device__ __forceinline__ uint64_t mn_major(const bf16* tile, int s, int n0) {
  return wgmma::mn_major_desc(tile + blk(16 * s, n0, cols), cols);
}

// A Dk x Dv fp32 state in two steps, so that its loads overlap a phase: load() fetches
// this thread's share into registers, store_split() writes the hi/lo core-block tiles.
// Element (8 i + (lane / 2) % 8, 16 warp + 4 (lane % 2) + 8 (lane / 16)): the 16 lanes of
// a half-warp fill one core matrix (128 contiguous bytes) per store.
struct StatePrefetch {
  float4 x[kD / 8];
  __device__ __forceinline__ int row(int i) const { return 8 * i + (threadIdx.x % 32 / 2) % 8; }
  __device__ __forceinline__ int col() const {
    const int lane = threadIdx.x % 32;
    return 16 * (threadIdx.x / 32) + 4 * (lane % 2) + 8 * (lane / 16);
  }
  __device__ __forceinline__ void load(const float* src, int Dk, int Dv) {
    const int c = col();
#pragma unroll
    for (int i = 0; i < kD / 8; ++i) {
      const int r = row(i);
      x[i] = r < Dk && c < Dv ? __ldg(reinterpret_cast<const float4*>(src + (size_t)r * Dv + c))
                              : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }
  __device__ __forceinline__ void store_split(bf16* hi, bf16* lo) const {
    const int c = col();
#pragma unroll
    for (int i = 0; i < kD / 8; ++i) {
      uint2 h, l;
      mma::split2(x[i].x, x[i].y, h.x, l.x);
      mma::split2(x[i].z, x[i].w, h.y, l.y);
      const int at = blk(row(i), c, kD);
      *reinterpret_cast<uint2*>(hi + at) = h;
      *reinterpret_cast<uint2*>(lo + at) = l;
    }
  }
};

// This thread's place: warpgroup wg, accumulator rows ra and rb.
struct Lane {
  int tid, warp, lane, g, tq, wg, ra, rb;
  __device__ __forceinline__ Lane()
      : tid(threadIdx.x), warp(tid / 32), lane(tid % 32), g(lane / 4), tq(lane % 4), wg(warp / 4),
        ra(16 * (warp % 4) + g), rb(ra + 8) {}
};

// k-steps over the head dimensions: one count for every product (the tiles are zero-padded).
__device__ __forceinline__ int k_steps(const BackwardChunkParams& p) { return (max(p.Dk, p.Dv) + 15) / 16; }

// q, k, v, dh rows c0.. into core blocks (cp.async, committed as one group).
__device__ __forceinline__ void copy_tiles(Smem& sm, const BackwardChunkParams& p, int c0, size_t qk_off,
                                           size_t v_off) {
  const int tid = threadIdx.x;
  {  // copy i is row 16 i + 8 (tid / 128) + tid % 8, segment (tid / 8) % 16; zero beyond S, Dk, Dv
    const int row0 = 8 * (tid / 128) + tid % 8, seg = (tid / 8) % 16;
    const bool qk_ok = 8 * seg < p.Dk, v_ok = 8 * seg < p.Dv;
#pragma unroll
    for (int i = 0; i < kL / 16; ++i) {
      const int r = 16 * i + row0, t = c0 + r, dst = blk(r, 8 * seg, kD);
      const bool in = t < p.S;
      const size_t qk_src = in && qk_ok ? qk_off + (size_t)t * p.Dk + 8 * seg : 0;
      const size_t v_src = in && v_ok ? v_off + (size_t)t * p.Dv + 8 * seg : 0;
      mma::cp_async16(sm.q + dst, static_cast<const bf16*>(p.q) + qk_src, in && qk_ok);
      mma::cp_async16(sm.k + dst, static_cast<const bf16*>(p.k) + qk_src, in && qk_ok);
      mma::cp_async16(sm.v + dst, static_cast<const bf16*>(p.v) + v_src, in && v_ok);
      mma::cp_async16(sm.dh + dst, static_cast<const bf16*>(p.dh) + v_src, in && v_ok);
    }
    mma::cp_async_commit();
  }
}

// The chunk's gate and normaliser tables (positions pos..pos+63 of the S_pad rows).
__device__ __forceinline__ void copy_tables(Smem& sm, const BackwardChunkParams& p, size_t pos) {
  const int tid = threadIdx.x;
  if (tid < kL) {
    sm.row_log[tid] = p.row_log[pos + tid];
    sm.col_log[tid] = p.col_log[pos + tid];
    sm.carry[tid] = p.carry_w[pos + tid];
    sm.key_w[tid] = p.key_w[pos + tid];
    sm.inv_den[tid] = p.inv_den[pos + tid];
    sm.ddn[tid] = p.ddn[pos + tid];
  }
}

// This thread's rows of a 64-column accumulator tile (columns d0.. below width) out as
// bf16 rows c0.. of a [S][width] gradient; with x (the input tile it multiplies, [t][d]),
// also this warpgroup's share of the gates' sum x_t . grad_t into dot[t] (fp32, before
// the rounding; zero where every column is past width).
__device__ __forceinline__ void store_rows(const float (&acc)[32], bf16* out, int width, int S, int c0, int d0,
                                           const Lane& t, const bf16* x, float* dot) {
  float sa = 0.f, sb = 0.f;
#pragma unroll
  for (int jj = 0; jj < 8; ++jj) {
    const int d = d0 + 8 * jj + 2 * t.tq;
    if (d >= width) break;
    const float* y = acc + 4 * jj;
    if (x) {
      const float2 xa = unpack(*reinterpret_cast<const uint32_t*>(x + blk(t.ra, d, kD)));
      const float2 xb = unpack(*reinterpret_cast<const uint32_t*>(x + blk(t.rb, d, kD)));
      sa = fmaf(xa.x, y[0], fmaf(xa.y, y[1], sa));
      sb = fmaf(xb.x, y[2], fmaf(xb.y, y[3], sb));
    }
    if (c0 + t.ra < S) *reinterpret_cast<uint32_t*>(out + (size_t)(c0 + t.ra) * width + d) = pack(y[0], y[1]);
    if (c0 + t.rb < S) *reinterpret_cast<uint32_t*>(out + (size_t)(c0 + t.rb) * width + d) = pack(y[2], y[3]);
  }
  if (!x) return;
#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {
    sa += __shfl_xor_sync(0xffffffffu, sa, off);
    sb += __shfl_xor_sync(0xffffffffu, sb, off);
  }
  if (t.tq == 0) {
    dot[t.ra] = sa;
    dot[t.rb] = sb;
  }
}

__device__ __forceinline__ void scores_phase(Smem& sm, const BackwardChunkParams& p) {
  const Lane t;
  const int ra = t.ra, rb = t.rb, tq = t.tq, steps = k_steps(p);
  {  // Phase 1: A = scores of dh and v (warpgroup 0), B = scores of q and k (warpgroup 1).
    const bool is_a = t.wg == 0;
    const bf16* x = is_a ? sm.dh : sm.q;
    const bf16* y = is_a ? sm.v : sm.k;
    float s[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) s[i] = 0.f;
    wgmma::fence_operands(s);
    wgmma::fence();
#pragma unroll
    for (int st = 0; st < kD / 16; ++st)
      if (st < steps) wgmma::mma_m64n64k16(s, k_major<kD>(x, 0, st), k_major<kD>(y, 0, st), st > 0);
    wgmma::commit();
    wgmma::wait<0>();
    wgmma::fence_operands(s);
    const float la = sm.row_log[ra], lb = sm.row_log[rb], ia = sm.inv_den[ra], ib = sm.inv_den[rb];
    const float da = sm.ddn[ra], db = sm.ddn[rb];
    bf16* hi = is_a ? sm.a_hi : sm.b_hi;
    bf16* lo = is_a ? sm.a_lo : sm.b_lo;
#pragma unroll
    for (int jj = 0; jj < kL / 8; ++jj)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = h ? rb : ra, j = 8 * jj + 2 * tq;
        float x2[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float d = j + e <= row ? p.scale * expf((h ? lb : la) + sm.col_log[j + e]) : 0.f;
          const float c = s[4 * jj + 2 * h + e], inv = h ? ib : ia;
          x2[e] = is_a ? d * fmaf(inv, c, h ? db : da) : d * inv * c;
        }
        uint32_t wh, wl;
        mma::split2(x2[0], x2[1], wh, wl);
        *reinterpret_cast<uint32_t*>(hi + blk(row, j, kL)) = wh;
        *reinterpret_cast<uint32_t*>(lo + blk(row, j, kL)) = wl;
      }
  }
}

// Writes dq; q.dq of this warpgroup's columns into sm.qdot.
__device__ __forceinline__ void dq_phase(Smem& sm, const BackwardChunkParams& p, int c0, size_t qk_off) {
  const Lane t;
  const int ra = t.ra, rb = t.rb, tq = t.tq, lane = t.lane, warp = t.warp, wg = t.wg, steps = k_steps(p);
  {  // Phase 2: dq, columns d0.. of warpgroup wg.
    const int d0 = 64 * wg;  // past Dk: zero operands, nothing stored
    {
      float acc[32];
#pragma unroll
      for (int i = 0; i < 32; ++i) acc[i] = 0.f;
      wgmma::fence_operands(acc);
      wgmma::fence();
#pragma unroll
      for (int st = 0; st < kD / 16; ++st)
        if (st < steps) wgmma::mma_m64n64k16(acc, k_major<kD>(sm.dh, 0, st), k_major<kD>(sm.st_lo, d0, st), st > 0);
#pragma unroll
      for (int st = 0; st < kD / 16; ++st)
        if (st < steps) wgmma::mma_m64n64k16(acc, k_major<kD>(sm.dh, 0, st), k_major<kD>(sm.st_hi, d0, st), true);
      wgmma::commit();
      // A's fragments (rows t of this warp, k-steps over j; lo, then hi: 16 registers at
      // a time, the walking kernel carries 64 of C and 64 of dC here).
      uint32_t af[4][4];
      const int a_base = blk(16 * (warp % 4) + lane % 16, 8 * (lane / 16), kL);
      auto fragments = [&](const bf16* a) {
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) mma::ldsm_x4(af[kk], a + a_base + kk * 2 * 64);
      };
      fragments(sm.a_lo);  // while dh C^T runs
      wgmma::wait<0>();
      wgmma::fence_operands(acc);
      const float wa = p.scale * sm.carry[ra], wb = p.scale * sm.carry[rb];
      const float ia = sm.inv_den[ra], ib = sm.inv_den[rb], da = sm.ddn[ra], db = sm.ddn[rb];
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        const float nd = sm.n[d0 + 8 * (i / 4) + 2 * tq + i % 2];
        acc[i] = i % 4 < 2 ? wa * fmaf(ia, acc[i], da * nd) : wb * fmaf(ib, acc[i], db * nd);
      }
      wgmma::fence_operands(acc);
      wgmma::fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) wgmma::mma_m64n64k16_rs(acc, af[kk], mn_major<kD>(sm.k, kk, d0), true);
      wgmma::commit();
      wgmma::wait<0>();
      fragments(sm.a_hi);
      wgmma::fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) wgmma::mma_m64n64k16_rs(acc, af[kk], mn_major<kD>(sm.k, kk, d0), true);
      wgmma::commit();
      wgmma::wait<0>();
      wgmma::fence_operands(acc);
      store_rows(acc, static_cast<bf16*>(p.dq) + qk_off, p.Dk, p.S, c0, d0, t, sm.q, sm.qdot[wg]);
    }
  }
}

// Writes dk and dv; k.dk of this warpgroup's columns into sm.kdot.
__device__ __forceinline__ void dk_dv_phase(Smem& sm, const BackwardChunkParams& p, int c0, size_t qk_off,
                                            size_t v_off) {
  const Lane t;
  const int ra = t.ra, rb = t.rb, tq = t.tq, lane = t.lane, warp = t.warp, wg = t.wg, steps = k_steps(p);
  const int d0 = 64 * wg;
  float dk[32], dv[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) dk[i] = dv[i] = 0.f;
  wgmma::fence_operands(dk);
  wgmma::fence_operands(dv);
  wgmma::fence();
#pragma unroll
  for (int st = 0; st < kD / 16; ++st)  // v dC^T: K = e
    if (st < steps) wgmma::mma_m64n64k16(dk, k_major<kD>(sm.v, 0, st), k_major<kD>(sm.st_lo, d0, st), st > 0);
#pragma unroll
  for (int st = 0; st < kD / 16; ++st)
    if (st < steps) wgmma::mma_m64n64k16(dk, k_major<kD>(sm.v, 0, st), k_major<kD>(sm.st_hi, d0, st), true);
#pragma unroll
  for (int st = 0; st < kD / 16; ++st)  // k dC: K = d
    if (st < steps) wgmma::mma_m64n64k16<1>(dv, k_major<kD>(sm.k, 0, st), mn_major<kD>(sm.st_lo, st, d0), st > 0);
#pragma unroll
  for (int st = 0; st < kD / 16; ++st)
    if (st < steps) wgmma::mma_m64n64k16<1>(dv, k_major<kD>(sm.k, 0, st), mn_major<kD>(sm.st_hi, st, d0), true);
  wgmma::commit();
  // X^T (A^T, then B^T) for rows j of this warp, k-steps over t, as register operands:
  // one matrix's fragments at a time (32 registers; the walking kernel carries 64 of C).
  uint32_t xh[4][4], xl[4][4];
  const int t_base = blk(lane % 8 + 8 * (lane / 16), 16 * (warp % 4) + 8 * ((lane / 8) % 2), kL);
  auto transposed = [&](const bf16* x_hi, const bf16* x_lo) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const int at = t_base + kk * 2 * (kL / 8) * 64;
      mma::ldsm_x4_trans(xh[kk], x_hi + at);
      mma::ldsm_x4_trans(xl[kk], x_lo + at);
    }
  };
  transposed(sm.a_hi, sm.a_lo);  // while the products above run
  wgmma::wait<0>();
  wgmma::fence_operands(dk);
  wgmma::fence_operands(dv);
  {
    const float wa = sm.key_w[ra], wb = sm.key_w[rb];
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const float w = i % 4 < 2 ? wa : wb;
      dk[i] = w * (dk[i] + sm.dn[d0 + 8 * (i / 4) + 2 * tq + i % 2]);
      dv[i] *= w;
    }
  }
  wgmma::fence_operands(dk);
  wgmma::fence_operands(dv);
  wgmma::fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) wgmma::mma_m64n64k16_rs(dk, xl[kk], mn_major<kD>(sm.q, kk, d0), true);
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) wgmma::mma_m64n64k16_rs(dk, xh[kk], mn_major<kD>(sm.q, kk, d0), true);
  wgmma::commit();
  wgmma::wait<0>();  // the fragments are reused
  transposed(sm.b_hi, sm.b_lo);
  wgmma::fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) wgmma::mma_m64n64k16_rs(dv, xl[kk], mn_major<kD>(sm.dh, kk, d0), true);
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) wgmma::mma_m64n64k16_rs(dv, xh[kk], mn_major<kD>(sm.dh, kk, d0), true);
  wgmma::commit();
  wgmma::wait<0>();
  wgmma::fence_operands(dk);
  wgmma::fence_operands(dv);

  store_rows(dk, static_cast<bf16*>(p.dk) + qk_off, p.Dk, p.S, c0, d0, t, sm.k, sm.kdot[wg]);
  store_rows(dv, static_cast<bf16*>(p.dv) + v_off, p.Dv, p.S, c0, d0, t, nullptr, nullptr);
}

}  // namespace xd::kernels::wgmma_backward
