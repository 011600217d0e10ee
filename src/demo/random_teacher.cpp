// A randomly initialised Llama in Hugging Face layout, the starting point of the
// demo teacher (which xdistill then pretrains itself). Initialisation follows HF's
// Llama: normal(0, 0.02) for matrices, ones for RMSNorm weights.
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "xdistill/demo/byte_tokenizer.h"
#include "xdistill/demo/demo.h"
#include "xdistill/io/torch_io.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

namespace xd::demo {

void write_random_teacher(const std::string& dir, const std::string& size, uint64_t seed) {
  struct Shape { int64_t hidden, layers, heads, kv_heads, ffn; };
  const Shape s = size == "small" ? Shape{512, 8, 8, 4, 1536} : Shape{128, 4, 4, 2, 384};
  const int64_t head_dim = s.hidden / s.heads;
  nlohmann::json config = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},
      {"vocab_size", kVocabSize}, {"hidden_size", s.hidden}, {"intermediate_size", s.ffn},
      {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads},
      {"num_key_value_heads", s.kv_heads}, {"head_dim", head_dim}, {"hidden_act", "silu"},
      {"max_position_embeddings", 4096}, {"rms_norm_eps", 1e-5}, {"rope_theta", 10000.0},
      {"attention_bias", false}, {"mlp_bias", false}, {"tie_word_embeddings", true},
      {"bos_token_id", kBosId}, {"eos_token_id", kEosId}, {"torch_dtype", "float32"}};

  torch::manual_seed(seed);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  auto normal = [](int64_t rows, int64_t cols) { return torch::randn({rows, cols}) * 0.02; };
  tensors.emplace_back("model.embed_tokens.weight", normal(kVocabSize, s.hidden));
  for (int64_t l = 0; l < s.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    tensors.emplace_back(p + "input_layernorm.weight", torch::ones({s.hidden}));
    tensors.emplace_back(p + "post_attention_layernorm.weight", torch::ones({s.hidden}));
    tensors.emplace_back(p + "self_attn.q_proj.weight", normal(s.heads * head_dim, s.hidden));
    tensors.emplace_back(p + "self_attn.k_proj.weight", normal(s.kv_heads * head_dim, s.hidden));
    tensors.emplace_back(p + "self_attn.v_proj.weight", normal(s.kv_heads * head_dim, s.hidden));
    tensors.emplace_back(p + "self_attn.o_proj.weight", normal(s.hidden, s.heads * head_dim));
    tensors.emplace_back(p + "mlp.gate_proj.weight", normal(s.ffn, s.hidden));
    tensors.emplace_back(p + "mlp.up_proj.weight", normal(s.ffn, s.hidden));
    tensors.emplace_back(p + "mlp.down_proj.weight", normal(s.hidden, s.ffn));
  }
  tensors.emplace_back("model.norm.weight", torch::ones({s.hidden}));

  // Stage in a sibling directory, then rename: the teacher appears only when complete.
  const std::string staging = fs::temp_sibling(dir).string();
  io::save_tensors(staging, tensors, {{"format", "pt"}});
  fs::write_atomic(staging + "/config.json", config.dump(2) + "\n");
  write_byte_tokenizer(staging);
  fs::replace_directory(staging, dir);
}

}  // namespace xd::demo
