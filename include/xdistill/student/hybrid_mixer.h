// The student's sequence mixer (method.md §2): the teacher's attention projections,
// q/k norms and RoPE (inherited from AttentionMixer, weights copied from the
// teacher), then the hybrid core (KV heads as the teacher has them): mLSTM
// (global) and sliding window + sinks (local), mixed per head by an output gate.
// Its new parameters live in the sub-module "hybrid", so they are saved as
// model.layers.N.self_attn.hybrid.* and are told apart from copied ones by name.
#pragma once
#include "xdistill/models/decoder.h"
#include "xdistill/student/hybrid_core.h"
#include "xdistill/student/register.h"

namespace xd::student {

// The mixer name in layer plans.
constexpr const char* kHybridMixerName = "xlstm_hybrid";

class HybridMixer : public models::AttentionMixer {
 public:
  HybridMixer(const models::BlockConfig& block, const at::TensorOptions& options);

  at::Tensor forward_pre_out(const at::Tensor& x, const models::MixerContext& ctx) override;
  std::unique_ptr<models::MixerState> new_state(int64_t batch, int64_t capacity) override;

  // The core's inputs for a mixer input x: projections, norms, RoPE.
  HybridInputs inputs(const at::Tensor& x, const models::MixerContext& ctx) const;

  std::shared_ptr<HybridCore> hybrid;
};

// The core's inputs from a mixer input x and its projections before and after RoPE
// (AttentionMixer::project_unrotated and rotate; Stage I passes the teacher's own).
HybridInputs hybrid_inputs(const at::Tensor& x, const models::AttentionMixer::Qkv& plain,
                           const models::AttentionMixer::Qkv& rotated);

struct HybridMixerState : models::MixerState {
  HybridState state;
};

// Whether an internal parameter name belongs to a hybrid core (a new parameter).
bool is_new_parameter(const std::string& internal_name);


}  // namespace xd::student
