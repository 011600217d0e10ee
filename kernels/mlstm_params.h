// Parameter structs for the chunkwise mLSTM kernels (no torch headers). Layouts:
// q,k [BH,S,Dk]; v,h,dh [BH,S,Dv] (contiguous, dtype `dtype`); per-position
// float32 arrays [BH,S_pad] with S_pad = NC*L (padding: zero weights); chunk
// states [BH,NC,Dk,Dv] and [BH,NC,Dk] float32. The math: shared/spec/mlstm.md
// and kernels/README.md.
#pragma once
#include <cuda_runtime.h>

namespace xd::kernels {

enum class DType { F32, BF16, F16 };

// Largest head dims the kernels take (smaller ones are zero-padded in shared memory).
constexpr int kMaxHeadDim = 128;

// A chunk-by-chunk scan of a Dk x Dv matrix state X and a Dk vector x:
//   X <- decay[c] X + sum_{t in chunk c} (row_scale rows[t]) (row_w[t] cols[t])^T
//   x <- decay[c] x + sum_{t in chunk c} vec_w[t] (row_scale rows[t])
// over chunks 0..NC-1 (forward: rows = k, cols = v, giving the states C, n) or
// NC-1..0 (reverse: rows = q, cols = dh, giving the state gradients dC, dn).
// The state before each chunk's update is stored into states/state_vecs.
struct ChunkScanParams {
  const void* rows;
  const void* cols;
  DType dtype;
  float row_scale;
  const float* row_w;     // [BH,S_pad]
  const float* vec_w;     // [BH,S_pad]
  const float* decay;     // [BH,NC]
  const float* init_mat;  // [BH,Dk,Dv] or null (zero)
  const float* init_vec;  // [BH,Dk] or null
  float* states;          // [BH,NC,Dk,Dv]
  float* state_vecs;      // [BH,NC,Dk]
  float* final_mat;       // [BH,Dk,Dv]
  float* final_vec;       // [BH,Dk]
  int BH, S, S_pad, L, NC, Dk, Dv;
  bool reverse;
  bool tensor_cores;  // bf16 mma for 16-bit inputs (ignored for float32)
  // mlstm_chunk_scan_mma only: store each chunk's state as two bf16 planes (hi, then
  // lo = x - hi), [BH,NC,2,Dk,Dv] in the same bytes, for mlstm_forward_output_mma's
  // asynchronous copies. final_mat stays float32.
  bool split_states;
};

// Per-chunk outputs: h = (s_t q~C + sum_j exp(row_log_t + col_log_j) (q~.k_j) v_j) / den_t.
struct ForwardOutputParams {
  const void* q;
  const void* k;
  const void* v;
  DType dtype;
  float scale;             // 1/sqrt(Dk)
  const float* row_log;    // b_t - m_t
  const float* col_log;    // i_j - b_j
  const float* carry_w;    // s_t = exp(b_t + m_prev - m_t)
  const float* m_pos;      // m_t (for the floor exp(-m_t))
  const float* states;     // C entering each chunk
  const float* state_vecs; // n entering each chunk
  void* h;                 // [BH,S,Dv]
  float* dn;               // [BH,S] signed q~.n (for the backward's branch)
  float eps;
  int BH, S, S_pad, L, NC, Dk, Dv;
  bool tensor_cores;  // L = 64 only
  bool split_states;  // mlstm_forward_output_mma: states in the scan's split-bf16 layout (faster kernel)
  const float* row_log_lo;  // null or GateTablesParams' residues (FMA kernels only)
  const float* col_log_lo;
  // Null, or [BH,S,Dv] like h: h's bf16 rounding residue, for the backward's dh.h
  // (mlstm_forward_output_mma only; the backward's gradient at a position where |q~.n|
  // cancels amplifies h's rounding: 1.3e-2 from the oracle with h alone).
  void* h_lo;
};

// Per-chunk gradients with the stabilisers held constant (the m path is added by
// the gate kernel): dq, dk, dv and the per-position dots q~.dq~ and k.dk.
struct BackwardChunkParams {
  const void* q;
  const void* k;
  const void* v;
  const void* dh;
  DType dtype;
  float scale;
  const float* row_log;
  const float* col_log;
  const float* carry_w;
  const float* key_w;       // w_j = exp(g - b_j + i_j - m_end): key weight into the chunk-end state
  const float* inv_den;     // 1/den_t
  const float* ddn;         // gradient of the signed q~.n_t
  const float* states;      // C_{k-1}
  const float* state_vecs;  // n_{k-1}
  const float* dstates;     // dC_k (gradient of the state at the chunk's end)
  const float* dstate_vecs; // dn_k
  void* dq;
  void* dk;
  void* dv;
  float* q_dot_dq;  // [BH,S]
  float* k_dot_dk;  // [BH,S]
  int BH, S, S_pad, L, NC, Dk, Dv;
  bool tensor_cores;
  const float* row_log_lo;  // null or GateTablesParams' residues (FMA kernels only)
  const float* col_log_lo;
  // [BH,S]: the forget gate's log-gradient from the pairs its decay spans, written by
  // mlstm_backward_chunk.cu (required there; the tensor-core backward ignores it) and
  // read by the gate backward in place of the reverse cumulative sum of q~.dq~ - k.dk;
  // decay is GateTablesParams' [BH,NC].
  float* dlf_cross;
  const float* decay;
  // mlstm_backward_chunk_wgmma only: 0, or G > 0 when states / state_vecs hold only the
  // states entering chunks 0, G, 2G, ... ([BH, ceil(NC/G), ...], mlstm_chunk_scan_wgmma's
  // state_every) and the kernel carries C and n between them itself.
  int segment;
};

// The bf16 forward in one kernel (mlstm_mma_fused_forward.cu): the forward scan
// (ChunkScanParams with rows = k, cols = v, row_w = vec_w = key_w) and the outputs
// (ForwardOutputParams) with chunk 64, without the per-chunk states in memory.
struct FusedForwardParams {
  const void* q;
  const void* k;
  const void* v;
  float scale;
  const float* row_log;
  const float* col_log;
  const float* carry_w;
  const float* m_pos;
  const float* key_w;
  const float* decay;     // [BH,NC]
  const float* init_mat;  // [BH,Dk,Dv] or null (zero)
  const float* init_vec;  // [BH,Dk] or null
  void* h;
  float* dn;
  float* final_mat;  // [BH,Dk,Dv]
  float* final_vec;  // [BH,Dk]
  float eps;
  int BH, S, S_pad, L, NC, Dk, Dv;
  bool overlap_loads;  // issue the next chunk's copies before this chunk's outputs are stored
  void* h_lo;          // null, or as ForwardOutputParams::h_lo
};

// Sequential per head: the forget-gate gradient (reverse cumulative sum) and the
// gradient through the stabiliser's max (m_t = max(lf_t + m_{t-1}, i_t)).
struct GateBackwardParams {
  const float* q_dot_dq;   // [BH,S]
  const float* k_dot_dk;   // [BH,S]
  const float* dm_direct;  // [BH,S] dL/dm_t through the eps term
  const float* f;          // [BH,S] pre-activations
  const float* i;          // [BH,S]
  const float* m_pos;      // [BH,S]
  const float* m0;         // [BH] or null (0)
  const float* state_dot;  // [BH] <C_S,dC_S> + <n_S,dn_S>
  const float* dm_final;   // [BH] upstream gradient of the final m, or null
  float* di;               // [BH,S]
  float* df;               // [BH,S]
  float* dm0;              // [BH] the m path's gradient reaching m_0
  int BH, S;
  bool sequential;         // the one-thread-per-head kernel (the first version) instead of the block scan
  const float* dlf_cross;  // null, or BackwardChunkParams::dlf_cross: then state_dot and the dots' sums go unused
};

// The per-position gate tables for chunk length L (float64 arithmetic): see
// mlstm_gate_tables.cu. Outputs [BH,S_pad] (padding: zero weights), decay [BH,NC], m_final [BH].
constexpr int kMaxTableChunks = 4096;
struct GateTablesParams {
  const float* i;   // [BH,S]
  const float* f;   // [BH,S]
  const float* m0;  // [BH] or null (0)
  float *m_pos, *row_log, *col_log, *carry, *key_w;
  float* decay;
  float* m_final;
  int BH, S, S_pad, L, NC;
  // Null, or where the rounding residues of row_log and col_log go (x - (float)x, from
  // float64): the fp32 kernels form exp(row_log_t + col_log_j) as
  // (row_hi + col_hi) + (row_lo + col_lo). Each log is as large as the in-chunk
  // cumulative log forget gate (tens), while their sum, where the weight matters, is
  // near 0: float32 logs alone leave ~1e-6 in the weights, 1.5e-5 in dk and di
  // (tools/mlstm_kernel_fp32_emulation.py).
  float *row_log_lo, *col_log_lo;
};

// The backward's normaliser terms per position: den = max(|dn|, exp(-m)) + eps,
// inv_den = 1/den, ddn = -sign(dn) gh/den where |dn| > exp(-m) (else 0), the reverse
// scan's weights carry*inv_den and carry*ddn ([BH,S_pad], zero padding), and
// dm_direct = -gh eps/den ([BH,S]).
struct NormaliserTermsParams {
  const float* dn;     // [BH,S]
  const float* gh;     // [BH,S] dh.h
  const float* m_pos;  // [BH,S_pad]
  const float* carry;  // [BH,S_pad]
  float *inv_den, *ddn, *row_w, *vec_w;  // [BH,S_pad]
  float* dm_direct;                      // [BH,S]
  float eps;
  int BH, S, S_pad;
};

bool mlstm_gate_tables_supported(int L, int NC);
void mlstm_gate_tables(const GateTablesParams& p, cudaStream_t stream);
void mlstm_normaliser_terms(const NormaliserTermsParams& p, cudaStream_t stream);
void mlstm_chunk_scan(const ChunkScanParams& p, cudaStream_t stream);
void mlstm_forward_output(const ForwardOutputParams& p, cudaStream_t stream);
void mlstm_backward_chunk(const BackwardChunkParams& p, cudaStream_t stream);
void mlstm_gate_backward(const GateBackwardParams& p, cudaStream_t stream);
// out[r] = sum_c a[r,c] b[r,c] (fp32 accumulation): dh.h per position for the normaliser.
// Tensor-core versions for bf16 inputs (mlstm_mma_*.cu): chunk 64, head dims
// multiples of 8 up to kMaxHeadDim (mlstm_mma_supported). Same parameters.
bool mlstm_mma_supported(int Dk, int Dv);
void mlstm_chunk_scan_mma(const ChunkScanParams& p, cudaStream_t stream);
void mlstm_forward_output_mma(const ForwardOutputParams& p, cudaStream_t stream);
void mlstm_backward_chunk_mma(const BackwardChunkParams& p, cudaStream_t stream);
void mlstm_fused_forward_mma(const FusedForwardParams& p, cudaStream_t stream);
// The same forward on warpgroup tensor cores (sm90a/mlstm_wgmma_forward.cu): needs a
// compute capability 9.0 device and head dims that are multiples of 8 up to kMaxHeadDim
// (mlstm_wgmma_supported, which the wgmma scan below shares); p.overlap_loads is
// ignored (it always prefetches).
bool mlstm_wgmma_supported(int Dk, int Dv);
// The chunk scan on warpgroup tensor cores (sm90a/mlstm_wgmma_scan.cu): the contract of
// mlstm_chunk_scan_mma without split_states, under mlstm_wgmma_supported.
// state_every = G > 1 (a power of two, forward direction): only the states entering
// chunks 0, G, 2G, ... are stored, packed as [BH, ceil(NC/G), Dk, Dv] and [BH, ceil(NC/G),
// Dk] (the checkpoints of the walking wgmma backward, BackwardChunkParams::segment).
void mlstm_chunk_scan_wgmma(const ChunkScanParams& p, cudaStream_t stream, int state_every = 1);
void mlstm_fused_forward_wgmma(const FusedForwardParams& p, cudaStream_t stream);
// The per-chunk gradients on warpgroup tensor cores (sm90a/mlstm_wgmma_backward.cu): the
// contract of mlstm_backward_chunk_mma, under mlstm_wgmma_supported.
void mlstm_backward_chunk_wgmma(const BackwardChunkParams& p, cudaStream_t stream);
void mlstm_row_dot(const void* a, const void* b, DType dtype, float* out, int rows, int cols, cudaStream_t stream);

// The last CUDA error as text ("" when none): the torch side turns it into xd::Error.
const char* last_error_or_null();

}  // namespace xd::kernels
