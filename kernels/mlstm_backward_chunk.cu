// Per-chunk gradients of the chunkwise mLSTM with the stabilisers held constant
// (chunk length 64). One block per (chunk, head). With D_tj = exp(row_log_t +
// col_log_j) (j <= t), dNum_t = dh_t / den_t, S = q~ k^T, dP = dNum v^T + ddn 1^T:
//   dq~ = (D o dP) k + s_t (dNum C^T + ddn n^T)
//   dk  = (D o dP)^T q~ + w_j (v dC^T + 1 dn^T)
//   dv  = (D o S)^T dNum + w_j k dC
// Phase 1 forms D o dP and D o S (64 x 64) in shared memory; phase 2 the intra-chunk
// products; phase 3 streams C and dC through shared memory in 64-column halves.
//
// It also writes p.dlf_cross: the forget gate's log-gradient dlf_s (stabilisers constant) as the
// sum of G_tj = (D o dP)_tj S_tj over the pairs t >= s > j that its decay spans,
// split by where t and j lie: both in the chunk (row sums minus column sums of the
// strictly lower G, suffix-summed), t in the chunk and j before it (q~_t.dq~_t's
// carried-state part, suffix-summed), j in the chunk and t after it (k_j.dk_j's
// state-gradient part, prefix-summed), and both outside (decay <C_{k-1},dC_k> +
// <n_{k-1},dn_k>). The same value as the reverse cumulative sum of q~.dq~ - k.dk over
// the sequence, without its cancellation: over 1000 positions float32 dots left df
// 8e-6 from the float64 oracle, this 2e-6 (tools/mlstm_kernel_fp32_emulation.py).
#include "mlstm_common.cuh"
#include "mlstm_params.h"
#include "mlstm_tensor_core.cuh"

