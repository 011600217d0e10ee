// The bf16 mLSTM forward in one kernel: the chunk scan and the per-chunk outputs
// fused, so the chunk states never leave the multiprocessor (the two-kernel forward
// writes and reads them as float32, 1.07 GB each way at B=8 H=32 S=4096 D=128).
// Same math and contract as mlstm_chunk_scan_mma + mlstm_forward_output_mma with
// chunk 64 (FusedForwardParams). One block per head and slice of kWidth value
// columns, walking the chunks in order, 8 warps:
//   - the state slice C[:, slice] (fp32) lives in mma accumulators, warp w holding
//     rows 16w..16w+15, as in the scan; n (fp32) lives in shared memory;
//   - per chunk, C_{k-1} is written to shared memory as bf16 hi + lo; warps w and
//     w+4 own query rows 16(w%4).. and the two halves of the slice's columns:
//     S = q k^T, P = scale S o exp(row_log_t + col_log_j) (causal),
//     h = s_t scale q C_{k-1} + P V, den = max(|s_t scale q.n_{k-1} + sum_j P_tj|,
//     exp(-m_t)) + eps;
//   - then C_k = decay C_{k-1} + k^T (w o V), n_k = decay n_{k-1} + k^T w.
// Every block recomputes S for its rows and n (the slices of one head share them).
// kOverlap (FusedForwardParams::overlap_loads): the next chunk's copies are issued as
// soon as every warp is done with this chunk's tiles, and this chunk's outputs are
// staged in C's (then free) planes, so the copies fly while the outputs are stored and
// the next C is written; n and the tables are double-buffered for it.
#include "mlstm_mma.cuh"
#include "mlstm_mma_chunk.cuh"
#include "mlstm_params.h"

