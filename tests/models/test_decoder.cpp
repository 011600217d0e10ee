// The decoder on its own: RoPE tables against a float64 oracle, incremental decoding
// against a full forward, batching, traces, the mixer registry and save/load.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "xdistill/models/decoder.h"
#include "xdistill/models/generation.h"
#include "xdistill/util/error.h"

using namespace xd::models;
using nlohmann::json;

namespace {

json tiny(const std::string& type) {
  json j = {{"model_type", type}, {"vocab_size", 97}, {"hidden_size", 32}, {"intermediate_size", 48},
            {"num_hidden_layers", 3}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
            {"head_dim", 8}, {"max_position_embeddings", 256}};
  if (type == "olmo3") {
    j["sliding_window"] = 4;
    j["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention"};
  }
  if (type == "qwen2") j["tie_word_embeddings"] = true;
  return j;
}

std::shared_ptr<Decoder> random_decoder(const json& j, uint64_t seed = 0,
                                        std::vector<BlockConfig> (*edit)(std::vector<BlockConfig>) = nullptr) {
  ModelConfig c = parse_model_config(j);
  auto plan = plan_from_config(c);
  if (edit) plan = edit(plan);
  auto model = std::make_shared<Decoder>(c, plan, at::TensorOptions().dtype(at::kFloat));
  torch::manual_seed(seed);
  torch::NoGradGuard g;
  for (auto& p : model->parameters()) p.copy_(torch::randn(p.sizes()) * (p.dim() == 1 ? 0.1 : 0.3) + (p.dim() == 1 ? 1.0 : 0.0));
  model->eval();
  return model;
}

double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return ((a.to(at::kDouble) - b.to(at::kDouble)).norm() / b.to(at::kDouble).norm()).item<double>();
}


}  // namespace

TEST(Rope, InverseFrequenciesMatchFloat64Oracle) {
  const int64_t D = 64;
  auto oracle_base = [&](double theta, int i) { return 1.0 / std::pow(theta, double(2 * i) / D); };
  RopeConfig def;
  def.theta = 500000;
  auto [f, s] = rope_inverse_frequencies(def, D);
  EXPECT_EQ(s, 1.0);
  for (int i = 0; i < D / 2; ++i) EXPECT_NEAR(f[i].item<double>() / oracle_base(500000, i), 1.0, 1e-6) << i;

  RopeConfig l3 = def;
  l3.type = "llama3", l3.factor = 8, l3.low_freq_factor = 1, l3.high_freq_factor = 4, l3.original_max_position = 8192;
  auto [g, s3] = rope_inverse_frequencies(l3, D);
  for (int i = 0; i < D / 2; ++i) {
    const double inv = oracle_base(500000, i), wavelen = 2 * M_PI / inv;
    double expect = inv;
    if (wavelen > 8192) expect = inv / 8;
    else if (wavelen >= 8192 / 4.0) {
      const double smooth = (8192 / wavelen - 1) / (4 - 1);
      expect = (1 - smooth) * inv / 8 + smooth * inv;
    }
    EXPECT_NEAR(g[i].item<double>() / expect, 1.0, 1e-5) << i;
  }

  RopeConfig y = def;
  y.type = "yarn", y.factor = 4, y.original_max_position = 4096, y.theta = 10000;
  auto [h, sy] = rope_inverse_frequencies(y, D);
  EXPECT_NEAR(sy, 0.1 * std::log(4.0) + 1.0, 1e-12);
  const double low = std::floor(D * std::log(4096 / (32 * 2 * M_PI)) / (2 * std::log(10000.0)));
  const double high = std::ceil(D * std::log(4096 / (1 * 2 * M_PI)) / (2 * std::log(10000.0)));
  for (int i = 0; i < D / 2; ++i) {
    const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0), extra = 1 - ramp;
    const double inv = oracle_base(10000, i), expect = inv / 4 * (1 - extra) + inv * extra;
    EXPECT_NEAR(h[i].item<double>() / expect, 1.0, 1e-5) << i;
  }
}

