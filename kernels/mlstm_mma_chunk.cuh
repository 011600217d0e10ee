// One warp's share of a chunk's outputs on tensor cores (bf16 inputs, chunk 64),
// shared by the forward kernels (mlstm_mma_forward.cu, mlstm_mma_fused_forward.cu).
// The warp owns query rows ro..ro+15 of the chunk (this lane: ra = ro + g, rb = ra + 8)
// and the output columns e0 + 8n of its tile, in four steps:
//   chunk_scores        S = q k^T (exact), P = scale S o exp(row_log_t + col_log_j), causal
//   chunk_state_product h = q C_prev (C as bf16 hi + lo planes)
//   chunk_normaliser    dn = s_t scale q.n + sum_j P_tj; h *= s_t scale
//   chunk_values        h += P V (P split hi + lo from the accumulators)
// and the state update shared with the scan (mlstm_mma_scan.cu):
//   chunk_state_update  X[r0.., :] += rows^T (w o cols) over the chunk's 64 positions
//   chunk_vec_update    x <- decay x + rows^T w
// and the end of a chunk:
//   store_rows          h / den (or its bf16 rounding residue) staged and stored
// Tiles are bf16 [row][ld] in shared memory; col_limit is how many columns exist from
// the tile's column 0 (Dv, or what is left of it in a slice): later 8-column tiles
// are skipped.
#pragma once
#include "mlstm_mma.cuh"

namespace xd::kernels::mma {

__device__ __forceinline__ void chunk_scores(float (&s)[8][4], float& psum_a, float& psum_b, const bf16* q,
                                             const bf16* k, int ld, int ro, int kd, float scale,
                                             const float* row_log, const float* col_log) {
  const int lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4, ra = ro + g, rb = ra + 8;
#pragma unroll
  for (int n = 0; n < 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
  for (int kk = 0; kk < kd; ++kk) {
    uint32_t a[4];
    load_a(a, q, ld, ro, 16 * kk);
#pragma unroll
    for (int n = 0; n < 8; n += 2) {
      if (8 * n > ro + 15) break;  // key tiles past the warp's last row are masked
      uint32_t b[4];
      load_b_nk(b, k, ld, 8 * n, 16 * kk);
      mma_bf16(s[n], a, b[0], b[1]);
      mma_bf16(s[n + 1], a, b[2], b[3]);
    }
  }
  psum_a = psum_b = 0.f;
  const float la = row_log[ra], lb = row_log[rb];
#pragma unroll
  for (int n = 0; n < 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int j = 8 * n + 2 * tq + (e % 2);
      const int row = e < 2 ? ra : rb;
      const float x = j <= row ? s[n][e] * scale * expf((e < 2 ? la : lb) + col_log[j]) : 0.f;
      s[n][e] = x;
      if (e < 2) psum_a += x; else psum_b += x;
    }
}

template <int kTiles>
__device__ __forceinline__ void chunk_state_product(float (&h)[kTiles][4], const bf16* q, int ld_q, const bf16* c_hi,
                                                    const bf16* c_lo, int ld_c, int ro, int e0, int kd, int col_limit) {
#pragma unroll
  for (int n = 0; n < kTiles; ++n) h[n][0] = h[n][1] = h[n][2] = h[n][3] = 0.f;
  for (int kk = 0; kk < kd; ++kk) {
    uint32_t a[4];
    load_a(a, q, ld_q, ro, 16 * kk);
#pragma unroll
    for (int n = 0; n < kTiles; n += 2) {
      if (e0 + 8 * n >= col_limit) break;
      uint32_t bh[4], bl[4];
      load_b_kn(bh, c_hi, ld_c, e0 + 8 * n, 16 * kk);
      load_b_kn(bl, c_lo, ld_c, e0 + 8 * n, 16 * kk);
      mma_bf16(h[n], a, bl[0], bl[1]);
      mma_bf16(h[n], a, bh[0], bh[1]);
      mma_bf16(h[n + 1], a, bl[2], bl[3]);
      mma_bf16(h[n + 1], a, bh[2], bh[3]);
    }
  }
}

// dn for rows ra, rb (the quad's 4 lanes split d of q.n); h scaled by s_t scale.
template <int kTiles>
__device__ __forceinline__ void chunk_normaliser(float (&h)[kTiles][4], float& dn_a, float& dn_b, float psum_a,
                                                 float psum_b, const bf16* q, int ld_q, const float* n_prev,
                                                 const float* carry, int ro, int Dk, float scale) {
  const int lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4, ra = ro + g, rb = ra + 8;
  float qn_a = 0.f, qn_b = 0.f;
  for (int d = tq; d < Dk; d += 4) {
    qn_a = fmaf(__bfloat162float(q[ra * ld_q + d]), n_prev[d], qn_a);
    qn_b = fmaf(__bfloat162float(q[rb * ld_q + d]), n_prev[d], qn_b);
  }
#pragma unroll
  for (int off = 1; off < 4; off <<= 1) {
    psum_a += __shfl_xor_sync(0xffffffffu, psum_a, off);
    psum_b += __shfl_xor_sync(0xffffffffu, psum_b, off);
    qn_a += __shfl_xor_sync(0xffffffffu, qn_a, off);
    qn_b += __shfl_xor_sync(0xffffffffu, qn_b, off);
  }
  const float sa = carry[ra], sb = carry[rb];
  dn_a = psum_a + sa * scale * qn_a;
  dn_b = psum_b + sb * scale * qn_b;
#pragma unroll
  for (int n = 0; n < kTiles; ++n) {
    h[n][0] *= sa * scale;
    h[n][1] *= sa * scale;
    h[n][2] *= sb * scale;
    h[n][3] *= sb * scale;
  }
}

template <int kTiles>
__device__ __forceinline__ void chunk_values(float (&h)[kTiles][4], const float (&s)[8][4], const bf16* v, int ld_v,
                                             int ro, int e0, int col_limit) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    if (16 * kk > ro) break;  // key tiles past the warp's last row are zero
    uint32_t ahi[4], alo[4];
    acc_to_a_split(s[2 * kk], s[2 * kk + 1], ahi, alo);
#pragma unroll
    for (int n = 0; n < kTiles; n += 2) {
      if (e0 + 8 * n >= col_limit) break;
      uint32_t b[4];
      load_b_kn(b, v, ld_v, e0 + 8 * n, 16 * kk);
      mma_bf16(h[n], alo, b[0], b[1]);
      mma_bf16(h[n], ahi, b[0], b[1]);
      mma_bf16(h[n + 1], alo, b[2], b[3]);
      mma_bf16(h[n + 1], ahi, b[2], b[3]);
    }
  }
}

