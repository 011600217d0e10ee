// ONE decoder for every family, built from a per-layer plan. Each layer's sequence
// mixer is pluggable: the teacher's is AttentionMixer; the student registers its own
// (e.g. a hybrid mLSTM + sliding-window mixer that subclasses AttentionMixer to reuse
// its projections, q/k norms and RoPE).
//
// Block layout (x is the residual stream):
//   pre-norm  (Llama, Qwen):  x = x + W_o mix(norm(x));   x = x + mlp(norm(x))
//   post-norm (OLMo-2/3):     x = x + norm(W_o mix(x));   x = x + norm(mlp(x))
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "xdistill/models/blocks.h"
#include "xdistill/models/language_model.h"
#include "xdistill/models/model_config.h"

namespace xd::models {

// One layer of the plan. Made by plan_from_config, edited by a student's planner.
struct BlockConfig {
  int64_t index = 0;
  std::string mixer = "attention";  // a name registered with register_mixer
  int64_t hidden_size = 0, intermediate_size = 0;
  // Attention geometry (also what a student mixer initialises from).
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int64_t sliding_window = 0;  // 0 = full causal
  int rope = 0;                // index into ModelConfig::ropes
  QkNorm qk_norm = QkNorm::none;
  bool qkv_bias = false, o_bias = false, mlp_bias = false;
  NormPlacement norm_placement = NormPlacement::pre;
  double norm_eps = 1e-6;
  bool norm_weight_in_fp32 = false, rope_in_fp32 = false;
  nlohmann::json mixer_options = nlohmann::json::object();  // settings of non-attention mixers
};

// The teacher's plan: every layer an attention mixer with the family's options.
std::vector<BlockConfig> plan_from_config(const ModelConfig& config);
// Checks a plan against the config (sizes, head counts, rope indices, known mixers);
// throws one xd::Error naming the layer and the field.
void validate_plan(const std::vector<BlockConfig>& plan, const ModelConfig& config);

// A mixer's per-layer decoding state (KV cache, recurrent state, ...).
struct MixerState {
  virtual ~MixerState() = default;
};

// The attention KV cache of one layer: preallocated [B, kv_heads, capacity, D]
// tensors that grow (doubling) when full.
struct KvState : MixerState {
  at::Tensor k, v;
  int64_t length = 0;
  // Appends k/v [B, kv_heads, T, D]; returns views of all cached keys and values.
  std::pair<at::Tensor, at::Tensor> append(const at::Tensor& k_new, const at::Tensor& v_new);
};

// What a mixer needs besides its input.
struct MixerContext {
  int64_t start = 0;            // position of the first token of x (the cache's length)
  MixerState* state = nullptr;  // this layer's decoding state; null for a plain forward
  const Rotary* rotary = nullptr;
};

class Mixer : public torch::nn::Module {
 public:
  // x: [B, T, hidden] (normalised for pre-norm blocks). Returns the mixer's output
  // before its output projection: [B, T, heads * head_dim].
  virtual at::Tensor forward_pre_out(const at::Tensor& x, const MixerContext& ctx) = 0;
  // The output projection W_o: [B, T, heads * head_dim] -> [B, T, hidden].
  virtual at::Tensor project_out(const at::Tensor& pre_out) = 0;
  at::Tensor forward(const at::Tensor& x, const MixerContext& ctx) { return project_out(forward_pre_out(x, ctx)); }
  // Fresh decoding state for `batch` rows.
  virtual std::unique_ptr<MixerState> new_state(int64_t batch, int64_t capacity) = 0;
};

// Multi-head attention with GQA, optional q/k/v/o biases, optional q/k RMSNorm
// (per head or over the full projection), RoPE and an optional sliding window,
// through scaled-dot-product attention (fused kernels on the GPU).
class AttentionMixer : public Mixer {
 public:
  AttentionMixer(const BlockConfig& block, const at::TensorOptions& options);

  struct Qkv {
    at::Tensor q, k, v;  // q [B, heads, T, D]; k, v [B, kv_heads, T, D]; q and k rotated
  };
  // The projections, q/k norms and RoPE, as the teacher computes them.
  Qkv project_qkv(const at::Tensor& x, const MixerContext& ctx) const { return rotate(project_unrotated(x), ctx); }
  // The same in two steps, for mixers that also need q and k before RoPE:
  // projections and q/k norms, heads split ([B, heads, T, D]), not rotated ...
  Qkv project_unrotated(const at::Tensor& x) const;
  // ... then RoPE on q and k for positions ctx.start.. (v passes through).
  Qkv rotate(const Qkv& unrotated, const MixerContext& ctx) const;
  // softmax attention of q over k/v, causal (and windowed) for queries at positions
  // q_start.. and keys ending at the same last position. Returns [B, T, heads * D].
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t q_start) const;

