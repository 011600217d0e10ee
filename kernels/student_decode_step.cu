// The student's decode step after the projections (contract in
// student_decode_step_params.h). Phases (student_decode_step_phases.cuh):
//   1. plain q, k, v into shared memory; RoPE; the gate and output-gate dot products
//   2. Hedgehog feature maps z = x W[h] (rounded to the model dtype as the ATen
//      matmul's output), softmax over the features in fp32
//   3. mLSTM: C = a C + (e k) v^T and n = a n + e k in place, num = qs^T C,
//      den = max(|qs.n|, exp(-m)) + eps, streamed through C in float4 rows
//   4. the token into its ring slot (and sink slot), scores over the visible ring
//      slots and sinks, softmax in fp32, probabilities times values
//   5. o = sigmoid(u.[q, k, v] + c); out = o global + (1 - o) local
// Two kernels run them:
//   one block per (row, head), phases 1-5 in series: the default, checked on a GPU;
//   two blocks per (row, head) (p.split_roles): the mLSTM role does 1-3, the window
//     role 1 and 4, side by side; whichever finishes second does 5. One block in
//     series is latency bound (a chain of dependent loads and barriers); the halves
//     share nothing but q, k, v. Opt-in until a GPU run has shown it gives the same
//     bits as the one-block kernel (InferenceGpu.TwoRoleDecodeStepEqualsOneBlockStep).
// The state is read and written once; the ring is read once; masked ring slots of
// short rows are not read at all. Products and sums whose ATen counterpart rounds
// (bf16 matmul outputs, elementwise ops) are rounded the same way, and fused
// multiply-adds are avoided where ATen computes a product and a sum as two ops.
#include "student_decode_step_params.h"
#include "student_decode_step_phases.cuh"

