// Per-chunk gradients on tensor cores, for bf16 inputs and chunk 64 (same
// contract as mlstm_backward_chunk.cu: BackwardChunkParams). One block per
// (chunk, head), 8 warps. With D_tj = exp(row_log_t + col_log_j) (j <= t):
//   A_tj = scale D_tj (inv_den_t (dh_t.v_j) + ddn_t)        (warps 0-3, rows t)
//   B_tj = scale D_tj inv_den_t (q_t.k_j)                   (warps 4-7, rows t)
// are formed in fp32 accumulators from exact bf16 products, so the normaliser's
// cancelling terms (dP + ddn) meet in fp32, then stored as bf16 hi + lo. Then
//   dq = scale s_t (inv_den_t dh C^T + ddn_t n) + A K          (8 warps: rows x column halves)
//   dk = w_j (v dC^T + dn) + A^T q                             (warps 0-3, rows j)
//   dv = w_j k dC + B^T dh                                     (warps 4-7, rows j)
// with C, dC split hi + lo; q.dq and k.dk (the gates' sums) from the fp32 accumulators.
#include "mlstm_mma.cuh"
#include "mlstm_params.h"

namespace xd::kernels {
namespace {

using mma::bf16;
constexpr int kThreadsBwd = 256;
constexpr int kL = 64;
constexpr int kLd = kMaxHeadDim + 8;
constexpr int kLdS = kL + 8;

struct BackwardSmem {
  bf16 q[kL * kLd], k[kL * kLd], v[kL * kLd], dh[kL * kLd];
  bf16 st_hi[kMaxHeadDim * kLd], st_lo[kMaxHeadDim * kLd];  // C, then dC
  bf16 a_hi[kL * kLdS], a_lo[kL * kLdS], b_hi[kL * kLdS], b_lo[kL * kLdS];
  float n[kMaxHeadDim], dn[kMaxHeadDim];
  float row_log[kL], col_log[kL], carry[kL], key_w[kL], inv_den[kL], ddn[kL];
  float qdot[2][kL];
};

template <int N>
__device__ __forceinline__ void zero_acc(float (&c)[N][4]) {
#pragma unroll
  for (int n = 0; n < N; ++n) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.f;
}

// c (16 rows x 64 key columns, mma layout) <- a_tile rows r0.. times b_tile^T (both [row][K], K = kdim).
__device__ __forceinline__ void scores(float (&c)[8][4], const bf16* a_tile, const bf16* b_tile, int r0, int kdim) {
  zero_acc(c);
  for (int kk = 0; kk < (kdim + 15) / 16; ++kk) {
    uint32_t a[4];
    mma::load_a(a, a_tile, kLd, r0, 16 * kk);
#pragma unroll
    for (int n = 0; n < 8; n += 2) {
      if (8 * n > r0 + 15) break;  // causal: key tiles past the last row are masked
      uint32_t b[4];
      mma::load_b_nk(b, b_tile, kLd, 8 * n, 16 * kk);
      mma::mma_bf16(c[n], a, b[0], b[1]);
      mma::mma_bf16(c[n + 1], a, b[2], b[3]);
    }
  }
}

// Masked, weighted scores -> hi/lo tiles [t][j].
__device__ __forceinline__ void store_split(bf16* hi, bf16* lo, const float (&c)[8][4], int ra, int rb, int tq) {
#pragma unroll
  for (int n = 0; n < 8; ++n) {
    const int j = 8 * n + 2 * tq;
    uint32_t h, l;
    mma::split2(c[n][0], c[n][1], h, l);
    *reinterpret_cast<uint32_t*>(hi + ra * kLdS + j) = h;
    *reinterpret_cast<uint32_t*>(lo + ra * kLdS + j) = l;
    mma::split2(c[n][2], c[n][3], h, l);
    *reinterpret_cast<uint32_t*>(hi + rb * kLdS + j) = h;
    *reinterpret_cast<uint32_t*>(lo + rb * kLdS + j) = l;
  }
}

// acc (16 rows x 8 NT columns from n_base) += rows of a_tile (exact, [row][K]) times a
// state stored [n][K] (hi + lo): X = A S^T.
template <int NT>
__device__ __forceinline__ void times_state_t(float (&acc)[NT][4], const bf16* a_tile, int r0, const bf16* s_hi,
                                              const bf16* s_lo, int n_base, int n_lim, int kdim) {
  for (int kk = 0; kk < (kdim + 15) / 16; ++kk) {
    uint32_t a[4];
    mma::load_a(a, a_tile, kLd, r0, 16 * kk);
#pragma unroll
    for (int n = 0; n < NT; n += 2) {
      if (n_base + 8 * n >= n_lim) break;
      uint32_t bh[4], bl[4];
      mma::load_b_nk(bh, s_hi, kLd, n_base + 8 * n, 16 * kk);
      mma::load_b_nk(bl, s_lo, kLd, n_base + 8 * n, 16 * kk);
      mma::mma_bf16(acc[n], a, bl[0], bl[1]);
      mma::mma_bf16(acc[n], a, bh[0], bh[1]);
      mma::mma_bf16(acc[n + 1], a, bl[2], bl[3]);
      mma::mma_bf16(acc[n + 1], a, bh[2], bh[3]);
    }
  }
}

__global__ void __launch_bounds__(kThreadsBwd, 1) mma_backward_kernel(BackwardChunkParams p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  BackwardSmem& sm = *reinterpret_cast<BackwardSmem*>(smem_raw);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, tq = lane % 4;
  const int chunk = blockIdx.x, bh = blockIdx.y, c0 = chunk * kL;
  const size_t pos = (size_t)bh * p.S_pad + c0;
  const size_t qk_off = (size_t)bh * p.S * p.Dk, v_off = (size_t)bh * p.S * p.Dv;
  const size_t mat = ((size_t)bh * p.NC + chunk) * p.Dk * p.Dv;
  const size_t vec = ((size_t)bh * p.NC + chunk) * p.Dk;

  mma::tile_async<kMaxHeadDim, kThreadsBwd>(sm.q, kLd, static_cast<const bf16*>(p.q) + qk_off, c0, kL, p.S, p.Dk);
  mma::tile_async<kMaxHeadDim, kThreadsBwd>(sm.k, kLd, static_cast<const bf16*>(p.k) + qk_off, c0, kL, p.S, p.Dk);
  mma::tile_async<kMaxHeadDim, kThreadsBwd>(sm.v, kLd, static_cast<const bf16*>(p.v) + v_off, c0, kL, p.S, p.Dv);
  mma::tile_async<kMaxHeadDim, kThreadsBwd>(sm.dh, kLd, static_cast<const bf16*>(p.dh) + v_off, c0, kL, p.S, p.Dv);
  mma::cp_async_commit();
  // C's loads fly during phase 1 (which does not read it); dC's during phase 2.
  mma::MatrixPrefetch<kMaxHeadDim, kThreadsBwd> state;
  state.load(p.states + mat, p.Dk, p.Dv);
  if (tid < kMaxHeadDim) {
    sm.n[tid] = tid < p.Dk ? p.state_vecs[vec + tid] : 0.f;
    sm.dn[tid] = tid < p.Dk ? p.dstate_vecs[vec + tid] : 0.f;
  }
  if (tid < kL) {
    sm.row_log[tid] = p.row_log[pos + tid];
    sm.col_log[tid] = p.col_log[pos + tid];
    sm.carry[tid] = p.carry_w[pos + tid];
    sm.key_w[tid] = p.key_w[pos + tid];
    sm.inv_den[tid] = p.inv_den[pos + tid];
    sm.ddn[tid] = p.ddn[pos + tid];
  }
  mma::cp_async_wait<0>();
  __syncthreads();

  {  // Phase 1: the weighted score matrices A (warps 0-3) and B (warps 4-7).
    const bool is_a = warp < 4;
    const int r0 = (warp % 4) * 16, ra = r0 + g, rb = ra + 8;
    float c[8][4];
    if (is_a) scores(c, sm.dh, sm.v, r0, p.Dv);
    else scores(c, sm.q, sm.k, r0, p.Dk);
    const float la = sm.row_log[ra], lb = sm.row_log[rb];
    const float ia = sm.inv_den[ra], ib = sm.inv_den[rb];
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = 8 * n + 2 * tq + (e % 2);
        const int row = e < 2 ? ra : rb;
        const float d = j <= row ? p.scale * expf((e < 2 ? la : lb) + sm.col_log[j]) : 0.f;
        const float inv = e < 2 ? ia : ib;
        c[n][e] = is_a ? d * fmaf(inv, c[n][e], sm.ddn[row]) : d * inv * c[n][e];
      }
    if (is_a) store_split(sm.a_hi, sm.a_lo, c, ra, rb, tq);
    else store_split(sm.b_hi, sm.b_lo, c, ra, rb, tq);
  }
  state.store_split(sm.st_hi, sm.st_lo, kLd);
  __syncthreads();
  state.load(p.dstates + mat, p.Dk, p.Dv);

