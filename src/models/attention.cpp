// The blocks (linear, RMSNorm, MLP, RoPE) and the attention mixer. Every numeric
// step follows the op order of HF transformers' modeling_llama / modeling_olmo2 /
// modeling_rope_utils, op for op, so that fp32 results agree to rounding.
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>

#include <c10/core/GradMode.h>

#include "ops/row_kernels.h"
#include "xdistill/models/decoder.h"
#include "xdistill/util/error.h"

namespace xd::models {

bool use_row_kernels(const at::Tensor& x) {
  // Checked once: XDISTILL_FUSED_STEP=0 keeps every forward on ATen operations.
  static const bool switched_off = [] {
    const char* v = std::getenv("XDISTILL_FUSED_STEP");
    return v != nullptr && std::string(v) == "0";
  }();
  return x.is_cuda() && !c10::GradMode::is_enabled() && !switched_off;
}

// ---------------------------------------------------------------- blocks

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool with_bias, const at::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}, options));
  if (with_bias) bias = register_parameter("bias", torch::empty({out_features}, options));
}

RMSNormImpl::RMSNormImpl(int64_t size, double eps_, bool weight_in_fp32_, const at::TensorOptions& options)
    : eps(eps_), weight_in_fp32(weight_in_fp32_) {
  weight = register_parameter("weight", torch::ones({size}, options));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) const {
  if (use_row_kernels(x) && ops::fused_norm_supported(x, weight))
    return ops::fused_rmsnorm(x, weight, eps, weight_in_fp32);
  if (x.is_cuda() && c10::GradMode::is_enabled() && ops::fused_norm_grad_supported(x, weight))
    return ops::rmsnorm_with_grad(x, weight, eps, weight_in_fp32);  // training: one kernel each way
  const auto input_dtype = x.scalar_type();
  at::Tensor h = x.to(at::kFloat);
  const at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  if (weight_in_fp32) return (weight * h).to(input_dtype);
  return weight * h.to(input_dtype);
}

GatedMlpImpl::GatedMlpImpl(int64_t hidden, int64_t intermediate, bool bias, const at::TensorOptions& options) {
  gate_proj = register_module("gate_proj", Linear(hidden, intermediate, bias, options));
  up_proj = register_module("up_proj", Linear(hidden, intermediate, bias, options));
  down_proj = register_module("down_proj", Linear(intermediate, hidden, bias, options));
}

at::Tensor GatedMlpImpl::forward(const at::Tensor& x) const {
  const at::Tensor gate = gate_proj->forward(x), up = up_proj->forward(x);
  if (use_row_kernels(x) && ops::fused_silu_mul_supported(gate, up))
    return down_proj->forward(ops::fused_silu_mul(gate, up));
  if (x.is_cuda() && c10::GradMode::is_enabled() && ops::fused_silu_mul_grad_supported(gate, up))
    return down_proj->forward(ops::silu_mul_with_grad(gate, up));  // training: one kernel each way
  return down_proj->forward(at::silu(gate) * up);
}

// ---------------------------------------------------------------- RoPE

