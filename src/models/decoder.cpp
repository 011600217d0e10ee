// The layer plan, the decoder block and the decoder.
#include "xdistill/models/decoder.h"

#include "ops/row_kernels.h"

#include "xdistill/models/weight_names.h"
#include "xdistill/util/error.h"

namespace xd::models {

std::vector<BlockConfig> plan_from_config(const ModelConfig& c) {
  std::vector<BlockConfig> plan;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    BlockConfig b;
    b.index = i;
    b.hidden_size = c.hidden_size;
    b.intermediate_size = c.intermediate_size;
    b.num_heads = c.num_heads;
    b.num_kv_heads = c.num_kv_heads;
    b.head_dim = c.head_dim;
    b.sliding_window = c.layers.at(i).sliding_window;
    b.rope = c.layers.at(i).rope;
    b.qk_norm = c.qk_norm;
    b.qkv_bias = c.qkv_bias;
    b.o_bias = c.o_bias;
    b.mlp_bias = c.mlp_bias;
    b.norm_placement = c.norm_placement;
    b.norm_eps = c.rms_norm_eps;
    b.norm_weight_in_fp32 = c.norm_weight_in_fp32;
    b.rope_in_fp32 = c.rope_in_fp32;
    plan.push_back(b);
  }
  return plan;
}

void validate_plan(const std::vector<BlockConfig>& plan, const ModelConfig& c) {
  std::string problems;
  auto problem = [&](int64_t layer, const std::string& what) {
    problems += "\n  layer " + std::to_string(layer) + ": " + what;
  };
  if ((int64_t)plan.size() != c.num_layers)
    problems += "\n  the plan has " + std::to_string(plan.size()) + " layers, the config " + std::to_string(c.num_layers);
  for (size_t i = 0; i < plan.size(); ++i) {
    const BlockConfig& b = plan[i];
    if (b.index != (int64_t)i) problem(i, "index is " + std::to_string(b.index));
    if (b.hidden_size != c.hidden_size) problem(i, "hidden_size " + std::to_string(b.hidden_size) + " != the model's " + std::to_string(c.hidden_size));
    if (b.intermediate_size <= 0 || b.num_heads <= 0 || b.num_kv_heads <= 0 || b.head_dim <= 0)
      problem(i, "intermediate_size, num_heads, num_kv_heads and head_dim must be positive");
    else if (b.num_heads % b.num_kv_heads != 0)
      problem(i, "num_heads " + std::to_string(b.num_heads) + " is not a multiple of num_kv_heads " + std::to_string(b.num_kv_heads));
    if (b.rope < 0 || b.rope >= (int)c.ropes.size()) problem(i, "rope index " + std::to_string(b.rope) + " out of range");
    if (b.sliding_window < 0) problem(i, "sliding_window must be >= 0");
    if (!has_mixer(b.mixer)) problem(i, "mixer '" + b.mixer + "' is not registered");
  }
  if (!problems.empty()) throw Error("invalid layer plan for model_type '" + c.model_type + "':" + problems);
}

// ---------------------------------------------------------------- block

DecoderBlock::DecoderBlock(const BlockConfig& block, std::shared_ptr<Mixer> mixer_, const at::TensorOptions& options)
    : config(block) {
  mixer = register_module("mixer", std::move(mixer_));
  mixer_norm = register_module("mixer_norm", RMSNorm(block.hidden_size, block.norm_eps, block.norm_weight_in_fp32, options));
  mlp_norm = register_module("mlp_norm", RMSNorm(block.hidden_size, block.norm_eps, block.norm_weight_in_fp32, options));
  mlp = register_module("mlp", GatedMlp(block.hidden_size, block.intermediate_size, block.mlp_bias, options));
}

at::Tensor DecoderBlock::forward(const at::Tensor& x, const MixerContext& ctx, ForwardTrace* trace) {
  auto keep = [&](const at::Tensor& t) { return trace->detach ? t.detach() : t; };
  if (trace && trace->collect_layer_inputs) trace->layer_inputs.push_back(keep(x));
  const bool pre = config.norm_placement == NormPlacement::pre;
  const at::Tensor pre_out = mixer->forward_pre_out(pre ? mixer_norm->forward(x) : x, ctx);
  if (trace && trace->collect_mixer_outputs) trace->mixer_outputs.push_back(keep(pre_out));
  return finish(x, pre_out);
}