  {  // Phase 2: dq, warp = (16 rows, 64-column half).
    const int r0 = (warp % 4) * 16, ra = r0 + g, rb = ra + 8, half = warp / 4, d_base = 64 * half;
    float acc[8][4];
    zero_acc(acc);
    times_state_t<8>(acc, sm.dh, r0, sm.st_hi, sm.st_lo, d_base, p.Dk, p.Dv);
    const float wa = p.scale * sm.carry[ra], wb = p.scale * sm.carry[rb];
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      const int d = d_base + 8 * n + 2 * tq;
      const float n0 = d < kMaxHeadDim ? sm.n[d] : 0.f, n1 = d + 1 < kMaxHeadDim ? sm.n[d + 1] : 0.f;
      acc[n][0] = wa * fmaf(sm.inv_den[ra], acc[n][0], sm.ddn[ra] * n0);
      acc[n][1] = wa * fmaf(sm.inv_den[ra], acc[n][1], sm.ddn[ra] * n1);
      acc[n][2] = wb * fmaf(sm.inv_den[rb], acc[n][2], sm.ddn[rb] * n0);
      acc[n][3] = wb * fmaf(sm.inv_den[rb], acc[n][3], sm.ddn[rb] * n1);
    }
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      if (16 * kk > r0) break;
      uint32_t ah[4], al[4];
      mma::load_a(ah, sm.a_hi, kLdS, r0, 16 * kk);
      mma::load_a(al, sm.a_lo, kLdS, r0, 16 * kk);
#pragma unroll
      for (int n = 0; n < 8; n += 2) {
        if (d_base + 8 * n >= p.Dk) break;
        uint32_t b[4];
        mma::load_b_kn(b, sm.k, kLd, d_base + 8 * n, 16 * kk);
        mma::mma_bf16(acc[n], al, b[0], b[1]);
        mma::mma_bf16(acc[n], ah, b[0], b[1]);
        mma::mma_bf16(acc[n + 1], al, b[2], b[3]);
        mma::mma_bf16(acc[n + 1], ah, b[2], b[3]);
      }
    }
    bf16* dq = static_cast<bf16*>(p.dq) + qk_off;
    float qa = 0.f, qb = 0.f;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      const int d = d_base + 8 * n + 2 * tq;
      if (d >= p.Dk) break;
      const float2 xa = mma::unpack(*reinterpret_cast<const uint32_t*>(sm.q + ra * kLd + d));
      const float2 xb = mma::unpack(*reinterpret_cast<const uint32_t*>(sm.q + rb * kLd + d));
      qa = fmaf(xa.x, acc[n][0], fmaf(xa.y, acc[n][1], qa));
      qb = fmaf(xb.x, acc[n][2], fmaf(xb.y, acc[n][3], qb));
      if (c0 + ra < p.S) *reinterpret_cast<uint32_t*>(dq + (size_t)(c0 + ra) * p.Dk + d) = mma::pack(acc[n][0], acc[n][1]);
      if (c0 + rb < p.S) *reinterpret_cast<uint32_t*>(dq + (size_t)(c0 + rb) * p.Dk + d) = mma::pack(acc[n][2], acc[n][3]);
    }
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      qa += __shfl_xor_sync(0xffffffffu, qa, off);
      qb += __shfl_xor_sync(0xffffffffu, qb, off);
    }
    if (tq == 0) {
      sm.qdot[half][ra] = qa;
      sm.qdot[half][rb] = qb;
    }
  }
  __syncthreads();  // C is no longer read
  state.store_split(sm.st_hi, sm.st_lo, kLd);
  if (tid < kL && c0 + tid < p.S) p.q_dot_dq[(size_t)bh * p.S + c0 + tid] = sm.qdot[0][tid] + sm.qdot[1][tid];
  __syncthreads();

  // Phase 3: dk (warps 0-3) and dv (warps 4-7), 16 rows j each, all columns.
  const bool is_dk = warp < 4;
  const int j0 = (warp % 4) * 16, ja = j0 + g, jb = ja + 8;
  const int width = is_dk ? p.Dk : p.Dv;
  float acc[16][4];
  zero_acc(acc);
  if (is_dk) {
    times_state_t<16>(acc, sm.v, j0, sm.st_hi, sm.st_lo, 0, p.Dk, p.Dv);  // v dC^T
  } else {
    for (int kk = 0; kk < (p.Dk + 15) / 16; ++kk) {  // k dC
      uint32_t a[4];
      mma::load_a(a, sm.k, kLd, j0, 16 * kk);
#pragma unroll
      for (int n = 0; n < 16; n += 2) {
        if (8 * n >= p.Dv) break;
        uint32_t bh[4], bl[4];
        mma::load_b_kn(bh, sm.st_hi, kLd, 8 * n, 16 * kk);
        mma::load_b_kn(bl, sm.st_lo, kLd, 8 * n, 16 * kk);
        mma::mma_bf16(acc[n], a, bl[0], bl[1]);
        mma::mma_bf16(acc[n], a, bh[0], bh[1]);
        mma::mma_bf16(acc[n + 1], a, bl[2], bl[3]);
        mma::mma_bf16(acc[n + 1], a, bh[2], bh[3]);
      }
    }
  }
  const float wa = sm.key_w[ja], wb = sm.key_w[jb];