namespace xd::kernels {
namespace {

constexpr int kL = 64;
constexpr int kLd = kMaxHeadDim + 1;
constexpr int kLdS = kL + 1;
constexpr int kHalf = 64;  // state columns per phase-3 pass
constexpr size_t kScratch = kL * (kMaxHeadDim + 1);  // tensor-core results, 64 x 128
constexpr int kRowGroups = kThreads / 16;  // ty values: column partials of G, one row each
constexpr size_t kSmem = sizeof(float) * (4 * kL * kLd + 2 * kL * kLdS + 2 * kMaxHeadDim + 10 * kL + kRowGroups * kL);
static_assert(kMaxHeadDim * (kHalf + 1) <= 2 * kL * kLdS, "phase-3 state slice must fit in the score buffers");
static_assert(kL + 4 * kL <= kRowGroups * kL, "col_part holds the warp sums and two float64 arrays of kL");
static_assert(kSmem + sizeof(float) * kScratch <= 227 * 1024, "backward chunk: shared memory over the 227 KB limit");

template <typename T, bool TC>
__global__ void __launch_bounds__(kThreads) backward_chunk_kernel(BackwardChunkParams p) {
  extern __shared__ float smem[];
  float* qs = smem;               // [64][kLd] q~
  float* ks = qs + kL * kLd;      // [64][kLd] k (later w_j k)
  float* vs = ks + kL * kLd;      // [64][kLd] v (later w_j v)
  float* gs = vs + kL * kLd;      // [64][kLd] dNum (later s_t dNum)
  float* as = gs + kL * kLd;      // [64][kLdS] D o dP
  float* bs = as + kL * kLdS;     // [64][kLdS] D o S
  float* buf = as;                // phase 3: [Dk][kHalf+1] slice of C or dC (aliases as, bs)
  float* nprev = bs + kL * kLdS;  // [Dk]
  float* dnk = nprev + kMaxHeadDim;
  float* row_log = dnk + kMaxHeadDim;
  float* col_log = row_log + kL;
  float* carry = col_log + kL;
  float* key_w = carry + kL;
  float* inv_den = key_w + kL;
  float* ddn = inv_den + kL;
  float* row_lo = ddn + kL;      // residues of row_log, col_log (0 without them)
  float* col_lo = row_lo + kL;
  float* cross_in = col_lo + kL;      // per position: G's strict row sum - column sum + q~.dq~_carried
  float* cross_out = cross_in + kL;   // per position: k.dk_state
  float* col_part = cross_out + kL;   // [kRowGroups][64] column partials of G, later the block sum
  float* scratch = col_part + kRowGroups * kL;  // [64][129] when TC
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int chunk = blockIdx.x, bh = blockIdx.y, c0 = chunk * kL;
  const size_t pos = (size_t)bh * p.S_pad + c0;
  const T* q = static_cast<const T*>(p.q) + (size_t)bh * p.S * p.Dk;
  const T* k = static_cast<const T*>(p.k) + (size_t)bh * p.S * p.Dk;
  const T* v = static_cast<const T*>(p.v) + (size_t)bh * p.S * p.Dv;
  const T* dh = static_cast<const T*>(p.dh) + (size_t)bh * p.S * p.Dv;

  if (tid < kL) {
    row_log[tid] = p.row_log[pos + tid];
    col_log[tid] = p.col_log[pos + tid];
    carry[tid] = p.carry_w[pos + tid];
    key_w[tid] = p.key_w[pos + tid];
    inv_den[tid] = p.inv_den[pos + tid];
    ddn[tid] = p.ddn[pos + tid];
    row_lo[tid] = p.row_log_lo ? p.row_log_lo[pos + tid] : 0.f;
    col_lo[tid] = p.col_log_lo ? p.col_log_lo[pos + tid] : 0.f;
  }
  if (tid < kMaxHeadDim) {
    const size_t sv = ((size_t)bh * p.NC + chunk) * p.Dk + tid;
    nprev[tid] = tid < p.Dk ? p.state_vecs[sv] : 0.f;
    dnk[tid] = tid < p.Dk ? p.dstate_vecs[sv] : 0.f;
  }
  load_tile<kMaxHeadDim>(qs, kLd, q, c0, kL, p.S, p.Dk, p.scale);
  load_tile<kMaxHeadDim>(ks, kLd, k, c0, kL, p.S, p.Dk, 1.f);
  load_tile<kMaxHeadDim>(vs, kLd, v, c0, kL, p.S, p.Dv, 1.f);
  load_tile<kMaxHeadDim>(gs, kLd, dh, c0, kL, p.S, p.Dv, 1.f);
  __syncthreads();
  for (int idx = tid; idx < kL * kMaxHeadDim; idx += kThreads) gs[(idx / kMaxHeadDim) * kLd + idx % kMaxHeadDim] *= inv_den[idx / kMaxHeadDim];
  __syncthreads();

  {  // Phase 1
    float s[4][4], dp[4][4], row_g[4] = {0.f, 0.f, 0.f, 0.f}, col_g[4] = {0.f, 0.f, 0.f, 0.f};
    zero(s);
    zero(dp);
    block_mm_auto<TC, 4, 4, false, true>(s, qs, kLd, ks, kLd, p.Dk, ty, tx, scratch);
    block_mm_auto<TC, 4, 4, false, true>(dp, gs, kLd, vs, kLd, p.Dv, ty, tx, scratch);
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int t = ty + 16 * r, j = tx + 16 * c;
        const float d = j <= t ? chunk_weight(row_log[t], row_lo[t], col_log[j], col_lo[j]) : 0.f;
        const float a = d * (dp[r][c] + ddn[t]);
        as[t * kLdS + j] = a;
        bs[t * kLdS + j] = d * s[r][c];
        const float g = j < t ? a * s[r][c] : 0.f;
        row_g[r] += g;
        col_g[c] += g;
      }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
#pragma unroll
      for (int off = 8; off > 0; off >>= 1) row_g[r] += __shfl_xor_sync(0xffffffffu, row_g[r], off);
      if (tx == 0) cross_in[ty + 16 * r] = row_g[r];
    }
#pragma unroll
    for (int c = 0; c < 4; ++c) col_part[ty * kL + tx + 16 * c] = col_g[c];
  }
  __syncthreads();
  if (tid < kL) {  // fixed order: the same sums on every run
    float col = 0.f;
    for (int y = 0; y < kRowGroups; ++y) col += col_part[y * kL + tid];
    cross_in[tid] -= col;
  }