namespace {

// 1 / base^(2i/dim), as HF's `1.0 / (base ** (arange(0, dim, 2).float() / dim))`
// (Python's `1.0 / t` is `t.reciprocal() * 1.0`).
at::Tensor base_inverse_frequencies(double base, int64_t dim) {
  const at::Tensor exponents = at::arange(0, dim, 2, at::kFloat) / static_cast<double>(dim);
  return at::reciprocal(at::pow(at::Scalar(base), exponents));
}

// Llama 3.1: scale low frequencies by 1/factor, keep high ones, blend in between.
at::Tensor llama3_frequencies(const RopeConfig& r, at::Tensor inv_freq) {
  const double old_len = static_cast<double>(r.original_max_position);
  const double low_freq_wavelen = old_len / r.low_freq_factor;
  const double high_freq_wavelen = old_len / r.high_freq_factor;
  const at::Tensor wavelen = at::reciprocal(inv_freq) * (2 * M_PI);
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / r.factor, inv_freq);
  const at::Tensor smooth =
      (at::reciprocal(wavelen) * old_len - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
  const at::Tensor smoothed = at::rsub(smooth, 1) * scaled / r.factor + smooth * scaled;
  const at::Tensor medium = at::logical_not(wavelen < high_freq_wavelen) * at::logical_not(wavelen > low_freq_wavelen);
  return at::where(medium, smoothed, scaled);
}

double yarn_mscale(double scale, double mscale = 1.0) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

// YaRN (arXiv 2309.00071): interpolate low frequencies, extrapolate high ones, with
// a linear ramp between the correction dimensions; cos/sin scaled by mscale.
std::pair<at::Tensor, double> yarn_frequencies(const RopeConfig& r, int64_t dim) {
  const double base = r.theta, factor = r.factor;
  double attention_factor;
  if (r.attention_factor) attention_factor = *r.attention_factor;
  else if (r.mscale && r.mscale_all_dim && *r.mscale != 0 && *r.mscale_all_dim != 0)
    attention_factor = yarn_mscale(factor, *r.mscale) / yarn_mscale(factor, *r.mscale_all_dim);
  else attention_factor = yarn_mscale(factor);

  auto correction_dim = [&](double rotations) {
    return (dim * std::log(double(r.original_max_position) / (rotations * 2 * M_PI))) / (2 * std::log(base));
  };
  double low = correction_dim(r.beta_fast), high = correction_dim(r.beta_slow);
  if (r.truncate) low = std::floor(low), high = std::ceil(high);
  low = std::max(low, 0.0);
  high = std::min(high, double(dim - 1));
  if (low == high) high += 0.001;  // HF: prevent a singular ramp

  const at::Tensor pos_freqs = at::pow(at::Scalar(base), at::arange(0, dim, 2, at::kFloat) / static_cast<double>(dim));
  const at::Tensor extrapolation = at::reciprocal(pos_freqs);
  const at::Tensor interpolation = at::reciprocal(pos_freqs * factor);
  const at::Tensor ramp = at::clamp((at::arange(dim / 2, at::kFloat) - low) / (high - low), 0, 1);
  const at::Tensor extrapolation_factor = at::rsub(ramp, 1);
  const at::Tensor inv_freq =
      interpolation * at::rsub(extrapolation_factor, 1) + extrapolation * extrapolation_factor;
  return {inv_freq, attention_factor};
}

}  // namespace

std::pair<at::Tensor, double> rope_inverse_frequencies(const RopeConfig& r, int64_t head_dim) {
  at::NoGradGuard no_grad;
  if (r.type == "default") return {base_inverse_frequencies(r.theta, head_dim), 1.0};
  if (r.type == "linear") return {base_inverse_frequencies(r.theta, head_dim) / r.factor, 1.0};
  if (r.type == "llama3") return {llama3_frequencies(r, base_inverse_frequencies(r.theta, head_dim)), 1.0};
  if (r.type == "yarn") return yarn_frequencies(r, head_dim);
  throw Error("rope_type '" + r.type + "' is not supported; supported: default, linear, llama3, yarn");
}

Rotary::Rotary(const RopeConfig& rope, int64_t head_dim, const at::Device& device) {
  auto [inv_freq, scaling] = rope_inverse_frequencies(rope, head_dim);
  inv_freq_ = inv_freq.to(device);
  attention_scaling_ = scaling;
}

std::pair<at::Tensor, at::Tensor> Rotary::cos_sin(int64_t start, int64_t length) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (start == cached_start_ && length == cached_length_) return {cached_cos_, cached_sin_};
  at::NoGradGuard no_grad;
  const at::Tensor positions = at::arange(start, start + length, inv_freq_.options());
  const at::Tensor freqs = positions.unsqueeze(1) * inv_freq_.unsqueeze(0);  // [T, D/2], as HF's K=1 matmul
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  cached_cos_ = emb.cos() * attention_scaling_;
  cached_sin_ = emb.sin() * attention_scaling_;
  cached_start_ = start;
  cached_length_ = length;
  return {cached_cos_, cached_sin_};
}