namespace xd::kernels {
namespace {

using mma::bf16;
constexpr int kThreadsFused = 256;
constexpr int kL = 64;
constexpr int kLdQk = kMaxHeadDim + 8;

template <int kWidth>
struct FusedSmem {
  static constexpr int kLdV = kWidth + 8;
  bf16 q[kL * kLdQk];
  bf16 k[kL * kLdQk];
  bf16 v[kL * kLdV];
  bf16 c_hi[kMaxHeadDim * kLdV];
  bf16 c_lo[kMaxHeadDim * kLdV];
  float n[2][kMaxHeadDim];
  float row_log[2][kL], col_log[2][kL], carry[2][kL], floor_[2][kL], key_w[2][kL];
};

template <int kWidth, bool kOverlap>
__global__ void __launch_bounds__(kThreadsFused, 2) mma_fused_forward_kernel(FusedForwardParams p) {
  static_assert(kWidth % 32 == 0 && kWidth <= kMaxHeadDim, "a slice is two halves of whole 16-column tiles");
  constexpr int kLdV = FusedSmem<kWidth>::kLdV;
  constexpr int kHalfTiles = kWidth / 16;  // 8-column tiles per half slice
  extern __shared__ __align__(16) unsigned char smem_raw[];
  FusedSmem<kWidth>& sm = *reinterpret_cast<FusedSmem<kWidth>*>(smem_raw);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, tq = lane % 4;
  const int bh = blockIdx.y, col0 = blockIdx.x * kWidth;
  const bool first_slice = blockIdx.x == 0;  // writes dn and the final n
  const bf16* q = static_cast<const bf16*>(p.q) + (size_t)bh * p.S * p.Dk;
  const bf16* k = static_cast<const bf16*>(p.k) + (size_t)bh * p.S * p.Dk;
  const bf16* v = static_cast<const bf16*>(p.v) + (size_t)bh * p.S * p.Dv;
  const size_t mat = (size_t)p.Dk * p.Dv;
  const int kd = (p.Dk + 15) / 16;
  // The state rows of this warp (update), and the query rows and columns it outputs.
  const int r0 = warp * 16;
  const bool state_rows = r0 < p.Dk;
  const int ro = (warp % 4) * 16, e0 = (warp / 4) * (kWidth / 2);
  const int ra = ro + g, rb = ro + g + 8;

  float acc[kWidth / 8][4];  // C[r0 + g (+8)][col0 + 8n + 2tq (+1)]
#pragma unroll
  for (int n = 0; n < kWidth / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int d = r0 + g + (e / 2) * 8, col = col0 + 8 * n + 2 * tq + (e % 2);
      acc[n][e] = (p.init_mat && d < p.Dk && col < p.Dv) ? p.init_mat[bh * mat + (size_t)d * p.Dv + col] : 0.f;
    }
  if (tid < kMaxHeadDim) sm.n[0][tid] = (p.init_vec && tid < p.Dk) ? p.init_vec[(size_t)bh * p.Dk + tid] : 0.f;

  // The copies of chunk c's q, k, v slice (cp.async) and its tables (into buffer buf).
  auto issue = [&](int c, int buf) {
    const int t0 = c * kL;
    mma::tile_async<kMaxHeadDim, kThreadsFused>(sm.q, kLdQk, q, t0, kL, p.S, p.Dk);
    mma::tile_async<kMaxHeadDim, kThreadsFused>(sm.k, kLdQk, k, t0, kL, p.S, p.Dk);
    for (int idx = tid; idx < kL * (kWidth / 8); idx += kThreadsFused) {
      const int t = idx / (kWidth / 8), col = (idx % (kWidth / 8)) * 8;
      const bool valid = t0 + t < p.S && col0 + col < p.Dv;
      mma::cp_async16(sm.v + t * kLdV + col, valid ? v + (size_t)(t0 + t) * p.Dv + col0 + col : v, valid);
    }
    mma::cp_async_commit();
    if (tid < kL) {
      const size_t pos = (size_t)bh * p.S_pad + t0 + tid;
      sm.row_log[buf][tid] = p.row_log[pos];
      sm.col_log[buf][tid] = p.col_log[pos];
      sm.carry[buf][tid] = p.carry_w[pos];
      sm.floor_[buf][tid] = expf(-p.m_pos[pos]);
      sm.key_w[buf][tid] = p.key_w[pos];
    }
  };

  if (kOverlap) issue(0, 0);
  for (int chunk = 0; chunk < p.NC; ++chunk) {
    const int t0 = chunk * kL;
    const int buf = kOverlap ? chunk & 1 : 0, next = kOverlap ? buf ^ 1 : 0;
    if (!kOverlap) issue(chunk, 0);
    const float decay = p.decay[(size_t)bh * p.NC + chunk];
    // C_{k-1} as bf16 hi + lo planes, the B operand of q C.
#pragma unroll
    for (int n = 0; n < kWidth / 8; ++n)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int d = r0 + g + 8 * h, col = 8 * n + 2 * tq;
        uint32_t xh, xl;
        mma::split2(acc[n][2 * h], acc[n][2 * h + 1], xh, xl);
        if (d < kMaxHeadDim) {
          *reinterpret_cast<uint32_t*>(sm.c_hi + d * kLdV + col) = xh;
          *reinterpret_cast<uint32_t*>(sm.c_lo + d * kLdV + col) = xl;
        }
      }
    mma::cp_async_wait<0>();
    __syncthreads();

    // ---- outputs of this chunk's rows ra, rb, columns e0 .. e0 + kWidth/2 of the slice
    // (all of them: past Dv the slice's tiles are zero, and a runtime limit spills)
    float s[8][4], psum_a, psum_b;
    mma::chunk_scores(s, psum_a, psum_b, sm.q, sm.k, kLdQk, ro, kd, p.scale, sm.row_log[buf], sm.col_log[buf]);
    float h[kHalfTiles][4], dn_a, dn_b;
    mma::chunk_state_product(h, sm.q, kLdQk, sm.c_hi, sm.c_lo, kLdV, ro, e0, kd, kWidth);
    mma::chunk_normaliser(h, dn_a, dn_b, psum_a, psum_b, sm.q, kLdQk, sm.n[buf], sm.carry[buf], ro, p.Dk, p.scale);
    mma::chunk_values(h, s, sm.v, kLdV, ro, e0, kWidth);

    // ---- the state update: C_k = decay C_{k-1} + k^T (w o V) (w o V split hi + lo)
    if (state_rows) {
#pragma unroll
      for (int n = 0; n < kWidth / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[n][e] *= decay;
      mma::chunk_state_update(acc, sm.k, kLdQk, sm.v, kLdV, sm.key_w[buf], 1.f, r0, kWidth);
    }
    if (kOverlap) {  // n_k into the other buffer while the other warps still read n_{k-1}
      if (tid < p.Dk) {
        sm.n[next][tid] = sm.n[buf][tid];
        mma::chunk_vec_update(sm.n[next], tid, sm.k, kLdQk, sm.key_w[buf], decay, 1.f);
      }
    }
    __syncthreads();  // every warp is done with q, k, v, C's planes and n_{k-1}

    // ---- this chunk's outputs staged (q's tile, or C's planes while the next copies
    // fly into q), 16 bytes a lane; n_k in place without kOverlap
    bf16* stage = sm.q;
    int ld_stage = kLdQk;
    if (kOverlap) {
      if (chunk + 1 < p.NC) issue(chunk + 1, next);
      stage = sm.c_hi;
      ld_stage = kLdV;
    } else if (tid < p.Dk) {
      mma::chunk_vec_update(sm.n[0], tid, sm.k, kLdQk, sm.key_w[0], decay, 1.f);
    }
    const float inv_a = 1.f / (fmaxf(fabsf(dn_a), sm.floor_[buf][ra]) + p.eps);
    const float inv_b = 1.f / (fmaxf(fabsf(dn_b), sm.floor_[buf][rb]) + p.eps);
    const size_t tile = ((size_t)bh * p.S + t0) * p.Dv + col0;
    mma::store_rows(h, inv_a, inv_b, stage, ld_stage, ro, e0, p.Dv - col0, static_cast<bf16*>(p.h) + tile,
                    p.h_lo ? static_cast<bf16*>(p.h_lo) + tile : nullptr, p.Dv, p.S - t0);
    if (first_slice && e0 == 0 && tq == 0) {
      if (t0 + ra < p.S) p.dn[(size_t)bh * p.S + t0 + ra] = dn_a;
      if (t0 + rb < p.S) p.dn[(size_t)bh * p.S + t0 + rb] = dn_b;
    }
    __syncthreads();  // the staging is read before C's planes are rewritten; n_k is final
  }

  if (state_rows) {
#pragma unroll
    for (int n = 0; n < kWidth / 8; ++n)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int d = r0 + g + 8 * h, col = col0 + 8 * n + 2 * tq;
        if (d < p.Dk && col < p.Dv)
          *reinterpret_cast<float2*>(p.final_mat + bh * mat + (size_t)d * p.Dv + col) =
              make_float2(acc[n][2 * h], acc[n][2 * h + 1]);
      }
  }
  if (first_slice && tid < p.Dk) p.final_vec[(size_t)bh * p.Dk + tid] = sm.n[kOverlap ? p.NC & 1 : 0][tid];
}

template <int kWidth, bool kOverlap>
void launch(const FusedForwardParams& p, cudaStream_t stream) {
  const size_t smem = sizeof(FusedSmem<kWidth>);
  auto kernel = mma_fused_forward_kernel<kWidth, kOverlap>;
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  kernel<<<dim3((p.Dv + kWidth - 1) / kWidth, p.BH), kThreadsFused, smem, stream>>>(p);
}

}  // namespace

void mlstm_fused_forward_mma(const FusedForwardParams& p, cudaStream_t stream) {
  // Each block walks all chunks of its head, so the time is one block's: 64-column
  // slices by default (two blocks a head at D=128), 32 when the heads are too few to
  // give every multiprocessor two blocks (a long prompt at batch 1).
  static const int sms = [] {
    int dev = 0, n = 132;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n;
  }();
  const bool narrow = (long long)p.BH * ((p.Dv + 63) / 64) < 2LL * sms;
  if (p.overlap_loads) narrow ? launch<32, true>(p, stream) : launch<64, true>(p, stream);
  else narrow ? launch<32, false>(p, stream) : launch<64, false>(p, stream);
}

}  // namespace xd::kernels
