// The hybrid block's mix of its two branches (no torch headers), one warp per
// (row, position, head):
//   forward   out = o * global + (1 - o) * local, in float32, rounded once, written in
//             the [B,S,H,Dh] layout W_o reads;
//   backward  d global = grad * o ([B,H,S,Dh], the mLSTM's layout), d local =
//             grad * (1 - o) ([B,S,H,Dh], the window attention's), d o = sum_d grad *
//             (global - local) in float32; each written once, none materialised in float32.
// global and local are [B,H,S,Dh] by element strides (unit last); o is [B,S,H] float32.
#pragma once
#include <cuda_runtime.h>

#include "student_decode_step_params.h"

namespace xd::kernels {

struct HybridMixParams {
  const void* global;
  long long g_sb, g_sh, g_ss;
  const void* local;
  long long l_sb, l_sh, l_ss;
  const float* gate;   // [B,S,H] contiguous
  const void* grad;    // backward: [B,S,H,Dh] contiguous
  void* out;           // forward: [B,S,H,Dh] contiguous
  void* grad_global;   // backward, may be null: [B,H,S,Dh] contiguous
  void* grad_local;    // backward, may be null: [B,S,H,Dh] contiguous
  float* grad_gate;    // backward, may be null: [B,S,H]
  DecodeDtype dtype;
  int B, H, S, D;
};

void hybrid_mix_forward(const HybridMixParams& p, cudaStream_t stream);
void hybrid_mix_backward(const HybridMixParams& p, cudaStream_t stream);

}  // namespace xd::kernels
