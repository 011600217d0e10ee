// One decode step of the student's hybrid mixer for every (row, head), after the
// q/k/v projections (no torch headers): RoPE at each row's position, Hedgehog
// feature maps, input/forget gates, the mLSTM state update and readout, the window
// ring + sinks write and attention, the output gate and the mix. Math and rounding
// follow DecodeState's ATen step (src/infer/decode_state.cpp): every tensor that
// the ATen step materialises in the model dtype is rounded to it here too.
//   q:      [B, .., H*D] plain (unrotated) queries, row b at q + b*q_sb
//   k, v:   [B, .., Hk*D] plain keys and values (query head h reads KV head h/(H/Hk))
//   x:      [B, .., hidden] the mixer input (the gates' input)
//   cos, sin [B, D] float32 (attention scaling applied); positions [B] int64
//   C [B,H,Dk,D], n [B,H,Dk], m [B,H] float32, updated in place
//   ring_k/v [B,Hk,window,D], sink_k/v [B,Hk,sinks+1,D] (slot `sinks` is scratch): one
//            ring per key/value head; the H/Hk blocks of a group write the same token
//            to it (the same bytes) before reading it
//   out:    [B, .., H*D] row b at out + b*out_sb
//   split_roles: two blocks per (row, head) (the mLSTM half and the window half), which
//            hand over through scratch [2*B*H*D + B*H] float32 (contents need not
//            survive between launches) and counters [B*H] (zero before the first
//            launch; every launch leaves them zero). Unused with one block.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace xd::kernels {

enum class DecodeDtype { f32 = 0, bf16 = 1, f16 = 2 };

struct StudentDecodeStepParams {
  const void* q;
  const void* k;
  const void* v;
  const void* x;
  long long q_sb, k_sb, v_sb, x_sb, out_sb;  // row strides (elements)
  const float* cos;
  const float* sin;
  const int64_t* positions;
  const void* feature_q;  // [H, D, Df] model dtype
  const void* feature_k;
  const float* gate_w;    // [2H, hidden]: input-gate rows, then forget-gate rows
  const float* gate_b;    // [2H]
  const void* ogate_u;    // [H, 3D] model dtype: weights on [q_plain, k_plain, v]
  const float* ogate_b;   // [H]
  float* C;
  float* n;
  float* m;
  void* ring_k;
  void* ring_v;
  void* sink_k;
  void* sink_v;
  void* out;
  DecodeDtype dtype;
  int B, H, Hk, D, Df, Dk, hidden, window, sinks;
  bool pm_features;   // "hedgehog_pm": phi = [softmax(z), softmax(-z)], Dk = 2 Df
  bool rope_in_fp32;  // RoPE in float32, rounded once (OLMo); else in the model dtype
  float gate_softcap; // a * tanh(z / a) on the gate pre-activations when > 0
  float inv_sqrt_dk;  // 1 / sqrt(Dk) (the query scale of the readout)
  float scale;        // 1 / sqrt(D) (window attention)
  float eps;          // the readout's epsilon
  // Last, so the fields the one-block kernel reads keep their offsets (moving them
  // changed that kernel's register allocation).
  bool split_roles;
  float* scratch;          // split_roles: student_decode_step_scratch_floats(B, H, D)
  unsigned int* counters;  // split_roles: [B*H]
};

// Limits of the kernel (the caller falls back to ATen outside them).
constexpr int kDecodeMaxHeadDim = 128;     // D: a multiple of 32, at most this
constexpr int kDecodeMaxFeatureDim = 256;  // Df and Dk
constexpr int kDecodeMaxSharedBytes = 48 * 1024;

// Floats of the two-role kernel's scratch: one global and one local row per (row,
// head), and o.
inline long long student_decode_step_scratch_floats(int B, int H, int D) {
  return static_cast<long long>(B) * H * (2LL * D + 1);
}
// Dynamic shared memory the launch needs (the caller checks it against the limit).
int student_decode_step_shared_bytes(const StudentDecodeStepParams& p);
void student_decode_step(const StudentDecodeStepParams& p, cudaStream_t stream);

}  // namespace xd::kernels