at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool in_fp32) {
  // The RoPE row kernel by default since InferenceGpu.RowKernelsEqualTheirAtenOperations
  // passed on an H100 (2026-12-07); XD_ROPE_KERNEL=0 takes the ATen operations. Read per
  // call so a test can switch it.
  const char* rope_kernel = std::getenv("XD_ROPE_KERNEL");
  const bool rope_off = rope_kernel != nullptr && std::string(rope_kernel) == "0";
  if (!rope_off && use_row_kernels(x) && ops::fused_rope_supported(x, cos, sin))
    return ops::fused_rope(x, cos, sin, in_fp32);
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  if (in_fp32) return (x * cos + rotated * sin).to(x.scalar_type());
  const at::Tensor c = cos.to(x.scalar_type()), s = sin.to(x.scalar_type());
  return x * c + rotated * s;
}

// ---------------------------------------------------------------- KV cache

std::pair<at::Tensor, at::Tensor> KvState::append(const at::Tensor& k_new, const at::Tensor& v_new) {
  const int64_t t = k_new.size(2);
  if (!k.defined() || length + t > k.size(2)) {
    // Grow by doubling (at least to fit), copying what is cached.
    const int64_t old_capacity = k.defined() ? k.size(2) : 0;
    const int64_t capacity = std::max<int64_t>(std::max<int64_t>(2 * old_capacity, length + t), 16);
    auto shape = k_new.sizes().vec();
    shape[2] = capacity;
    at::Tensor k_grown = at::empty(shape, k_new.options()), v_grown = at::empty(shape, v_new.options());
    if (length > 0) {
      k_grown.narrow(2, 0, length).copy_(k.narrow(2, 0, length));
      v_grown.narrow(2, 0, length).copy_(v.narrow(2, 0, length));
    }
    k = k_grown, v = v_grown;
  }
  k.narrow(2, length, t).copy_(k_new);
  v.narrow(2, length, t).copy_(v_new);
  length += t;
  return {k.narrow(2, 0, length), v.narrow(2, 0, length)};
}

// ---------------------------------------------------------------- attention

AttentionMixer::AttentionMixer(const BlockConfig& block, const at::TensorOptions& options)
    : block_(block), options_(options) {
  const int64_t hidden = block.hidden_size, q_size = block.num_heads * block.head_dim,
                kv_size = block.num_kv_heads * block.head_dim;
  q_proj = register_module("q_proj", Linear(hidden, q_size, block.qkv_bias, options));
  k_proj = register_module("k_proj", Linear(hidden, kv_size, block.qkv_bias, options));
  v_proj = register_module("v_proj", Linear(hidden, kv_size, block.qkv_bias, options));
  o_proj = register_module("o_proj", Linear(q_size, hidden, block.o_bias, options));
  if (block.qk_norm == QkNorm::per_head) {
    q_norm = register_module("q_norm", RMSNorm(block.head_dim, block.norm_eps, block.norm_weight_in_fp32, options));
    k_norm = register_module("k_norm", RMSNorm(block.head_dim, block.norm_eps, block.norm_weight_in_fp32, options));
  } else if (block.qk_norm == QkNorm::full) {
    q_norm = register_module("q_norm", RMSNorm(q_size, block.norm_eps, block.norm_weight_in_fp32, options));
    k_norm = register_module("k_norm", RMSNorm(kv_size, block.norm_eps, block.norm_weight_in_fp32, options));
  }
}

