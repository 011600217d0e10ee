// Per-chunk outputs on tensor cores, for bf16 inputs and chunk 64 (same
// contract as mlstm_forward_output.cu: ForwardOutputParams). One block per
// (chunk, head), 4 warps, warp w owns query rows 16w..16w+15:
//   S = q k^T (exact bf16 operands), P = scale S o exp(row_log_t + col_log_j), causal;
//   h = s_t q C_prev (C split hi + lo) + P V (P split hi + lo), all fp32 accumulators;
//   den = max(|s_t scale q.n + sum_j P_tj|, exp(-m_t)) + eps.
// q and k, then v in k's place, and C (hi, lo) are staged in shared memory
// (104 KB: two blocks per multiprocessor).
#include "mlstm_mma.cuh"
#include "mlstm_mma_chunk.cuh"
#include "mlstm_params.h"

namespace xd::kernels {
namespace {

using mma::bf16;
constexpr int kThreadsFwd = 128;
constexpr int kL = 64;
constexpr int kLd = kMaxHeadDim + 8;

struct ForwardSmem {
  bf16 q[kL * kLd];
  bf16 kv[kL * kLd];
  bf16 c_hi[kMaxHeadDim * kLd];
  bf16 c_lo[kMaxHeadDim * kLd];
  float n[kMaxHeadDim];
  float row_log[kL], carry[kL], floor_[kL], col_log[kL];
};

__global__ void __launch_bounds__(kThreadsFwd, 2) mma_forward_kernel(ForwardOutputParams p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  ForwardSmem& sm = *reinterpret_cast<ForwardSmem*>(smem_raw);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, tq = lane % 4;
  const int chunk = blockIdx.x, bh = blockIdx.y, c0 = chunk * kL;
  const size_t pos = (size_t)bh * p.S_pad + c0;
  const bf16* q = static_cast<const bf16*>(p.q) + (size_t)bh * p.S * p.Dk;
  const bf16* k = static_cast<const bf16*>(p.k) + (size_t)bh * p.S * p.Dk;
  const bf16* v = static_cast<const bf16*>(p.v) + (size_t)bh * p.S * p.Dv;
  const int kd = (p.Dk + 15) / 16, nv = (p.Dv + 7) / 8;  // k-steps over Dk, 8-column tiles of Dv

  mma::tile_async<kMaxHeadDim, kThreadsFwd>(sm.q, kLd, q, c0, kL, p.S, p.Dk);
  mma::tile_async<kMaxHeadDim, kThreadsFwd>(sm.kv, kLd, k, c0, kL, p.S, p.Dk);
  mma::cp_async_commit();
  // C's loads fly while the scores are computed.
  mma::MatrixPrefetch<kMaxHeadDim, kThreadsFwd> state;
  state.load(p.states + ((size_t)bh * p.NC + chunk) * p.Dk * p.Dv, p.Dk, p.Dv);
  if (tid < kMaxHeadDim) sm.n[tid] = tid < p.Dk ? p.state_vecs[((size_t)bh * p.NC + chunk) * p.Dk + tid] : 0.f;
  if (tid < kL) {
    sm.row_log[tid] = p.row_log[pos + tid];
    sm.carry[tid] = p.carry_w[pos + tid];
    sm.floor_[tid] = expf(-p.m_pos[pos + tid]);
    sm.col_log[tid] = p.col_log[pos + tid];
  }
  mma::cp_async_wait<0>();
  __syncthreads();

  const int r0 = warp * 16;
  const int ra = r0 + g, rb = r0 + g + 8;  // this lane's two rows
  float s[8][4], psum_a, psum_b;
  mma::chunk_scores(s, psum_a, psum_b, sm.q, sm.kv, kLd, r0, kd, p.scale, sm.row_log, sm.col_log);
  state.store_split(sm.c_hi, sm.c_lo, kLd);
  __syncthreads();
  float h[16][4], dn_a, dn_b;
  mma::chunk_state_product(h, sm.q, kLd, sm.c_hi, sm.c_lo, kLd, r0, 0, kd, p.Dv);
  mma::chunk_normaliser(h, dn_a, dn_b, psum_a, psum_b, sm.q, kLd, sm.n, sm.carry, r0, p.Dk, p.scale);

  __syncthreads();  // every warp is done with k
  mma::tile_async<kMaxHeadDim, kThreadsFwd>(sm.kv, kLd, v, c0, kL, p.S, p.Dv);
  mma::cp_async_commit();
  mma::cp_async_wait<0>();
  __syncthreads();
  mma::chunk_values(h, s, sm.kv, kLd, r0, 0, p.Dv);

  // Normalise, stage the warp's 16 rows in its own rows of the q tile, store 16 bytes a lane.
  const float inv_a = 1.f / (fmaxf(fabsf(dn_a), sm.floor_[ra]) + p.eps);
  const float inv_b = 1.f / (fmaxf(fabsf(dn_b), sm.floor_[rb]) + p.eps);
  const size_t tile = ((size_t)bh * p.S + c0) * p.Dv;
  mma::store_rows(h, inv_a, inv_b, sm.q, kLd, r0, 0, p.Dv, static_cast<bf16*>(p.h) + tile,
                  p.h_lo ? static_cast<bf16*>(p.h_lo) + tile : nullptr, p.Dv, p.S - c0);
  if (tq == 0) {
    if (c0 + ra < p.S) p.dn[(size_t)bh * p.S + c0 + ra] = dn_a;
    if (c0 + rb < p.S) p.dn[(size_t)bh * p.S + c0 + rb] = dn_b;
  }
}

// The same with 8 warps: warps w and w + 4 share query rows 16(w % 4).. (both form
// the scores) and split the value columns in halves; C arrives as the scan's
// split-bf16 planes through cp.async, so no registers hold it in flight.
constexpr int kThreadsFwd2 = 256;

__global__ void __launch_bounds__(kThreadsFwd2, 2) mma_forward_split_kernel(ForwardOutputParams p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  ForwardSmem& sm = *reinterpret_cast<ForwardSmem*>(smem_raw);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, tq = lane % 4;
  const int chunk = blockIdx.x, bh = blockIdx.y, c0 = chunk * kL;
  const size_t pos = (size_t)bh * p.S_pad + c0;
  const bf16* q = static_cast<const bf16*>(p.q) + (size_t)bh * p.S * p.Dk;
  const bf16* k = static_cast<const bf16*>(p.k) + (size_t)bh * p.S * p.Dk;
  const bf16* v = static_cast<const bf16*>(p.v) + (size_t)bh * p.S * p.Dv;
  const size_t mat = (size_t)p.Dk * p.Dv;
  const bf16* c_hi = reinterpret_cast<const bf16*>(p.states) + ((size_t)bh * p.NC + chunk) * 2 * mat;
  const int kd = (p.Dk + 15) / 16;

  mma::tile_async<kMaxHeadDim, kThreadsFwd2>(sm.q, kLd, q, c0, kL, p.S, p.Dk);
  mma::tile_async<kMaxHeadDim, kThreadsFwd2>(sm.kv, kLd, k, c0, kL, p.S, p.Dk);
  mma::cp_async_commit();
  mma::tile_async<kMaxHeadDim, kThreadsFwd2>(sm.c_hi, kLd, c_hi, 0, kMaxHeadDim, p.Dk, p.Dv);
  mma::tile_async<kMaxHeadDim, kThreadsFwd2>(sm.c_lo, kLd, c_hi + mat, 0, kMaxHeadDim, p.Dk, p.Dv);
  mma::cp_async_commit();
  if (tid < kMaxHeadDim) sm.n[tid] = tid < p.Dk ? p.state_vecs[((size_t)bh * p.NC + chunk) * p.Dk + tid] : 0.f;
  if (tid < kL) {
    sm.row_log[tid] = p.row_log[pos + tid];
    sm.carry[tid] = p.carry_w[pos + tid];
    sm.floor_[tid] = expf(-p.m_pos[pos + tid]);
    sm.col_log[tid] = p.col_log[pos + tid];
  }
  mma::cp_async_wait<1>();
  __syncthreads();

  const int r0 = (warp % 4) * 16, half = warp / 4, e0 = 64 * half;
  const int ra = r0 + g, rb = r0 + g + 8;
  float s[8][4], psum_a, psum_b;
  mma::chunk_scores(s, psum_a, psum_b, sm.q, sm.kv, kLd, r0, kd, p.scale, sm.row_log, sm.col_log);
  mma::cp_async_wait<0>();
  __syncthreads();  // C's planes are in
  float h[8][4], dn_a, dn_b;
  mma::chunk_state_product(h, sm.q, kLd, sm.c_hi, sm.c_lo, kLd, r0, e0, kd, p.Dv);
  mma::chunk_normaliser(h, dn_a, dn_b, psum_a, psum_b, sm.q, kLd, sm.n, sm.carry, r0, p.Dk, p.scale);

  __syncthreads();  // every warp is done with k (and with q)
  mma::tile_async<kMaxHeadDim, kThreadsFwd2>(sm.kv, kLd, v, c0, kL, p.S, p.Dv);
  mma::cp_async_commit();
  mma::cp_async_wait<0>();
  __syncthreads();
  mma::chunk_values(h, s, sm.kv, kLd, r0, e0, p.Dv);

  // Normalise, stage this warp's 16 rows x 64 columns in the (free) q tile, store 16 bytes a lane.
  const float inv_a = 1.f / (fmaxf(fabsf(dn_a), sm.floor_[ra]) + p.eps);
  const float inv_b = 1.f / (fmaxf(fabsf(dn_b), sm.floor_[rb]) + p.eps);
  const size_t tile = ((size_t)bh * p.S + c0) * p.Dv;
  mma::store_rows(h, inv_a, inv_b, sm.q, kLd, r0, e0, p.Dv, static_cast<bf16*>(p.h) + tile,
                  p.h_lo ? static_cast<bf16*>(p.h_lo) + tile : nullptr, p.Dv, p.S - c0);
  if (tq == 0 && half == 0) {
    if (c0 + ra < p.S) p.dn[(size_t)bh * p.S + c0 + ra] = dn_a;
    if (c0 + rb < p.S) p.dn[(size_t)bh * p.S + c0 + rb] = dn_b;
  }
}

}  // namespace

void mlstm_forward_output_mma(const ForwardOutputParams& p, cudaStream_t stream) {
  const size_t smem = sizeof(ForwardSmem);
  if (p.split_states) {
    cudaFuncSetAttribute(mma_forward_split_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    mma_forward_split_kernel<<<dim3(p.NC, p.BH), kThreadsFwd2, smem, stream>>>(p);
    return;
  }
  cudaFuncSetAttribute(mma_forward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  mma_forward_kernel<<<dim3(p.NC, p.BH), kThreadsFwd, smem, stream>>>(p);
}

}  // namespace xd::kernels