namespace xd::kernels {
namespace {

using namespace decode_step;

// Phases 1-5 in series.
template <typename T>
__global__ void __launch_bounds__(kThreads) student_decode_step_kernel(StudentDecodeStepParams p) {
  extern __shared__ float smem_base[];
  const Smem s = carve_one_block<T>(smem_base, p);
  const int bh = blockIdx.x, b = bh / p.H, h = bh % p.H, hk = h / (p.H / p.Hk);
  const int tid = threadIdx.x, D = p.D;
  const long long t = p.positions[b];

  load_and_rotate<T>(p, s, b, h, hk);  // phase 1
  const Gates g = mlstm_gates<T>(p, s, b, h, bh);
  feature_maps<T>(p, s, h);                                           // phase 2
  const float global = mlstm_update<T>(p, s, bh, g.a, g.e, g.m_new);  // phase 3
  if (tid == 0) p.m[bh] = g.m_new;  // every thread read m_prev before phase 2's barriers
  const float local = window_attention<T>(p, s, b * p.Hk + hk, t);  // phase 4
  if (tid < D) {                                                    // phase 5
    const float mixed = __fadd_rn(__fmul_rn(g.o, global), __fmul_rn(1.f - g.o, local));
    st(static_cast<T*>(p.out) + b * p.out_sb + (long long)h * D + tid, mixed);
  }
}

// A block's role is the low bit of its index: the two blocks of a (row, head) are
// neighbours in the launch, so they are resident at the same time.
enum Role : int { kMlstmRole = 0, kWindowRole = 1 };
// Blocks per multiprocessor the register budget is set for: 4 x 132 SMs hold the
// 2 B H = 512 blocks of B = 8, H = 32 in one wave (2 per SM would take two).
constexpr int kMinBlocks = 4;

// Each block writes its result row (global or local, already rounded; the mLSTM role
// also o) to float32 scratch, fences, and takes a ticket from the pair's counter; the
// block that draws ticket 1 reads the other row from L2, mixes, writes out and resets
// the counter to 0 for the next launch (the step is replayed from a CUDA graph).
// Nothing waits on the other block, so any schedule completes.
template <typename T>
__global__ void __launch_bounds__(kThreads, kMinBlocks) student_decode_step_two_role_kernel(StudentDecodeStepParams p) {
  extern __shared__ float smem_base[];
  const int role = blockIdx.x & 1, bh = blockIdx.x >> 1;
  const int b = bh / p.H, h = bh % p.H, hk = h / (p.H / p.Hk);
  const int tid = threadIdx.x, D = p.D;
  const Smem s = carve_role<T>(smem_base, p, role == kMlstmRole);

  load_and_rotate<T>(p, s, b, h, hk);  // phase 1 (both roles: 2 D products, cheaper than a wait)
  float o = 0.f, mine;
  if (role == kMlstmRole) {
    const Gates g = mlstm_gates<T>(p, s, b, h, bh);
    feature_maps<T>(p, s, h);                            // phase 2
    mine = mlstm_update<T>(p, s, bh, g.a, g.e, g.m_new);  // phase 3
    if (tid == 0) p.m[bh] = g.m_new;
    o = g.o;
  } else {
    __syncthreads();  // publishes q_rot, k_rot
    mine = window_attention<T>(p, s, b * p.Hk + hk, p.positions[b]);  // phase 4
  }

  // Phase 5 in the second block of the pair to get here. The fence orders this
  // block's scratch writes before its ticket; the fence after the ticket orders the
  // other block's writes (seen through its ticket) before the reads below, which go
  // to L2 (__ldcg) since this SM's L1 is not coherent with the other block's stores.
  const long long BH = (long long)p.B * p.H;
  float* rows = p.scratch;                 // [2, B H, D]: global rows, then local rows
  float* gate_o = p.scratch + 2 * BH * D;  // [B H]
  if (tid < D) rows[(role * BH + bh) * D + tid] = mine;
  if (role == kMlstmRole && tid == 0) gate_o[bh] = o;
  __threadfence();
  __syncthreads();
  bool last = false;
  if (tid == 0) {
    last = atomicAdd(p.counters + bh, 1u) == 1u;
    __threadfence();
  }
  if (!__syncthreads_or(last)) return;
  if (tid == 0) p.counters[bh] = 0;  // both blocks have taken their tickets
  if (tid < D) {
    const float global = role == kMlstmRole ? mine : __ldcg(rows + bh * D + tid);
    const float local = role == kWindowRole ? mine : __ldcg(rows + (BH + bh) * D + tid);
    const float og = role == kMlstmRole ? o : __ldcg(gate_o + bh);
    const float mixed = __fadd_rn(__fmul_rn(og, global), __fmul_rn(1.f - og, local));
    st(static_cast<T*>(p.out) + b * p.out_sb + (long long)h * D + tid, mixed);
  }
}

template <typename T>
int shared_floats(const StudentDecodeStepParams& p) {
  return p.split_roles ? two_block_floats<T>(p.D, p.Dk, p.window, p.sinks)
                       : one_block_floats<T>(p.D, p.Dk, p.window, p.sinks);
}

template <typename T>
void launch(const StudentDecodeStepParams& p, cudaStream_t stream) {
  const size_t bytes = static_cast<size_t>(shared_floats<T>(p)) * sizeof(float);
  if (p.split_roles)
    student_decode_step_two_role_kernel<T><<<2 * p.B * p.H, kThreads, bytes, stream>>>(p);
  else
    student_decode_step_kernel<T><<<p.B * p.H, kThreads, bytes, stream>>>(p);
}

}  // namespace

int student_decode_step_shared_bytes(const StudentDecodeStepParams& p) {
  int floats = 0;
  switch (p.dtype) {
    case DecodeDtype::f32: floats = shared_floats<float>(p); break;
    case DecodeDtype::bf16: floats = shared_floats<__nv_bfloat16>(p); break;
    case DecodeDtype::f16: floats = shared_floats<__half>(p); break;
  }
  return floats * static_cast<int>(sizeof(float));
}

void student_decode_step(const StudentDecodeStepParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DecodeDtype::f32: launch<float>(p, stream); break;
    case DecodeDtype::bf16: launch<__nv_bfloat16>(p, stream); break;
    case DecodeDtype::f16: launch<__half>(p, stream); break;
  }
}

}  // namespace xd::kernels