#pragma unroll
  for (int n = 0; n < 16; ++n) {
    const int d = 8 * n + 2 * tq;
    const float n0 = is_dk ? sm.dn[d] : 0.f, n1 = is_dk ? sm.dn[d + 1] : 0.f;
    acc[n][0] = wa * (acc[n][0] + n0);
    acc[n][1] = wa * (acc[n][1] + n1);
    acc[n][2] = wb * (acc[n][2] + n0);
    acc[n][3] = wb * (acc[n][3] + n1);
  }
  const bf16* x_hi = is_dk ? sm.a_hi : sm.b_hi;
  const bf16* x_lo = is_dk ? sm.a_lo : sm.b_lo;
  const bf16* rhs = is_dk ? sm.q : sm.dh;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {  // += X^T rhs over rows t >= j
    if (16 * kk + 15 < j0) continue;
    uint32_t ah[4], al[4];
    mma::load_a_trans(ah, x_hi, kLdS, j0, 16 * kk);
    mma::load_a_trans(al, x_lo, kLdS, j0, 16 * kk);
#pragma unroll
    for (int n = 0; n < 16; n += 2) {
      if (8 * n >= width) break;
      uint32_t b[4];
      mma::load_b_kn(b, rhs, kLd, 8 * n, 16 * kk);
      mma::mma_bf16(acc[n], al, b[0], b[1]);
      mma::mma_bf16(acc[n], ah, b[0], b[1]);
      mma::mma_bf16(acc[n + 1], al, b[2], b[3]);
      mma::mma_bf16(acc[n + 1], ah, b[2], b[3]);
    }
  }
  bf16* out = static_cast<bf16*>(is_dk ? p.dk : p.dv) + (is_dk ? qk_off : v_off);
  float ka = 0.f, kb = 0.f;
