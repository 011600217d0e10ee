// config.json -> ModelConfig. Family knowledge lives in kFamilies, nowhere else.
#include "xdistill/models/model_config.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "xdistill/util/error.h"

namespace xd::models {
namespace {

using nlohmann::json;

// How a family sets its projection biases from config.json.
enum class BiasRule {
  attention_bias,  // `attention_bias` switches q, k, v and o biases together (Llama, Qwen3, OLMo)
  qkv_always,      // q, k, v always biased, o never (Qwen2)
};

// Which config keys choose the sliding-window layers when `layer_types` is absent.
enum class SlidingRule {
  none,          // no sliding layers (Llama, OLMo-2)
  qwen,          // `use_sliding_window` + `max_window_layers`: layers >= max_window_layers slide
  every_fourth,  // OLMo-3: every layer slides except each fourth
};

struct Family {
  const char* model_type;
  NormPlacement norm_placement;
  QkNorm qk_norm;
  BiasRule bias;
  SlidingRule sliding;
  bool rope_per_layer_type;  // rope_parameters keyed by "full_attention"/"sliding_attention" (OLMo-3)
  bool fp32_norm_and_rope;   // see ModelConfig::norm_weight_in_fp32 / rope_in_fp32
  double default_theta;      // HF's `default_theta` of the config class
  double default_eps;
  int64_t default_head_dim;  // 0: hidden_size / num_attention_heads
};

// The HF config classes are the reference for every default below.
const Family kFamilies[] = {
    // model_type norm                 q/k norm          biases                    sliding                    per-type fp32   theta     eps   head_dim
    {"llama", NormPlacement::pre, QkNorm::none, BiasRule::attention_bias, SlidingRule::none, false, false, 10000.0, 1e-6, 0},
    {"qwen2", NormPlacement::pre, QkNorm::none, BiasRule::qkv_always, SlidingRule::qwen, false, false, 10000.0, 1e-6, 0},
    {"qwen3", NormPlacement::pre, QkNorm::per_head, BiasRule::attention_bias, SlidingRule::qwen, false, false, 10000.0, 1e-6, 128},
    {"olmo2", NormPlacement::post, QkNorm::full, BiasRule::attention_bias, SlidingRule::none, false, true, 10000.0, 1e-5, 0},
    {"olmo3", NormPlacement::post, QkNorm::full, BiasRule::attention_bias, SlidingRule::every_fourth, true, true, 500000.0, 1e-5, 0},
};

std::string joined_types() {
  std::string out;
  for (const auto& t : supported_model_types()) out += (out.empty() ? "" : ", ") + t;
  return out;
}

const Family& find_family(const std::string& model_type, const std::string& source) {
  for (const auto& f : kFamilies)
    if (model_type == f.model_type) return f;
  throw Error(source + ": model_type '" + model_type + "' is not supported; supported: " + joined_types());
}

// Small typed readers that name the key in errors.
int64_t req_int(const json& j, const char* key, const std::string& src) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer())
    throw Error(src + ": '" + key + "' must be an integer" + (it == j.end() ? " (missing)" : ""));
  return it->get<int64_t>();
}
template <typename T>
T opt(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return it->get<T>();
}
std::optional<double> opt_double(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->get<double>();
}

