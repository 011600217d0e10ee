// A teacher's config.json as a typed configuration (no torch).
//
// Families differ by a handful of options, and those options come from one small
// table keyed by the Hugging Face `model_type` (model_config.cpp). Everything that
// varies per layer (sliding window, which RoPE table) is resolved here into
// `ModelConfig::layers`, so the decoder never asks which family it is running.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace xd::models {

// Where a block's RMSNorms sit: before the mixer / MLP (Llama, Qwen), or after
// them, on their outputs, before the residual add (OLMo-2/3).
enum class NormPlacement { pre, post };

// RMSNorm on q and k: none, per head over head_dim (Qwen3), or over the full
// projection, before splitting into heads (OLMo-2/3).
enum class QkNorm { none, per_head, full };

// One RoPE table (HF `rope_parameters`, or the legacy `rope_theta` + `rope_scaling`).
struct RopeConfig {
  std::string type = "default";  // default | linear | llama3 | yarn
  double theta = 10000.0;
  double factor = 1.0;                      // linear, llama3, yarn
  double low_freq_factor = 1.0;             // llama3
  double high_freq_factor = 4.0;            // llama3
  int64_t original_max_position = 0;        // llama3, yarn
  std::optional<double> attention_factor;   // yarn (inferred from factor when absent)
  double beta_fast = 32.0, beta_slow = 1.0; // yarn
  std::optional<double> mscale, mscale_all_dim;  // yarn
  bool truncate = true;                     // yarn
};

// What one layer's attention looks like beyond the shared shapes.
struct LayerAttention {
  int64_t sliding_window = 0;  // 0 = full causal attention; else keys with pos > q_pos - window
  int rope = 0;                // index into ModelConfig::ropes
};

struct ModelConfig {
  std::string model_type;  // as in config.json
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0;
  int64_t num_layers = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  std::string hidden_act = "silu";
  bool tie_word_embeddings = false;

  // Family options (from the family table; biases and q/k norms are refined by the
  // loader from the weights actually present).
  NormPlacement norm_placement = NormPlacement::pre;
  QkNorm qk_norm = QkNorm::none;
  bool qkv_bias = false, o_bias = false, mlp_bias = false;
  // Numerics that HF implements differently per family and that matter in bf16:
  // Llama/Qwen multiply the norm weight after casting back to the input dtype and
  // apply RoPE in the activation dtype; OLMo multiplies in fp32 and rotates in fp32.
  bool norm_weight_in_fp32 = false;
  bool rope_in_fp32 = false;

  std::vector<RopeConfig> ropes;       // at least one
  std::vector<LayerAttention> layers;  // num_layers entries

  std::vector<int64_t> eos_token_ids;  // from config.json (generation_config.json may override)
  std::optional<int64_t> bos_token_id, pad_token_id;
  std::string dtype;                   // the checkpoint's declared dtype ("bfloat16"...), may be empty

  nlohmann::json raw;  // the parsed config.json, kept so that saving round-trips it

  int64_t q_size() const { return num_heads * head_dim; }
  int64_t kv_size() const { return num_kv_heads * head_dim; }
};

// Parses a config.json object; `source` names it in errors. Throws xd::Error on an
// unsupported model_type (listing the supported ones) or a missing/invalid field.
ModelConfig parse_model_config(const nlohmann::json& config, const std::string& source = "config.json");
// Reads DIR/config.json, and DIR/generation_config.json's eos_token_id when present.
ModelConfig load_model_config(const std::string& dir);
// The teacher families: llama, qwen2, qwen3, olmo2, olmo3.
const std::vector<std::string>& supported_model_types();
// Parameter count of the decoder described by the config (tied embeddings once).
int64_t count_parameters(const ModelConfig& config);
const char* to_string(NormPlacement);
const char* to_string(QkNorm);

}  // namespace xd::models