TEST(Decoder, IncrementalDecodingMatchesFullForward) {
  for (const char* type : {"llama", "qwen3", "olmo2", "olmo3"}) {
    auto model = random_decoder(tiny(type));
    torch::NoGradGuard g;
    const at::Tensor ids = torch::randint(0, 97, {2, 13});
    const at::Tensor full = model->forward(ids);
    auto cache = model->new_cache(2, /*capacity=*/4);  // small: forces the cache to grow
    std::vector<at::Tensor> parts;
    parts.push_back(model->forward(ids.narrow(1, 0, 5), cache.get()));
    parts.push_back(model->forward(ids.narrow(1, 5, 1), cache.get()));
    parts.push_back(model->forward(ids.narrow(1, 6, 3), cache.get()));  // a chunk after a prefix (masked)
    for (int64_t t = 9; t < 13; ++t) parts.push_back(model->forward(ids.narrow(1, t, 1), cache.get()));
    EXPECT_EQ(cache->length(), 13);
    EXPECT_LT(rel_err(torch::cat(parts, 1), full), 1e-5) << type;
  }
}

TEST(Decoder, SlidingWindowLimitsWhatALayerSees) {
  // With window 4 on every layer, changing token 0 cannot change the output at
  // position >= 3 layers * 3 steps + 1 = 10; with full attention it does.
  auto windowed = tiny("olmo3");
  windowed["layer_types"] = {"sliding_attention", "sliding_attention", "sliding_attention"};
  auto full = tiny("olmo3");
  full["layer_types"] = {"full_attention", "full_attention", "full_attention"};
  torch::NoGradGuard g;
  at::Tensor a = torch::randint(1, 97, {1, 14}), b = a.clone();
  b[0][0] = 0;
  auto mw = random_decoder(windowed), mf = random_decoder(full);
  EXPECT_LT(rel_err(mw->forward(a).narrow(1, 10, 4), mw->forward(b).narrow(1, 10, 4)), 1e-6);
  EXPECT_GT(rel_err(mf->forward(a).narrow(1, 10, 4), mf->forward(b).narrow(1, 10, 4)), 1e-4);
}

TEST(Decoder, BatchRowsAreIndependent) {
  auto model = random_decoder(tiny("qwen2"));
  torch::NoGradGuard g;
  const at::Tensor ids = torch::randint(0, 97, {3, 9});
  const at::Tensor batched = model->forward(ids);
  for (int64_t b = 0; b < 3; ++b) EXPECT_LT(rel_err(batched[b], model->forward(ids.narrow(0, b, 1))[0]), 1e-5);
}

TEST(Decoder, TraceCollectsLayerInputsAndPreOutputs) {
  auto model = random_decoder(tiny("llama"));
  torch::NoGradGuard g;
  const at::Tensor ids = torch::randint(0, 97, {2, 6});
  ForwardTrace trace;
  model->forward(ids, nullptr, &trace);
  ASSERT_EQ(trace.layer_inputs.size(), 3u);
  ASSERT_EQ(trace.mixer_outputs.size(), 3u);
  EXPECT_TRUE(trace.layer_inputs[0].equal(at::embedding(model->embed, ids)));
  EXPECT_EQ(trace.mixer_outputs[1].sizes(), (std::vector<int64_t>{2, 6, 4 * 8}));
  // Recomputing layer 1's mixer from its traced input gives the traced output.
  const auto& block = model->blocks()[1];
  const at::Tensor again =
      block->mixer->forward_pre_out(block->mixer_norm->forward(trace.layer_inputs[1]), model->context(1, 0));
  EXPECT_LT(rel_err(again, trace.mixer_outputs[1]), 1e-6);
}

namespace {
// A stand-in for a student mixer: attention whose output is scaled by 0.5.
class HalfAttention : public AttentionMixer {
 public:
  using AttentionMixer::AttentionMixer;
  at::Tensor forward_pre_out(const at::Tensor& x, const MixerContext& ctx) override {
    return AttentionMixer::forward_pre_out(x, ctx) * 0.5;
  }
};
std::vector<BlockConfig> second_layer_half(std::vector<BlockConfig> plan) {
  plan[1].mixer = "test_half_attention";
  return plan;
}
}  // namespace