RopeConfig parse_rope(const json& params, double theta_fallback, int64_t max_pos, const std::string& src) {
  if (!params.is_object()) throw Error(src + ": rope parameters must be an object, got " + params.dump());
  RopeConfig r;
  r.type = opt<std::string>(params, "rope_type", opt<std::string>(params, "type", "default"));
  r.theta = opt<double>(params, "rope_theta", theta_fallback);
  static const std::set<std::string> kTypes{"default", "linear", "llama3", "yarn"};
  if (!kTypes.count(r.type))
    throw Error(src + ": rope_type '" + r.type + "' is not supported; supported: default, linear, llama3, yarn");
  if (opt<double>(params, "partial_rotary_factor", 1.0) != 1.0)
    throw Error(src + ": partial_rotary_factor other than 1.0 is not supported");
  r.original_max_position = opt<int64_t>(params, "original_max_position_embeddings", max_pos);
  if (r.type == "linear" || r.type == "llama3") {
    if (!opt_double(params, "factor")) throw Error(src + ": rope type '" + r.type + "' needs 'factor'");
    r.factor = *opt_double(params, "factor");
  }
  if (r.type == "llama3") {
    for (const char* k : {"low_freq_factor", "high_freq_factor"})
      if (!opt_double(params, k)) throw Error(src + ": rope type 'llama3' needs '" + k + "'");
    r.low_freq_factor = *opt_double(params, "low_freq_factor");
    r.high_freq_factor = *opt_double(params, "high_freq_factor");
  }
  if (r.type == "yarn") {
    // HF: a missing factor is the ratio of the extended to the original context.
    r.factor = opt<double>(params, "factor", double(max_pos) / double(r.original_max_position));
    r.attention_factor = opt_double(params, "attention_factor");
    r.mscale = opt_double(params, "mscale");
    r.mscale_all_dim = opt_double(params, "mscale_all_dim");
    // HF uses `x or default`, so an explicit 0 also falls back.
    r.beta_fast = opt<double>(params, "beta_fast", 32.0);
    r.beta_slow = opt<double>(params, "beta_slow", 1.0);
    if (r.beta_fast == 0) r.beta_fast = 32.0;
    if (r.beta_slow == 0) r.beta_slow = 1.0;
    r.truncate = opt<bool>(params, "truncate", true);
  }
  return r;
}

// Fills cfg.ropes and returns, for "full_attention" and "sliding_attention", the index
// of their table. transformers 5 writes `rope_parameters`; older files carry
// `rope_theta` + `rope_scaling` at the top level. Both are read as HF reads them.
std::pair<int, int> parse_ropes(const json& j, const Family& fam, ModelConfig& cfg, const std::string& src) {
  const int64_t max_pos = cfg.max_position_embeddings;
  const double top_theta = opt<double>(j, "rope_theta", fam.default_theta);
  auto params_it = j.find("rope_parameters");
  const bool modern = params_it != j.end() && params_it->is_object() && !params_it->empty();
  json scaling = j.value("rope_scaling", json());
  if (scaling.is_null()) scaling = json::object();

  if (fam.rope_per_layer_type) {
    json full = json::object(), sliding = json::object();
    if (modern && (params_it->contains("full_attention") || params_it->contains("sliding_attention"))) {
      full = params_it->value("full_attention", json::object());
      sliding = params_it->value("sliding_attention", json::object());
      if (full.is_null() || sliding.is_null())
        throw Error(src + ": rope_parameters has a null entry for a layer type");
      cfg.ropes = {parse_rope(full, top_theta, max_pos, src + " rope_parameters.full_attention"),
                   parse_rope(sliding, top_theta, max_pos, src + " rope_parameters.sliding_attention")};
    } else {
      // Legacy OLMo-3 files: rope_scaling applies to the full-attention layers only.
      // HF's Olmo3Config consumes `rope_theta` for those and gives the sliding layers
      // the class default theta (500000); we reproduce that so logits match.
      full = modern ? *params_it : scaling;
      cfg.ropes = {parse_rope(full, top_theta, max_pos, src + " rope_scaling"),
                   parse_rope(json::object(), fam.default_theta, max_pos, src + " (sliding layers)")};
    }
    if (j.contains("original_max_position_embeddings") && !j["original_max_position_embeddings"].is_null())
      cfg.ropes[0].original_max_position = j["original_max_position_embeddings"].get<int64_t>();
    return {0, 1};
  }
  const json& params = modern ? *params_it : scaling;
  cfg.ropes = {parse_rope(params, top_theta, max_pos, src + (modern ? " rope_parameters" : " rope_scaling"))};
  // HF gives a top-level original_max_position_embeddings priority (Phi-3 style files).
  const auto& t = cfg.ropes[0].type;
  if ((t == "llama3" || t == "yarn") && j.contains("original_max_position_embeddings") &&
      !j["original_max_position_embeddings"].is_null())
    cfg.ropes[0].original_max_position = j["original_max_position_embeddings"].get<int64_t>();
  return {0, 0};
}