AttentionMixer::Qkv AttentionMixer::project_unrotated(const at::Tensor& x) const {
  const int64_t B = x.size(0), T = x.size(1), D = block_.head_dim;
  at::Tensor q = q_proj->forward(x), k = k_proj->forward(x), v = v_proj->forward(x);
  if (block_.qk_norm == QkNorm::full) {  // OLMo: over the whole projection, before splitting heads
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  q = q.view({B, T, -1, D});
  k = k.view({B, T, -1, D});
  if (block_.qk_norm == QkNorm::per_head) {  // Qwen3: per head, over head_dim
    q = q_norm->forward(q);
    k = k_norm->forward(k);
  }
  return {q.transpose(1, 2), k.transpose(1, 2), v.view({B, T, -1, D}).transpose(1, 2)};
}

AttentionMixer::Qkv AttentionMixer::rotate(const Qkv& in, const MixerContext& ctx) const {
  XD_CHECK(ctx.rotary != nullptr, "attention layer ", block_.index, ": no RoPE table in the mixer context");
  auto [cos, sin] = ctx.rotary->cos_sin(ctx.start, in.q.size(2));
  return {apply_rotary(in.q, cos, sin, block_.rope_in_fp32), apply_rotary(in.k, cos, sin, block_.rope_in_fp32), in.v};
}

at::Tensor AttentionMixer::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  int64_t q_start) const {
  const int64_t B = q.size(0), T = q.size(2), L = k.size(2), window = block_.sliding_window;
  const int64_t last = q_start + T;  // keys cover positions last-L .. last-1
  const double scale = 1.0 / std::sqrt(static_cast<double>(block_.head_dim));
  const bool window_bites = window > 0 && L > window;
  std::optional<at::Tensor> mask;
  bool causal = false;
  if (T == L && !window_bites) {
    causal = T > 1;
  } else if (T > 1 || window_bites) {
    // Query position p sees key position j iff j <= p and (no window or p - j < window).
    const at::Tensor qpos = at::arange(q_start, last, q.options().dtype(at::kLong)).unsqueeze(1);
    const at::Tensor kpos = at::arange(last - L, last, q.options().dtype(at::kLong)).unsqueeze(0);
    at::Tensor visible = kpos <= qpos;
    if (window > 0) visible = visible.logical_and(qpos - kpos < window);
    mask = visible;
  }
  at::Tensor key = k, value = v;
  const int64_t groups = q.size(1) / k.size(1);
  bool gqa = false;
  if (groups > 1) {
    // As HF: the fused kernels take grouped K/V only without a mask; with one,
    // expand K/V to the query heads.
    if (mask) {
      key = k.repeat_interleave(groups, 1);
      value = v.repeat_interleave(groups, 1);
    } else {
      gqa = true;
    }
  }
  const at::Tensor out = at::scaled_dot_product_attention(q, key, value, mask, 0.0, causal, scale, gqa);
  return out.transpose(1, 2).reshape({B, T, -1});
}

at::Tensor AttentionMixer::forward_pre_out(const at::Tensor& x, const MixerContext& ctx) {
  Qkv qkv = project_qkv(x, ctx);
  at::Tensor k = qkv.k, v = qkv.v;
  if (ctx.state) {
    auto* kv = dynamic_cast<KvState*>(ctx.state);
    XD_CHECK(kv != nullptr, "attention layer ", block_.index, ": the cache holds another mixer's state");
    std::tie(k, v) = kv->append(k, v);
  }
  return attend(qkv.q, k, v, ctx.start);
}

std::unique_ptr<MixerState> AttentionMixer::new_state(int64_t batch, int64_t capacity) {
  auto state = std::make_unique<KvState>();
  if (capacity > 0) {
    state->k = at::empty({batch, block_.num_kv_heads, capacity, block_.head_dim}, options_);
    state->v = at::empty_like(state->k);
  }
  return state;
}

// ---------------------------------------------------------------- mixer registry

namespace {
std::mutex& mixer_registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, MixerFactory>& mixer_registry() {
  static std::map<std::string, MixerFactory> registry{
      {"attention", [](const BlockConfig& block, const at::TensorOptions& options) -> std::shared_ptr<Mixer> {
         return std::make_shared<AttentionMixer>(block, options);
       }}};
  return registry;
}
}  // namespace

void register_mixer(const std::string& name, MixerFactory factory) {
  std::lock_guard<std::mutex> lock(mixer_registry_mutex());
  mixer_registry()[name] = std::move(factory);
}

bool has_mixer(const std::string& name) {
  std::lock_guard<std::mutex> lock(mixer_registry_mutex());
  return mixer_registry().count(name) > 0;
}

std::shared_ptr<Mixer> make_mixer(const BlockConfig& block, const at::TensorOptions& options) {
  MixerFactory factory;
  {
    std::lock_guard<std::mutex> lock(mixer_registry_mutex());
    auto it = mixer_registry().find(block.mixer);
    if (it == mixer_registry().end()) {
      std::string known;
      for (const auto& [name, f] : mixer_registry()) known += (known.empty() ? "" : ", ") + name;
      throw Error("layer " + std::to_string(block.index) + ": mixer '" + block.mixer + "' is not registered; known: " + known);
    }
    factory = it->second;
  }
  return factory(block, options);
}

}  // namespace xd::models