at::Tensor DecoderBlock::finish(const at::Tensor& x, const at::Tensor& pre_out) {
  const bool pre = config.norm_placement == NormPlacement::pre;
  at::Tensor mixed = mixer->project_out(pre_out);
  if (pre && use_row_kernels(x) && ops::fused_norm_supported(x, mlp_norm->weight) && x.sizes() == mixed.sizes() &&
      x.scalar_type() == mixed.scalar_type()) {
    // Inference: the residual add and the MLP's norm in one pass over the rows.
    const auto [h, normed] = ops::fused_add_rmsnorm(x, mixed, mlp_norm->weight, mlp_norm->eps, mlp_norm->weight_in_fp32);
    return h + mlp->forward(normed);
  }
  if (!pre) mixed = mixer_norm->forward(mixed);
  const at::Tensor h = x + mixed;
  at::Tensor ff = mlp->forward(pre ? mlp_norm->forward(h) : h);
  if (!pre) ff = mlp_norm->forward(ff);
  return h + ff;
}

// ---------------------------------------------------------------- decoder

Decoder::Decoder(ModelConfig config, std::vector<BlockConfig> plan, const at::TensorOptions& options)
    : config_(std::move(config)), plan_(std::move(plan)), options_(options), tie_(config_.tie_word_embeddings) {
  validate_plan(plan_, config_);
  embed = register_parameter("embed", torch::empty({config_.vocab_size, config_.hidden_size}, options));
  if (!tie_) lm_head = register_parameter("lm_head", torch::empty({config_.vocab_size, config_.hidden_size}, options));
  auto layers = register_module("layers", torch::nn::ModuleList());
  for (const BlockConfig& b : plan_) {
    auto block = std::make_shared<DecoderBlock>(b, make_mixer(b, options), options);
    layers->push_back(block);
    blocks_.push_back(block);
  }
  final_norm = register_module(
      "final_norm", RMSNorm(config_.hidden_size, config_.rms_norm_eps, config_.norm_weight_in_fp32, options));
  for (const RopeConfig& rope : config_.ropes)
    rotaries_.push_back(std::make_shared<Rotary>(rope, config_.head_dim, options.device()));
}

MixerContext Decoder::context(int64_t layer, int64_t start, MixerState* state) const {
  MixerContext ctx;
  ctx.start = start;
  ctx.state = state;
  ctx.rotary = rotaries_.at(plan_.at(layer).rope).get();
  return ctx;
}

at::Tensor Decoder::hidden_states(const at::Tensor& ids_in, Cache* cache, ForwardTrace* trace) {
  XD_CHECK(ids_in.dim() == 2, "model input ids must be [batch, tokens], got ", ids_in.dim(), " dimensions");
  XD_CHECK(ids_in.size(1) > 0, "model input ids are empty");
  const at::Tensor ids = ids_in.to(device(), at::kLong);
  DecoderCache* dc = nullptr;
  if (cache) {
    dc = dynamic_cast<DecoderCache*>(cache);
    XD_CHECK(dc && dc->layers.size() == blocks_.size(), "the cache was not made by this model");
    XD_CHECK(cache->batch() == ids.size(0), "the cache holds ", cache->batch(), " rows, the input ", ids.size(0));
  }
  const int64_t start = cache ? cache->length() : 0;
  at::Tensor x = at::embedding(embed, ids);
  for (size_t i = 0; i < blocks_.size(); ++i)
    x = blocks_[i]->forward(x, context(i, start, dc ? dc->layers[i].get() : nullptr), trace);
  if (cache) cache->advance(ids.size(1));
  return final_norm->forward(x);
}

at::Tensor Decoder::logits(const at::Tensor& hidden) const {
  return at::linear(hidden, lm_head_weight()).to(at::kFloat);
}

at::Tensor Decoder::forward(const at::Tensor& ids, Cache* cache, ForwardTrace* trace) {
  return logits(hidden_states(ids, cache, trace));
}

at::Tensor Decoder::next_token_logits(const at::Tensor& ids, Cache* cache) {
  return logits(hidden_states(ids, cache).select(1, -1));
}

std::unique_ptr<Cache> Decoder::new_cache(int64_t batch, int64_t capacity) {
  std::vector<std::unique_ptr<MixerState>> layers;
  for (const auto& block : blocks_) layers.push_back(block->mixer->new_state(batch, capacity));
  return std::make_unique<DecoderCache>(batch, std::move(layers));
}

nlohmann::json Decoder::config_json() const {
  nlohmann::json j = config_.raw;
  const at::ScalarType t = dtype();
  j["dtype"] = t == at::kBFloat16 ? "bfloat16" : t == at::kHalf ? "float16" : "float32";
  j.erase("torch_dtype");
  j["tie_word_embeddings"] = tie_;
  return j;
}

std::vector<std::pair<std::string, at::Tensor>> Decoder::export_tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : named_parameters(/*recurse=*/true))
    out.emplace_back(to_hf_name(item.key(), config_.norm_placement), item.value());
  return out;
}

}  // namespace xd::models