// The warp's rows ro..ro+15, columns e0 + 8n (below col_limit) of h / den, or with
// `residue` of h / den - bf16(h / den) (the backward's dh.h cancels where |q~.n| does,
// so it needs more of h than a bf16 output keeps), staged in the warp's own rows of
// `stage` and stored 16 bytes a lane to out[r * ld_out + c] for rows r < rows_left.
template <int kTiles>
__device__ __forceinline__ void store_plane(const float (&h)[kTiles][4], float inv_a, float inv_b, bool residue,
                                           bf16* stage, int ld_stage, int ro, int e0, int col_limit, bf16* out,
                                           int ld_out, int rows_left) {
  const int lane = threadIdx.x % 32, g = lane / 4, tq = lane % 4, ra = ro + g, rb = ra + 8;
  __syncwarp();  // the warp's earlier reads of these rows are done
#pragma unroll
  for (int n = 0; n < kTiles; ++n) {
    if (e0 + 8 * n >= col_limit) break;
    const int col = e0 + 8 * n + 2 * tq;
    const float x0 = h[n][0] * inv_a, x1 = h[n][1] * inv_a, x2 = h[n][2] * inv_b, x3 = h[n][3] * inv_b;
    uint32_t a = pack(x0, x1), b = pack(x2, x3);
    if (residue) {
      const float2 ah = unpack(a), bh = unpack(b);
      a = pack(x0 - ah.x, x1 - ah.y);
      b = pack(x2 - bh.x, x3 - bh.y);
    }
    *reinterpret_cast<uint32_t*>(stage + ra * ld_stage + col) = a;
    *reinterpret_cast<uint32_t*>(stage + rb * ld_stage + col) = b;
  }
  __syncwarp();
  const int vecs = max(0, min(8 * kTiles, col_limit - e0)) / 8;
  for (int idx = lane; idx < 16 * vecs; idx += 32) {
    const int r = ro + idx / vecs, c = e0 + (idx % vecs) * 8;
    if (r < rows_left)
      *reinterpret_cast<uint4*>(out + (size_t)r * ld_out + c) = *reinterpret_cast<const uint4*>(stage + r * ld_stage + c);
  }
}