TEST(Decoder, PluggableMixersFromThePlan) {
  register_mixer("test_half_attention", [](const BlockConfig& b, const at::TensorOptions& o) -> std::shared_ptr<Mixer> {
    return std::make_shared<HalfAttention>(b, o);
  });
  auto plain = random_decoder(tiny("llama"), 3);
  auto mixed = random_decoder(tiny("llama"), 3, second_layer_half);
  // Same parameter names, so teacher weights load into the plan unchanged.
  EXPECT_EQ(plain->named_parameters().keys(), mixed->named_parameters().keys());
  torch::NoGradGuard g;
  const at::Tensor ids = torch::randint(0, 97, {1, 5});
  ForwardTrace t1, t2;
  plain->forward(ids, nullptr, &t1);
  mixed->forward(ids, nullptr, &t2);
  EXPECT_TRUE(t1.mixer_outputs[0].equal(t2.mixer_outputs[0]));
  EXPECT_LT(rel_err(t2.mixer_outputs[1], t1.mixer_outputs[1] * 0.5), 1e-6);

  auto bad = [](std::vector<BlockConfig> plan) {
    plan[2].mixer = "no_such_mixer";
    plan[0].num_kv_heads = 3;
    return plan;
  };
  try {
    random_decoder(tiny("llama"), 0, bad);
    FAIL() << "expected an invalid plan error";
  } catch (const xd::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("layer 2: mixer 'no_such_mixer'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("layer 0: num_heads"), std::string::npos) << msg;
  }
}

TEST(Decoder, SaveThenLoadGivesTheSameModel) {
  for (const char* type : {"qwen2", "olmo3"}) {  // tied embeddings; post-norm names
    auto model = random_decoder(tiny(type), 5);
    const auto dir = std::filesystem::temp_directory_path() / ("xd_save_" + std::string(type));
    save_model(*model, dir.string());
    ASSERT_TRUE(std::filesystem::exists(dir / "config.json"));
    auto loaded = load_model(dir.string(), "cpu", at::kFloat);
    torch::NoGradGuard g;
    const at::Tensor ids = torch::randint(0, 97, {1, 11});
    EXPECT_TRUE(loaded->forward(ids).equal(model->forward(ids))) << type;
    std::filesystem::remove_all(dir);
  }
}

TEST(Generation, GreedyAgreesWithArgmaxOfFullForward) {
  auto model = random_decoder(tiny("olmo3"), 9);
  GenerationOptions o;
  o.max_new_tokens = 10;
  const std::vector<int64_t> prompt{5, 17, 2, 88};
  const auto out = generate(*model, {prompt, prompt}, o);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], out[1]);
  std::vector<int64_t> seq = prompt;
  torch::NoGradGuard g;
  for (int i = 0; i < 10; ++i) {
    const at::Tensor logits = model->forward(torch::tensor(seq).view({1, -1}));
    seq.push_back(logits[0][-1].argmax().item<int64_t>());
  }
  EXPECT_EQ(out[0], std::vector<int64_t>(seq.begin() + 4, seq.end()));
}

TEST(Generation, TopPKeepsOnlyTheNucleus) {
  // probabilities 0.5, 0.3, 0.15, 0.05: top-p 0.7 keeps the first two only.
  const at::Tensor logits = torch::log(torch::tensor({0.05, 0.5, 0.15, 0.3})).to(at::kFloat).view({1, 4});
  GenerationOptions o;
  o.temperature = 1.0;
  o.top_p = 0.7;
  uint64_t rng = 1;
  int counts[4] = {0, 0, 0, 0};
  for (int i = 0; i < 4000; ++i) counts[pick_next_tokens(logits, o, rng)[0]]++;
  EXPECT_EQ(counts[0] + counts[2], 0);
  EXPECT_NEAR(counts[1] / 4000.0, 0.5 / 0.8, 0.03);
  o.top_p = 1.0;
  for (int i = 0; i < 4000; ++i) counts[pick_next_tokens(logits, o, rng)[0]]++;
  EXPECT_GT(counts[0], 0);
}