  at::Tensor forward_pre_out(const at::Tensor& x, const MixerContext& ctx) override;
  at::Tensor project_out(const at::Tensor& pre_out) override { return o_proj->forward(pre_out); }
  std::unique_ptr<MixerState> new_state(int64_t batch, int64_t capacity) override;

  const BlockConfig& block() const { return block_; }

  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // null when the family has none

 protected:
  BlockConfig block_;
  at::TensorOptions options_;
};

// Builds the mixer of a block: (block, options) -> mixer.
using MixerFactory = std::function<std::shared_ptr<Mixer>(const BlockConfig&, const at::TensorOptions&)>;
// "attention" is built in. As with register_model_type, call from code that runs.
void register_mixer(const std::string& name, MixerFactory factory);
bool has_mixer(const std::string& name);
// The registered factory's mixer for block.mixer; throws xd::Error listing the known names.
std::shared_ptr<Mixer> make_mixer(const BlockConfig& block, const at::TensorOptions& options);

class DecoderBlock : public torch::nn::Module {
 public:
  DecoderBlock(const BlockConfig& block, std::shared_ptr<Mixer> mixer, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, const MixerContext& ctx, ForwardTrace* trace);
  // The block after its mixer: x + W_o pre_out (normed after for post-norm), then the
  // MLP with its residual. For callers that run the mixer themselves (decoding, Stage I).
  at::Tensor finish(const at::Tensor& x, const at::Tensor& pre_out);

  BlockConfig config;
  std::shared_ptr<Mixer> mixer;
  RMSNorm mixer_norm{nullptr}, mlp_norm{nullptr};
  GatedMlp mlp{nullptr};
};

class Decoder : public LanguageModel {
 public:
  // Builds the layers with uninitialised parameters; load weights into them after.
  Decoder(ModelConfig config, std::vector<BlockConfig> plan, const at::TensorOptions& options);

  at::Tensor forward(const at::Tensor& ids, Cache* cache = nullptr, ForwardTrace* trace = nullptr) override;
  at::Tensor next_token_logits(const at::Tensor& ids, Cache* cache) override;
  std::unique_ptr<Cache> new_cache(int64_t batch, int64_t capacity = 0) override;

  // The final hidden states (after the final norm), [B, T, hidden] in the model dtype.
  at::Tensor hidden_states(const at::Tensor& ids, Cache* cache = nullptr, ForwardTrace* trace = nullptr);
  // hidden [.., hidden] -> float32 logits [.., vocab] (computed in the model dtype, as HF).
  at::Tensor logits(const at::Tensor& hidden) const;
  const at::Tensor& lm_head_weight() const { return tie_ ? embed : lm_head; }

  // The context a mixer of layer `layer` needs for positions start.. (Stage I
  // trainers call a mixer directly with the teacher's layer inputs).
  MixerContext context(int64_t layer, int64_t start, MixerState* state = nullptr) const;

  const ModelConfig& config() const override { return config_; }
  nlohmann::json config_json() const override;
  std::vector<std::pair<std::string, at::Tensor>> export_tensors() const override;
  at::Device device() const override { return options_.device(); }
  at::ScalarType dtype() const override { return c10::typeMetaToScalarType(options_.dtype()); }

  const std::vector<BlockConfig>& plan() const { return plan_; }
  const std::vector<std::shared_ptr<DecoderBlock>>& blocks() const { return blocks_; }

  at::Tensor embed, lm_head;  // lm_head undefined when tied to embed
  RMSNorm final_norm{nullptr};

 private:
  ModelConfig config_;
  std::vector<BlockConfig> plan_;
  at::TensorOptions options_;
  bool tie_ = false;
  std::vector<std::shared_ptr<DecoderBlock>> blocks_;
  std::vector<std::shared_ptr<Rotary>> rotaries_;  // one per ModelConfig::ropes entry
};

// The Decoder's cache: one MixerState per layer.
class DecoderCache : public Cache {
 public:
  DecoderCache(int64_t batch, std::vector<std::unique_ptr<MixerState>> layers)
      : Cache(batch), layers(std::move(layers)) {}
  std::vector<std::unique_ptr<MixerState>> layers;
};

// Loads a teacher directory (config.json + safetensors) into a Decoder: refines the
// config from the weights present (biases, q/k-norm shape), then fills every
// parameter, reporting all missing, unexpected and mis-shaped tensors in one error.
std::shared_ptr<Decoder> load_decoder(const std::string& dir, const at::Device& device, at::ScalarType dtype);
// Same, for a model already built (e.g. a student initialised from a teacher
// checkpoint: its new parameters are absent there, so let them be missing).
struct LoadOptions {
  bool allow_unexpected = false;  // tensors of the checkpoint that the model lacks
  // Parameters (internal names, e.g. "layers.3.mixer.feature_q") that may be absent
  // from the checkpoint; they keep their current values.
  std::function<bool(const std::string& internal_name)> may_be_missing;
};
void load_weights(Decoder& model, const std::string& dir, const LoadOptions& options = {});

}  // namespace xd::models
