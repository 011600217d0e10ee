// Per-chunk outputs of the chunkwise mLSTM: one block per (64 query rows of a
// chunk, head). The block stages q~ (64 x Dk), the chunk's keys and then values
// (L x D), the weighted scores P (64 x L) and the carried state C (Dk x Dv) in
// shared memory, and accumulates h (64 x Dv, 4 x 8 per thread) in registers:
//   h_t = (s_t q~_t C + sum_{j<=t} P_tj v_j) / (max(|s_t q~_t.n + sum_j P_tj|, exp(-m_t)) + eps).
#include "mlstm_common.cuh"
#include "mlstm_params.h"
#include "mlstm_tensor_core.cuh"

namespace xd::kernels {
namespace {

constexpr int kRows = 64;  // query rows per block
constexpr int kLd = kMaxHeadDim + 1;

template <int L, bool TC>
constexpr size_t forward_output_smem() {
  return sizeof(float) * (kRows * kLd + L * kLd + kRows * (L + 1) + kMaxHeadDim * kLd + kMaxHeadDim + 5 * kRows + 2 * L +
                          (TC ? kRows * (kMaxHeadDim + 1) : 0));
}
static_assert(forward_output_smem<128, false>() <= 227 * 1024, "forward output: shared memory over the 227 KB limit");
static_assert(forward_output_smem<64, true>() <= 227 * 1024, "forward output: shared memory over the 227 KB limit");

template <int L, typename T, bool TC>
__global__ void __launch_bounds__(kThreads) forward_output_kernel(ForwardOutputParams p) {
  constexpr int kLdP = L + 1;
  extern __shared__ float smem[];
  float* qs = smem;                  // [64][kLd]  q~ = q / sqrt(Dk)
  float* kv = qs + kRows * kLd;      // [L][kLd]   keys, then values
  float* ps = kv + L * kLd;          // [64][kLdP] weighted scores
  float* cs = ps + kRows * kLdP;     // [Dk][kLd]  carried state
  float* nvec = cs + kMaxHeadDim * kLd;
  float* row_log = nvec + kMaxHeadDim;
  float* carry = row_log + kRows;
  float* dn = carry + kRows;
  float* floor_ = dn + kRows;
  float* col_log = floor_ + kRows;   // [L]
  float* row_lo = col_log + L;       // [64] residues of row_log (0 without them)
  float* col_lo = row_lo + kRows;    // [L]
  float* scratch = col_lo + L;       // [64][129] tensor-core results
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  constexpr int kBlocksPerChunk = L / kRows;
  const int chunk = blockIdx.x / kBlocksPerChunk, r0 = (blockIdx.x % kBlocksPerChunk) * kRows;
  const int bh = blockIdx.y, c0 = chunk * L;
  const size_t pos = (size_t)bh * p.S_pad;
  const T* q = static_cast<const T*>(p.q) + (size_t)bh * p.S * p.Dk;
  const T* k = static_cast<const T*>(p.k) + (size_t)bh * p.S * p.Dk;
  const T* v = static_cast<const T*>(p.v) + (size_t)bh * p.S * p.Dv;

  load_tile<kMaxHeadDim>(qs, kLd, q, c0 + r0, kRows, p.S, p.Dk, p.scale);
  load_tile<kMaxHeadDim>(kv, kLd, k, c0, L, p.S, p.Dk, 1.f);
  if (tid < kRows) {
    row_log[tid] = p.row_log[pos + c0 + r0 + tid];
    carry[tid] = p.carry_w[pos + c0 + r0 + tid];
    floor_[tid] = expf(-p.m_pos[pos + c0 + r0 + tid]);
    row_lo[tid] = p.row_log_lo ? p.row_log_lo[pos + c0 + r0 + tid] : 0.f;
  }
  for (int j = tid; j < L; j += kThreads) {
    col_log[j] = p.col_log[pos + c0 + j];
    col_lo[j] = p.col_log_lo ? p.col_log_lo[pos + c0 + j] : 0.f;
  }
  if (tid < kMaxHeadDim)
    nvec[tid] = tid < p.Dk ? p.state_vecs[((size_t)bh * p.NC + chunk) * p.Dk + tid] : 0.f;
  __syncthreads();

  {  // P = (q~ k^T) * exp(row_log_t + col_log_j), causal inside the chunk.
    float s[4][L / 16];
    zero(s);
    block_mm_auto<TC, 4, L / 16, false, true>(s, qs, kLd, kv, kLd, p.Dk, ty, tx, scratch);
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < L / 16; ++c) {
        const int row = ty + 16 * r, j = tx + 16 * c;
        ps[row * kLdP + j] = (j <= r0 + row) ? s[r][c] * chunk_weight(row_log[row], row_lo[row], col_log[j], col_lo[j]) : 0.f;
      }
  }
  __syncthreads();
  if (tid < kRows) {  // the normaliser's argument: sum_j P_tj + s_t q~_t . n
    float a = 0.f, b = 0.f;
    for (int j = 0; j < L; ++j) a += ps[tid * kLdP + j];
    for (int d = 0; d < p.Dk; ++d) b = fmaf(qs[tid * kLd + d], nvec[d], b);
    dn[tid] = a + carry[tid] * b;
  }
  const float* cin = p.states + ((size_t)bh * p.NC + chunk) * p.Dk * p.Dv;
  load_tile<kMaxHeadDim>(kv, kLd, v, c0, L, p.S, p.Dv, 1.f);
  for (int idx = tid; idx < kMaxHeadDim * kMaxHeadDim; idx += kThreads) {
    const int d = idx / kMaxHeadDim, c = idx % kMaxHeadDim;
    cs[d * kLd + c] = (d < p.Dk && c < p.Dv) ? cin[(size_t)d * p.Dv + c] : 0.f;
  }
  __syncthreads();