#pragma unroll
  for (int n = 0; n < 16; ++n) {
    const int d = 8 * n + 2 * tq;
    if (d >= width) break;
    if (is_dk) {
      const float2 xa = mma::unpack(*reinterpret_cast<const uint32_t*>(sm.k + ja * kLd + d));
      const float2 xb = mma::unpack(*reinterpret_cast<const uint32_t*>(sm.k + jb * kLd + d));
      ka = fmaf(xa.x, acc[n][0], fmaf(xa.y, acc[n][1], ka));
      kb = fmaf(xb.x, acc[n][2], fmaf(xb.y, acc[n][3], kb));
    }
    if (c0 + ja < p.S) *reinterpret_cast<uint32_t*>(out + (size_t)(c0 + ja) * width + d) = mma::pack(acc[n][0], acc[n][1]);
    if (c0 + jb < p.S) *reinterpret_cast<uint32_t*>(out + (size_t)(c0 + jb) * width + d) = mma::pack(acc[n][2], acc[n][3]);
  }
  if (is_dk) {
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      ka += __shfl_xor_sync(0xffffffffu, ka, off);
      kb += __shfl_xor_sync(0xffffffffu, kb, off);
    }
    if (tq == 0) {
      if (c0 + ja < p.S) p.k_dot_dk[(size_t)bh * p.S + c0 + ja] = ka;
      if (c0 + jb < p.S) p.k_dot_dk[(size_t)bh * p.S + c0 + jb] = kb;
    }
  }
}

}  // namespace

void mlstm_backward_chunk_mma(const BackwardChunkParams& p, cudaStream_t stream) {
  const size_t smem = sizeof(BackwardSmem);
  cudaFuncSetAttribute(mma_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  mma_backward_kernel<<<dim3(p.NC, p.BH), kThreadsBwd, smem, stream>>>(p);
}

}  // namespace xd::kernels
