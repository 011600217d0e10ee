// The mLSTM cell (spec: shared/spec/mlstm.md) as one autograd operator that runs
// on the CPU (ATen reference) or on CUDA (chunkwise kernels in kernels/).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <utility>

namespace xd::ops {

// Recurrent state, stabilised by m: the true C is C * exp(m).
struct MlstmState {
  at::Tensor C;  // [B,H,Dk,Dv] float32 (float64 in oracles)
  at::Tensor n;  // [B,H,Dk]
  at::Tensor m;  // [B,H]
};

// Denominator floor offset of the normaliser: h = q~C / (max(|q~.n|, exp(-m)) + eps).
constexpr double kMlstmEps = 1e-6;

// q,k: [B,H,S,Dk]; v: [B,H,S,Dv]; i,f: [B,H,S] gate pre-activations (float32).
// Returns h [B,H,S,Dv] (dtype of v) and the final state. Differentiable in every
// input and in the initial state. chunk_size: 64 or 128.
std::pair<at::Tensor, MlstmState> mlstm(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        const at::Tensor& i, const at::Tensor& f,
                                        const c10::optional<MlstmState>& initial = c10::nullopt,
                                        int64_t chunk_size = 64);

// One generation step: q,k [B,H,1,Dk], v [B,H,1,Dv], i,f [B,H,1]. Returns h
// [B,H,1,Dv] and the next state. Not differentiable (inference only).
std::pair<at::Tensor, MlstmState> mlstm_step(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                             const at::Tensor& i, const at::Tensor& f, const MlstmState& state);

// A zero state (m = 0) for a batch, on q's device, float32.
MlstmState mlstm_zero_state(int64_t batch, int64_t heads, int64_t dk, int64_t dv, const at::TensorOptions& options);

}  // namespace xd::ops
