#include "xdistill/student/hybrid_mixer.h"

#include <torch/torch.h>

#include "xdistill/student/student_model.h"
#include "xdistill/util/error.h"

namespace xd::student {

HybridMixer::HybridMixer(const models::BlockConfig& block, const at::TensorOptions& options)
    : AttentionMixer(block, options) {
  const StudentConfig config = StudentConfig::from_json(block.mixer_options, "layer " + std::to_string(block.index));
  hybrid = register_module(
      "hybrid", std::make_shared<HybridCore>(block.hidden_size, block.num_heads, block.head_dim, config));
  hybrid->to(options.device(), options.dtype().toScalarType());
}

HybridInputs hybrid_inputs(const at::Tensor& x, const models::AttentionMixer::Qkv& plain,
                           const models::AttentionMixer::Qkv& rotated) {
  HybridInputs in;
  in.x = x;
  in.q = rotated.q;
  in.k = rotated.k;
  in.v = rotated.v;
  in.q_gate = plain.q;
  in.k_gate = plain.k;
  return in;
}

HybridInputs HybridMixer::inputs(const at::Tensor& x, const models::MixerContext& ctx) const {
  const Qkv plain = project_unrotated(x);
  return hybrid_inputs(x, plain, rotate(plain, ctx));
}

at::Tensor HybridMixer::forward_pre_out(const at::Tensor& x, const models::MixerContext& ctx) {
  const HybridInputs in = inputs(x, ctx);
  at::Tensor out;
  if (ctx.state) {
    auto* state = dynamic_cast<HybridMixerState*>(ctx.state);
    XD_CHECK(state != nullptr, "student layer ", block_.index, ": the cache holds another mixer's state");
    out = hybrid->forward_cached(in, state->state);
  } else {
    out = hybrid->forward(in);
  }
  // out is a [B,H,T,Dh] view of a [B,T,H,Dh] tensor: this reshape is free.
  const int64_t B = x.size(0), T = x.size(1);
  return out.transpose(1, 2).reshape({B, T, -1});
}

std::unique_ptr<models::MixerState> HybridMixer::new_state(int64_t, int64_t) {
  return std::make_unique<HybridMixerState>();
}

bool is_new_parameter(const std::string& internal_name) {
  return internal_name.find(".mixer.hybrid.") != std::string::npos;
}

void register_student() {
  models::register_mixer(kHybridMixerName, [](const models::BlockConfig& block, const at::TensorOptions& options) {
    return std::static_pointer_cast<models::Mixer>(std::make_shared<HybridMixer>(block, options));
  });
  models::register_model_type(kStudentModelType, [](const std::string& dir, const nlohmann::json& config,
                                                    const at::Device& device, at::ScalarType dtype) {
    return std::static_pointer_cast<models::LanguageModel>(load_student(dir, config, device, dtype));
  });
}

}  // namespace xd::student