void parse_layers(const json& j, const Family& fam, ModelConfig& cfg, std::pair<int, int> rope_of_type,
                  const std::string& src) {
  int64_t window = 0;
  bool window_active = false;
  if (fam.sliding == SlidingRule::qwen) {
    window_active = opt<bool>(j, "use_sliding_window", false) && !j.value("sliding_window", json()).is_null();
    if (window_active) window = j["sliding_window"].get<int64_t>();
  } else if (fam.sliding == SlidingRule::every_fourth) {
    window = opt<int64_t>(j, "sliding_window", 4096);
    window_active = !j.contains("sliding_window") || !j["sliding_window"].is_null();
  }
  std::vector<std::string> types;
  if (j.contains("layer_types") && !j["layer_types"].is_null()) {
    types = j["layer_types"].get<std::vector<std::string>>();
    if ((int64_t)types.size() != cfg.num_layers)
      throw Error(src + ": layer_types has " + std::to_string(types.size()) + " entries, expected num_hidden_layers = " +
                  std::to_string(cfg.num_layers));
  } else {
    const int64_t max_window_layers = opt<int64_t>(j, "max_window_layers", 28);
    for (int64_t i = 0; i < cfg.num_layers; ++i) {
      bool slides = false;
      if (fam.sliding == SlidingRule::qwen) slides = window_active && i >= max_window_layers;
      if (fam.sliding == SlidingRule::every_fourth) slides = (i + 1) % 4 != 0;
      types.push_back(slides ? "sliding_attention" : "full_attention");
    }
  }
  cfg.layers.clear();
  for (size_t i = 0; i < types.size(); ++i) {
    LayerAttention la;
    if (types[i] == "sliding_attention") {
      if (fam.sliding == SlidingRule::none)
        throw Error(src + ": layer_types[" + std::to_string(i) + "] is sliding_attention, which model_type '" +
                    cfg.model_type + "' does not support");
      if (window_active && window <= 0) throw Error(src + ": sliding_window must be positive");
      la.sliding_window = window_active ? window : 0;
      la.rope = rope_of_type.second;
    } else if (types[i] == "full_attention") {
      la.rope = rope_of_type.first;
    } else {
      throw Error(src + ": layer_types[" + std::to_string(i) + "] is '" + types[i] +
                  "'; expected full_attention or sliding_attention");
    }
    cfg.layers.push_back(la);
  }
}

std::vector<int64_t> parse_token_ids(const json& v) {
  if (v.is_number_integer()) return {v.get<int64_t>()};
  if (v.is_array()) return v.get<std::vector<int64_t>>();
  return {};
}

}  // namespace

const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> types = [] {
    std::vector<std::string> out;
    for (const auto& f : kFamilies) out.emplace_back(f.model_type);
    return out;
  }();
  return types;
}

