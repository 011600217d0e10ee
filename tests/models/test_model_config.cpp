// config.json parsing (family table, RoPE layouts, layer types) and weight names.
#include <gtest/gtest.h>

#include "xdistill/models/model_config.h"
#include "xdistill/models/weight_names.h"
#include "xdistill/util/error.h"

using namespace xd::models;
using nlohmann::json;

namespace {

json base(const std::string& type) {
  return {{"model_type", type}, {"vocab_size", 100},        {"hidden_size", 64},
          {"intermediate_size", 128}, {"num_hidden_layers", 4}, {"num_attention_heads", 4},
          {"num_key_value_heads", 2}, {"max_position_embeddings", 1024}};
}

std::string error_of(const json& j) {
  try {
    parse_model_config(j, "cfg.json");
  } catch (const xd::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(ModelConfig, FamilyTableSetsTheOptions) {
  auto llama = parse_model_config(base("llama"));
  EXPECT_EQ(llama.norm_placement, NormPlacement::pre);
  EXPECT_EQ(llama.qk_norm, QkNorm::none);
  EXPECT_FALSE(llama.qkv_bias);
  EXPECT_EQ(llama.head_dim, 16);
  EXPECT_DOUBLE_EQ(llama.rms_norm_eps, 1e-6);
  EXPECT_EQ(llama.ropes.size(), 1u);
  EXPECT_DOUBLE_EQ(llama.ropes[0].theta, 10000.0);

  auto qwen2 = parse_model_config(base("qwen2"));
  EXPECT_TRUE(qwen2.qkv_bias);
  EXPECT_FALSE(qwen2.o_bias);

  auto qwen3 = parse_model_config(base("qwen3"));
  EXPECT_EQ(qwen3.qk_norm, QkNorm::per_head);
  EXPECT_EQ(qwen3.head_dim, 128);  // Qwen3Config's default, not hidden / heads

  auto olmo2 = parse_model_config(base("olmo2"));
  EXPECT_EQ(olmo2.norm_placement, NormPlacement::post);
  EXPECT_EQ(olmo2.qk_norm, QkNorm::full);
  EXPECT_TRUE(olmo2.norm_weight_in_fp32 && olmo2.rope_in_fp32);
  EXPECT_DOUBLE_EQ(olmo2.rms_norm_eps, 1e-5);

  auto j = base("llama");
  j["attention_bias"] = true;
  j["head_dim"] = 32;
  j["tie_word_embeddings"] = true;
  auto biased = parse_model_config(j);
  EXPECT_TRUE(biased.qkv_bias && biased.o_bias && biased.tie_word_embeddings);
  EXPECT_EQ(biased.head_dim, 32);
}

TEST(ModelConfig, UnsupportedTypeListsSupported) {
  const std::string e = error_of(base("gpt2"));
  for (const char* t : {"'gpt2'", "llama", "qwen2", "qwen3", "olmo2", "olmo3"}) EXPECT_NE(e.find(t), std::string::npos) << e;
}

TEST(ModelConfig, BadFieldsAreNamed) {
  auto j = base("llama");
  j.erase("hidden_size");
  EXPECT_NE(error_of(j).find("hidden_size"), std::string::npos);
  j = base("llama");
  j["num_key_value_heads"] = 3;
  EXPECT_NE(error_of(j).find("num_key_value_heads"), std::string::npos);
  j = base("olmo3");
  j["layer_types"] = {"full_attention"};
  EXPECT_NE(error_of(j).find("layer_types"), std::string::npos);
  j = base("llama");
  j["rope_parameters"] = {{"rope_type", "longrope"}, {"rope_theta", 1.0}};
  EXPECT_NE(error_of(j).find("longrope"), std::string::npos);
  j = base("llama");
  j["hidden_act"] = "gelu";
  EXPECT_NE(error_of(j).find("hidden_act"), std::string::npos);
}

TEST(ModelConfig, RopeParametersAndLegacyRopeScaling) {
  auto modern = base("llama");
  modern["rope_parameters"] = {{"rope_type", "llama3"}, {"rope_theta", 500000.0}, {"factor", 8.0},
                               {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                               {"original_max_position_embeddings", 8192}};
  auto legacy = base("llama");
  legacy["rope_theta"] = 500000.0;
  legacy["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  for (const auto& j : {modern, legacy}) {
    auto c = parse_model_config(j);
    ASSERT_EQ(c.ropes.size(), 1u);
    EXPECT_EQ(c.ropes[0].type, "llama3");
    EXPECT_DOUBLE_EQ(c.ropes[0].theta, 500000.0);
    EXPECT_DOUBLE_EQ(c.ropes[0].factor, 8.0);
    EXPECT_EQ(c.ropes[0].original_max_position, 8192);
  }
  auto old_type_key = base("qwen2");
  old_type_key["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_EQ(parse_model_config(old_type_key).ropes[0].type, "linear");
  auto yarn = base("llama");
  yarn["rope_scaling"] = {{"rope_type", "yarn"}, {"original_max_position_embeddings", 256}};
  EXPECT_DOUBLE_EQ(parse_model_config(yarn).ropes[0].factor, 4.0);  // 1024 / 256
}

TEST(ModelConfig, OlmoThreeSlidingLayersAndPerTypeRope) {
  auto j = base("olmo3");
  j["num_hidden_layers"] = 8;
  j["sliding_window"] = 16;
  auto c = parse_model_config(j);  // default pattern: every fourth layer is full
  ASSERT_EQ(c.layers.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(c.layers[i].sliding_window, (i + 1) % 4 ? 16 : 0) << i;
  ASSERT_EQ(c.ropes.size(), 2u);
  EXPECT_EQ(c.layers[3].rope, 0);
  EXPECT_EQ(c.layers[0].rope, 1);

  // Legacy layout: rope_scaling and rope_theta go to the full layers; the sliding
  // layers get the class default theta, as HF's Olmo3Config does.
  j["rope_theta"] = 10000.0;
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 8.0}, {"original_max_position_embeddings", 128}};
  c = parse_model_config(j);
  EXPECT_EQ(c.ropes[0].type, "yarn");
  EXPECT_DOUBLE_EQ(c.ropes[0].theta, 10000.0);
  EXPECT_EQ(c.ropes[1].type, "default");
  EXPECT_DOUBLE_EQ(c.ropes[1].theta, 500000.0);

  j.erase("rope_scaling");
  j["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}, {"rope_theta", 1000.0}}},
                          {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 2000.0}}}};
  c = parse_model_config(j);
  EXPECT_DOUBLE_EQ(c.ropes[0].theta, 1000.0);
  EXPECT_DOUBLE_EQ(c.ropes[1].theta, 2000.0);
}

TEST(ModelConfig, QwenSlidingWindowNeedsTheSwitch) {
  auto j = base("qwen2");
  j["sliding_window"] = 32;
  j["max_window_layers"] = 2;
  for (const auto& l : parse_model_config(j).layers) EXPECT_EQ(l.sliding_window, 0);
  j["use_sliding_window"] = true;
  auto c = parse_model_config(j);
  EXPECT_EQ(c.layers[1].sliding_window, 0);
  EXPECT_EQ(c.layers[2].sliding_window, 32);
}

TEST(ModelConfig, ParameterCount) {
  auto j = base("qwen2");
  auto c = parse_model_config(j);
  // embed + head + final norm + layers (q,k,v,o with q/k/v bias, mlp, 2 norms)
  const int64_t layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + (64 + 2 * 32) + 3 * 64 * 128 + 2 * 64;
  EXPECT_EQ(count_parameters(c), 2 * 100 * 64 + 64 + 4 * layer);
}

TEST(WeightNames, TableMapsBothWays) {
  struct Case { const char* hf; const char* internal; NormPlacement p; };
  const Case cases[] = {
      {"model.embed_tokens.weight", "embed", NormPlacement::pre},
      {"lm_head.weight", "lm_head", NormPlacement::pre},
      {"model.norm.weight", "final_norm.weight", NormPlacement::post},
      {"model.layers.12.self_attn.q_proj.weight", "layers.12.mixer.q_proj.weight", NormPlacement::pre},
      {"model.layers.3.self_attn.feature_q.bias", "layers.3.mixer.feature_q.bias", NormPlacement::pre},
      {"model.layers.0.mlp.down_proj.weight", "layers.0.mlp.down_proj.weight", NormPlacement::post},
      {"model.layers.1.input_layernorm.weight", "layers.1.mixer_norm.weight", NormPlacement::pre},
      {"model.layers.1.post_attention_layernorm.weight", "layers.1.mlp_norm.weight", NormPlacement::pre},
      {"model.layers.1.post_attention_layernorm.weight", "layers.1.mixer_norm.weight", NormPlacement::post},
      {"model.layers.1.post_feedforward_layernorm.weight", "layers.1.mlp_norm.weight", NormPlacement::post},
      {"something.else", "something.else", NormPlacement::pre},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(to_internal_name(c.hf, c.p), c.internal) << c.hf;
    EXPECT_EQ(to_hf_name(c.internal, c.p), c.hf) << c.internal;
  }
  EXPECT_EQ(to_internal_name("model.layers.x.mlp.up_proj.weight", NormPlacement::pre),
            "model.layers.x.mlp.up_proj.weight");  // {i} needs digits
}
