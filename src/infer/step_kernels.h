// Internal: the torch side of the decode-step kernels (kernels/student_decode_step.cu,
// kernels/decode_norm_mlp.cu): checks of what each kernel covers, and launches on
// the current CUDA stream. In builds without CUDA nothing is supported and the
// launchers are never reached (the caller keeps its ATen path).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace xd::infer {

// The student mixer's per-layer constants and state, as DecodeState keeps them.
struct FusedMixerLayer {
  at::Tensor feature_q, feature_k;  // [H, D, Df] model dtype, contiguous
  at::Tensor gate_w, gate_b;        // [2H, hidden], [2H] float32
  at::Tensor ogate_u, ogate_b;      // [H, 3D] model dtype, [H] float32 (contiguous storage)
  at::Tensor C, n, m, ring_k, ring_v, sink_k, sink_v;
  int64_t heads = 0, kv_heads = 0, head_dim = 0, feature_dim = 0, key_dim = 0;
  int64_t window = 0, sinks = 0;
  bool pm_features = false, rope_in_fp32 = false;
  double gate_softcap = 0, eps = 0;
  // The two-role kernel (two blocks per row and head; the default since it gave the
  // one-block kernel's bits on an H100 and 2 % more decode tokens/s, 2026-12-07;
  // XD_DECODE_STEP=one_block for the other) and its hand-over buffers, made once for
  // the batch by prepare_fused_mixer_step.
  bool two_role = false;
  at::Tensor step_scratch, step_counters;
};

// Whether the fused mixer step covers this layer on `like`'s device and dtype
// (CUDA build, CUDA tensor, f32/bf16/f16, head and feature dims, shared memory).
bool fused_mixer_step_supported(const FusedMixerLayer& layer, const at::Tensor& like);
// Picks the kernel for a supported layer and makes what it needs for `batch` rows,
// before any step (and so before a CUDA graph captures one).
void prepare_fused_mixer_step(FusedMixerLayer& layer, int64_t batch);
// q [B,1,H*D], k, v [B,1,Hk*D] (plain projections; rows may be strided views of one
// fused projection), x [B,1,hidden], cos/sin [B,D] float32, positions [B] int64.
// Updates the layer's state in place and returns the mixed output [B,1,H*D].
at::Tensor fused_mixer_step(FusedMixerLayer& layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                            const at::Tensor& positions);

// RMSNorm, SiLU * up and RoPE: src/ops/row_kernels.h.

}  // namespace xd::infer