  float h[4][8];
  zero(h);
  block_mm_auto<TC, 4, 8, false, false>(h, qs, kLd, cs, kLd, p.Dk, ty, tx, scratch);
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int c = 0; c < 8; ++c) h[r][c] *= carry[ty + 16 * r];
  block_mm_auto<TC, 4, 8, false, false>(h, ps, kLdP, kv, kLd, r0 + kRows, ty, tx, scratch);

  T* out = static_cast<T*>(p.h) + (size_t)bh * p.S * p.Dv;
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int row = ty + 16 * r, t = c0 + r0 + row;
    if (t >= p.S) continue;
    const float inv = 1.f / (fmaxf(fabsf(dn[row]), floor_[row]) + p.eps);
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      const int col = tx + 16 * c;
      if (col < p.Dv) out[(size_t)t * p.Dv + col] = from_float<T>(h[r][c] * inv);
    }
  }
  if (tid < kRows && c0 + r0 + tid < p.S) p.dn[(size_t)bh * p.S + c0 + r0 + tid] = dn[tid];
}

template <int L, typename T, bool TC>
void launch(const ForwardOutputParams& p, cudaStream_t stream) {
  constexpr size_t smem = forward_output_smem<L, TC>();
  cudaFuncSetAttribute(forward_output_kernel<L, T, TC>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  const dim3 grid(p.NC * (L / kRows), p.BH);
  forward_output_kernel<L, T, TC><<<grid, kThreads, smem, stream>>>(p);
}

// Tensor cores at L = 64 only: at L = 128 the scratch tile would not fit.
template <typename T>
void launch_for_chunk(const ForwardOutputParams& p, cudaStream_t stream) {
  if (p.L == 128) launch<128, T, false>(p, stream);
  else if (p.tensor_cores) launch<64, T, true>(p, stream);
  else launch<64, T, false>(p, stream);
}

}  // namespace

void mlstm_forward_output(const ForwardOutputParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::F32:
      if (p.L == 128) launch<128, float, false>(p, stream);
      else launch<64, float, false>(p, stream);
      break;
    case DType::BF16: launch_for_chunk<__nv_bfloat16>(p, stream); break;
    case DType::F16: launch_for_chunk<__half>(p, stream); break;
  }
}

}  // namespace xd::kernels