// store_plane of h / den into out, then, where out_lo is not null, of its residue into out_lo.
template <int kTiles>
__device__ __forceinline__ void store_rows(const float (&h)[kTiles][4], float inv_a, float inv_b, bf16* stage,
                                           int ld_stage, int ro, int e0, int col_limit, bf16* out, bf16* out_lo,
                                           int ld_out, int rows_left) {
  store_plane(h, inv_a, inv_b, false, stage, ld_stage, ro, e0, col_limit, out, ld_out, rows_left);
  if (out_lo) store_plane(h, inv_a, inv_b, true, stage, ld_stage, ro, e0, col_limit, out_lo, ld_out, rows_left);
}

// acc (state rows r0 + g (+8), columns 8n + 2tq (+1)) += rows^T (w o cols): rows exact
// (ldmatrix.trans of the [64][Dk] tile), w o cols formed from the fragment registers in
// fp32 and split hi + lo (two mma), so the state keeps ~16 bits per term.
template <int kTiles>
__device__ __forceinline__ void chunk_state_update(float (&acc)[kTiles][4], const bf16* rows, int ld_rows,
                                                   const bf16* cols, int ld_cols, const float* w, float w_scale,
                                                   int r0, int col_limit) {
  const int tq = threadIdx.x % 4;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    uint32_t a[4];
    load_a_trans(a, rows, ld_rows, r0, 16 * kk);
    const int k0 = 16 * kk + 2 * tq;
    const float w0 = w[k0] * w_scale, w1 = w[k0 + 1] * w_scale, w8 = w[k0 + 8] * w_scale, w9 = w[k0 + 9] * w_scale;
#pragma unroll
    for (int n = 0; n < kTiles; n += 2) {
      if (8 * n >= col_limit) break;
      uint32_t b[4];
      load_b_kn(b, cols, ld_cols, 8 * n, 16 * kk);
      uint32_t hi[4], lo[4];
#pragma unroll
      for (int e = 0; e < 4; e += 2) {
        const float2 x = unpack(b[e]), y = unpack(b[e + 1]);
        split2(x.x * w0, x.y * w1, hi[e], lo[e]);
        split2(y.x * w8, y.y * w9, hi[e + 1], lo[e + 1]);
      }
      mma_bf16(acc[n], a, lo[0], lo[1]);
      mma_bf16(acc[n], a, hi[0], hi[1]);
      mma_bf16(acc[n + 1], a, lo[2], lo[3]);
      mma_bf16(acc[n + 1], a, hi[2], hi[3]);
    }
  }
}

// The normaliser vector's update for element d (one thread each): vec[d] <- decay vec[d]
// + scale sum_t w_t rows[t][d], in four independent chains (the loop is latency-bound).
__device__ __forceinline__ void chunk_vec_update(float* vec, int d, const bf16* rows, int ld_rows, const float* w,
                                                 float decay, float scale) {
  float x[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll 4
  for (int t = 0; t < 64; t += 4)
#pragma unroll
    for (int u = 0; u < 4; ++u) x[u] = fmaf(w[t + u], __bfloat162float(rows[(t + u) * ld_rows + d]), x[u]);
  vec[d] = fmaf(vec[d], decay, scale * ((x[0] + x[1]) + (x[2] + x[3])));
}

}  // namespace xd::kernels::mma