ModelConfig parse_model_config(const json& j, const std::string& src) {
  if (!j.is_object()) throw Error(src + ": expected a JSON object");
  if (!j.contains("model_type") || !j["model_type"].is_string())
    throw Error(src + ": 'model_type' is missing; supported: " + joined_types());
  ModelConfig cfg;
  cfg.model_type = j["model_type"].get<std::string>();
  const Family& fam = find_family(cfg.model_type, src);
  try {
    cfg.vocab_size = req_int(j, "vocab_size", src);
    cfg.hidden_size = req_int(j, "hidden_size", src);
    cfg.intermediate_size = req_int(j, "intermediate_size", src);
    cfg.num_layers = req_int(j, "num_hidden_layers", src);
    cfg.num_heads = req_int(j, "num_attention_heads", src);
    cfg.num_kv_heads = opt<int64_t>(j, "num_key_value_heads", cfg.num_heads);
    const int64_t derived_head_dim = cfg.num_heads > 0 ? cfg.hidden_size / cfg.num_heads : 0;
    cfg.head_dim = opt<int64_t>(j, "head_dim", fam.default_head_dim ? fam.default_head_dim : derived_head_dim);
    cfg.max_position_embeddings = opt<int64_t>(j, "max_position_embeddings", 2048);
    cfg.rms_norm_eps = opt<double>(j, "rms_norm_eps", fam.default_eps);
    cfg.hidden_act = opt<std::string>(j, "hidden_act", "silu");
    cfg.tie_word_embeddings = opt<bool>(j, "tie_word_embeddings", false);
    const bool attention_bias = opt<bool>(j, "attention_bias", false);
    cfg.qkv_bias = fam.bias == BiasRule::qkv_always ? true : attention_bias;
    cfg.o_bias = fam.bias == BiasRule::qkv_always ? false : attention_bias;
    cfg.mlp_bias = opt<bool>(j, "mlp_bias", false);
    cfg.dtype = opt<std::string>(j, "dtype", opt<std::string>(j, "torch_dtype", ""));
    if (j.contains("eos_token_id")) cfg.eos_token_ids = parse_token_ids(j["eos_token_id"]);
    if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer()) cfg.bos_token_id = j["bos_token_id"].get<int64_t>();
    if (j.contains("pad_token_id") && j["pad_token_id"].is_number_integer()) cfg.pad_token_id = j["pad_token_id"].get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(src + ": a field has the wrong type: " + e.what());
  }
  cfg.norm_placement = fam.norm_placement;
  cfg.qk_norm = fam.qk_norm;
  cfg.norm_weight_in_fp32 = fam.fp32_norm_and_rope;
  cfg.rope_in_fp32 = fam.fp32_norm_and_rope;

  for (auto [name, v] : {std::pair{"vocab_size", cfg.vocab_size}, {"hidden_size", cfg.hidden_size},
                         {"intermediate_size", cfg.intermediate_size}, {"num_hidden_layers", cfg.num_layers},
                         {"num_attention_heads", cfg.num_heads}, {"num_key_value_heads", cfg.num_kv_heads},
                         {"head_dim", cfg.head_dim}})
    if (v <= 0) throw Error(src + ": '" + name + "' must be positive, got " + std::to_string(v));
  if (cfg.num_heads % cfg.num_kv_heads != 0)
    throw Error(src + ": num_attention_heads (" + std::to_string(cfg.num_heads) +
                ") must be a multiple of num_key_value_heads (" + std::to_string(cfg.num_kv_heads) + ")");
  if (cfg.head_dim % 2 != 0) throw Error(src + ": head_dim must be even for RoPE, got " + std::to_string(cfg.head_dim));
  if (cfg.hidden_act != "silu")
    throw Error(src + ": hidden_act '" + cfg.hidden_act + "' is not supported; supported: silu");

  try {
    const auto rope_of_type = parse_ropes(j, fam, cfg, src);
    parse_layers(j, fam, cfg, rope_of_type, src);
  } catch (const nlohmann::json::exception& e) {
    throw Error(src + ": invalid rope or layer settings: " + e.what());
  }
  cfg.raw = j;
  return cfg;
}

ModelConfig load_model_config(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path path = fs::path(dir) / "config.json";
  std::ifstream in(path);
  if (!in) throw Error(path.string() + ": cannot open (is '" + dir + "' a Hugging Face model directory?)");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw Error(path.string() + ": invalid JSON: " + e.what());
  }
  ModelConfig cfg = parse_model_config(j, path.string());
  const fs::path gen = fs::path(dir) / "generation_config.json";
  if (std::ifstream gin{gen}) {
    try {
      json g = json::parse(gin);
      if (g.contains("eos_token_id")) {
        auto ids = parse_token_ids(g["eos_token_id"]);
        if (!ids.empty()) cfg.eos_token_ids = ids;
      }
    } catch (const json::exception& e) {
      throw Error(gen.string() + ": invalid JSON: " + e.what());
    }
  }
  return cfg;
}

int64_t count_parameters(const ModelConfig& c) {
  const int64_t H = c.hidden_size;
  int64_t per_layer = H * c.q_size() + 2 * H * c.kv_size() + c.q_size() * H;  // q, k, v, o
  if (c.qkv_bias) per_layer += c.q_size() + 2 * c.kv_size();
  if (c.o_bias) per_layer += H;
  if (c.qk_norm == QkNorm::per_head) per_layer += 2 * c.head_dim;
  if (c.qk_norm == QkNorm::full) per_layer += c.q_size() + c.kv_size();
  per_layer += 3 * H * c.intermediate_size + (c.mlp_bias ? 2 * c.intermediate_size + H : 0);
  per_layer += 2 * H;  // the block's two norms
  const int64_t embeddings = c.vocab_size * H * (c.tie_word_embeddings ? 1 : 2);
  return embeddings + H + c.num_layers * per_layer;
}

const char* to_string(NormPlacement p) { return p == NormPlacement::pre ? "pre-norm" : "post-norm"; }
const char* to_string(QkNorm q) {
  switch (q) {
    case QkNorm::none: return "none";
    case QkNorm::per_head: return "per-head";
    case QkNorm::full: return "full-projection";
  }
  return "?";
}

}  // namespace xd::models