  float dq[4][8], dk[4][8], dv[4][8];  // rows ty + 16 r, columns tx + 16 c
  zero(dq);
  zero(dk);
  zero(dv);
  block_mm_auto<TC, 4, 8, false, false>(dq, as, kLdS, ks, kLd, kL, ty, tx, scratch);
  block_mm_auto<TC, 4, 8, true, false>(dk, as, kLdS, qs, kLd, kL, ty, tx, scratch);
  block_mm_auto<TC, 4, 8, true, false>(dv, bs, kLdS, gs, kLd, kL, ty, tx, scratch);
  __syncthreads();

  // Phase 3: the carried state's share. Rows of dNum, v, k take their weights now.
  for (int idx = tid; idx < kL * kMaxHeadDim; idx += kThreads) {
    const int t = idx / kMaxHeadDim, d = idx % kMaxHeadDim;
    gs[t * kLd + d] *= carry[t];
    vs[t * kLd + d] *= key_w[t];
    ks[t * kLd + d] *= key_w[t];
  }
  const size_t mat = ((size_t)bh * p.NC + chunk) * p.Dk * p.Dv;
  float q_carried[4] = {0.f, 0.f, 0.f, 0.f}, k_state[4] = {0.f, 0.f, 0.f, 0.f}, state_dot = 0.f;
#pragma unroll
  for (int half = 0; half < kMaxHeadDim / kHalf; ++half) {
    const int h0 = half * kHalf;
    const int width = min(kHalf, p.Dv - h0);
    for (int pass = 0; pass < 2 && width > 0; ++pass) {
      const float* src = (pass == 0 ? p.states : p.dstates) + mat;
      __syncthreads();
      for (int idx = tid; idx < kMaxHeadDim * kHalf; idx += kThreads) {
        const int d = idx / kHalf, c = idx % kHalf;
        buf[d * (kHalf + 1) + c] = (d < p.Dk && c < width) ? src[(size_t)d * p.Dv + h0 + c] : 0.f;
      }
      __syncthreads();
      if (pass == 0) {  // the carried state's share of dq~, kept apart for its dot with q~
        float dq_part[4][8];
        zero(dq_part);
        block_mm_auto<TC, 4, 8, false, true>(dq_part, gs + h0, kLd, buf, kHalf + 1, width, ty, tx, scratch);
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int c = 0; c < 8; ++c) {
            q_carried[r] = fmaf(qs[(ty + 16 * r) * kLd + tx + 16 * c], dq_part[r][c], q_carried[r]);
            dq[r][c] += dq_part[r][c];
          }
      } else {  // likewise dk's state share, and <C_{k-1}, dC_k> while dC's slice is here
        float dk_part[4][8];
        zero(dk_part);
        block_mm_auto<TC, 4, 8, false, true>(dk_part, vs + h0, kLd, buf, kHalf + 1, width, ty, tx, scratch);
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int gt = c0 + ty + 16 * r;
#pragma unroll
          for (int c = 0; c < 8; ++c) {
            const int d = tx + 16 * c;
            const float kv = (gt < p.S && d < p.Dk) ? to_float(k[(size_t)gt * p.Dk + d]) : 0.f;
            k_state[r] = fmaf(kv, dk_part[r][c], k_state[r]);
            dk[r][c] += dk_part[r][c];
          }
        }
        for (int idx = tid; idx < p.Dk * width; idx += kThreads) {
          const int d = idx / width, c = idx % width;
          state_dot = fmaf(p.states[mat + (size_t)d * p.Dv + h0 + c], buf[d * (kHalf + 1) + c], state_dot);
        }
        float part[4][4];
        zero(part);
        block_mm_auto<TC, 4, 4, false, false>(part, ks, kLd, buf, kHalf + 1, p.Dk, ty, tx, scratch);
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
          for (int c = 0; c < 4; ++c) dv[r][half * 4 + c] += part[r][c];
      }
    }
  }

  // The normaliser column: dq~ += s_t ddn_t n_prev, dk += w_j dn_k; then the stores.
  T* dq_out = static_cast<T*>(p.dq) + (size_t)bh * p.S * p.Dk;
  T* dk_out = static_cast<T*>(p.dk) + (size_t)bh * p.S * p.Dk;
  T* dv_out = static_cast<T*>(p.dv) + (size_t)bh * p.S * p.Dv;
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int t = ty + 16 * r, gt = c0 + t;
    float qdot = 0.f, kdot = 0.f;
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      const int d = tx + 16 * c;
      const float dq_vec = carry[t] * ddn[t] * nprev[d], dk_vec = key_w[t] * dnk[d];
      dq[r][c] += dq_vec;
      dk[r][c] += dk_vec;
      if (gt < p.S && d < p.Dk) {
        const float kv = to_float(k[(size_t)gt * p.Dk + d]);
        q_carried[r] = fmaf(qs[t * kLd + d], dq_vec, q_carried[r]);
        k_state[r] = fmaf(kv, dk_vec, k_state[r]);
        qdot = fmaf(qs[t * kLd + d], dq[r][c], qdot);
        kdot = fmaf(kv, dk[r][c], kdot);
        dq_out[(size_t)gt * p.Dk + d] = from_float<T>(dq[r][c] * p.scale);
        dk_out[(size_t)gt * p.Dk + d] = from_float<T>(dk[r][c]);
      }
      if (gt < p.S && d < p.Dv) dv_out[(size_t)gt * p.Dv + d] = from_float<T>(dv[r][c]);
    }
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) {  // the 16 lanes sharing ty
      qdot += __shfl_xor_sync(0xffffffffu, qdot, off);
      kdot += __shfl_xor_sync(0xffffffffu, kdot, off);
      q_carried[r] += __shfl_xor_sync(0xffffffffu, q_carried[r], off);
      k_state[r] += __shfl_xor_sync(0xffffffffu, k_state[r], off);
    }
    if (tx == 0 && gt < p.S) {
      p.q_dot_dq[(size_t)bh * p.S + gt] = qdot;
      p.k_dot_dk[(size_t)bh * p.S + gt] = kdot;
    }
    if (tx == 0) {
      cross_in[t] += q_carried[r];
      cross_out[t] = k_state[r];
    }
  }
  // The pairs that span the whole chunk: decay (<C_{k-1},dC_k> + <n_{k-1},dn_k>).
  if (tid < p.Dk) state_dot = fmaf(nprev[tid], dnk[tid], state_dot);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) state_dot += __shfl_xor_sync(0xffffffffu, state_dot, off);
  if (tid % 32 == 0) col_part[tid / 32] = state_dot;
  __syncthreads();
  // Two threads sum in float64 (suffix sums, exclusive prefix sums); one rounding at the end.
  double* suffix = reinterpret_cast<double*>(col_part + kL);  // past the warp sums; 8-byte aligned
  double* prefix = suffix + kL;
  const int n = min(kL, p.S - c0);
  if (tid == 0) {
    double acc = 0.0;
    for (int t = n - 1; t >= 0; --t) suffix[t] = acc += cross_in[t];
  } else if (tid == 32) {
    double acc = 0.0;
    for (int t = 0; t < n; ++t) {
      prefix[t] = acc;
      acc += cross_out[t];
    }
  }
  __syncthreads();
  if (tid < n) {
    double spans = 0.0;
    for (int w = 0; w < kThreads / 32; ++w) spans += col_part[w];
    spans *= p.decay[(size_t)bh * p.NC + chunk];
    p.dlf_cross[(size_t)bh * p.S + c0 + tid] = (float)(suffix[tid] + prefix[tid] + spans);
  }
}

template <typename T, bool TC>
void launch(const BackwardChunkParams& p, cudaStream_t stream) {
  const size_t smem = kSmem + (TC ? sizeof(float) * kScratch : 0);
  cudaFuncSetAttribute(backward_chunk_kernel<T, TC>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  backward_chunk_kernel<T, TC><<<dim3(p.NC, p.BH), kThreads, smem, stream>>>(p);
}

}  // namespace

void mlstm_backward_chunk(const BackwardChunkParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::F32: launch<float, false>(p, stream); break;
    case DType::BF16:
      p.tensor_cores ? launch<__nv_bfloat16, true>(p, stream) : launch<__nv_bfloat16, false>(p, stream);
      break;
    case DType::F16: p.tensor_cores ? launch<__half, true>(p, stream) : launch<__half, false>(p, stream); break;
  }
}

}  // namespace xd::kernels
