// The student block and model: initialisation, the math against the reference
// operators, incremental decoding against the full forward, save and reload.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "xdistill/models/decoder.h"
#include "xdistill/ops/mlstm_reference.h"
#include "xdistill/student/hybrid_mixer.h"
#include "xdistill/student/student_model.h"

using namespace xd;
using student::HybridCore;
using student::HybridInputs;
using student::StudentConfig;

namespace {

std::shared_ptr<models::Decoder> tiny_teacher(const std::string& family = "llama") {
  nlohmann::json c = {{"model_type", family},    {"hidden_size", 32},       {"intermediate_size", 48},
                      {"num_hidden_layers", 2},  {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                      {"vocab_size", 50},        {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},   {"tie_word_embeddings", false}};
  auto config = models::parse_model_config(c, "test");
  auto model = std::make_shared<models::Decoder>(config, models::plan_from_config(config),
                                                 at::TensorOptions().dtype(at::kFloat));
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  for (auto& item : model->named_parameters(true)) {
    if (item.key().find("norm") != std::string::npos) item.value().uniform_(0.8, 1.2);
    else item.value().normal_(0, 0.3);
  }
  return model;
}

StudentConfig small_window() {
  StudentConfig s;
  s.window = 6;  // short rows already slide past the window
  s.sinks = 2;
  return s;
}

HybridInputs random_inputs(int64_t B, int64_t H, int64_t S, int64_t D, int64_t hidden) {
  HybridInputs in;
  in.x = torch::randn({B, S, hidden});
  in.q = torch::randn({B, H, S, D});
  in.k = torch::randn({B, H, S, D});
  in.v = torch::randn({B, H, S, D});
  in.q_gate = torch::randn({B, H, S, D});
  in.k_gate = torch::randn({B, H, S, D});
  return in;
}

}  // namespace

TEST(HybridCore, InitialisationFollowsTheSpec) {
  StudentConfig cfg;
  HybridCore core(/*hidden=*/32, /*heads=*/4, /*head_dim=*/8, cfg);
  auto x = torch::randn({1, 4, 5, 8});
  EXPECT_TRUE(torch::allclose(core.feature_map(x, core.feature_q), torch::softmax(x, -1), 1e-6, 1e-6));
  auto forget = torch::sigmoid(core.fgate_b);
  EXPECT_NEAR(forget.min().item<double>(), 0.9, 1e-6);
  EXPECT_NEAR(forget.max().item<double>(), 0.999, 1e-6);
  EXPECT_TRUE(torch::all(core.igate_b == cfg.input_gate_bias).item<bool>());
  auto in = random_inputs(1, 4, 5, 8, 32);
  auto o = core.output_gate(in);
  EXPECT_TRUE(torch::allclose(o, torch::full_like(o, 1.0 / (1.0 + std::exp(2.0)))));  // local branch dominates
  auto [i, f] = core.gates(in.x);
  EXPECT_EQ(i.sizes(), (std::vector<int64_t>{1, 4, 5}));
  cfg.feature_map = "hedgehog_pm";
  HybridCore pm(32, 4, 8, cfg);
  EXPECT_EQ(pm.feature_map(x, pm.feature_q).size(-1), 16);
}

TEST(HybridCore, ForwardIsTheSpecsComposition) {
  torch::manual_seed(1);
  StudentConfig cfg = small_window();
  HybridCore core(16, 2, 8, cfg);
  {  // move away from the init, so every parameter matters
    torch::NoGradGuard g;
    for (auto& p : core.parameters()) p.add_(torch::randn_like(p) * 0.3);
  }
  auto in = random_inputs(2, 2, 13, 8, 16);
  const at::Tensor got = core.forward(in);

  // By hand, in float64: feature maps, capped gates, parallel mLSTM, dense window, gate.
  auto d = [](const at::Tensor& t) { return t.to(torch::kDouble); };
  auto phi = [&](const at::Tensor& x, const at::Tensor& w) { return torch::softmax(torch::einsum("bhsd,hdf->bhsf", {d(x), d(w)}), -1); };
  auto cap = [](const at::Tensor& z) { return torch::tanh(z / 15.0) * 15.0; };
  auto ig = cap(torch::einsum("bsd,hd->bhs", {d(in.x), d(core.igate_w)}) + d(core.igate_b).view({1, -1, 1}));
  auto fg = cap(torch::einsum("bsd,hd->bhs", {d(in.x), d(core.fgate_w)}) + d(core.fgate_b).view({1, -1, 1}));
  auto global = ops::reference::mlstm_parallel(phi(in.q, core.feature_q), phi(in.k, core.feature_k), d(in.v), ig, fg).first;
  auto local = ops::reference::window_attention_dense(d(in.q), d(in.k), d(in.v), cfg.window, cfg.sinks);
  auto u = d(core.ogate_w);
  auto z = torch::einsum("bhsd,hd->bhs", {d(in.q_gate), u.narrow(1, 0, 8)}) +
           torch::einsum("bhsd,hd->bhs", {d(in.k_gate), u.narrow(1, 8, 8)}) +
           torch::einsum("bhsd,hd->bhs", {d(in.v), u.narrow(1, 16, 8)}) + d(core.ogate_b).view({1, -1, 1});
  auto o = torch::sigmoid(z).unsqueeze(-1);
  auto expected = o * global + (1 - o) * local;
  EXPECT_LT(((got.to(torch::kDouble) - expected).norm() / expected.norm()).item<double>(), 1e-5);

  // Gradients reach every new parameter.
  got.square().sum().backward();
  for (const auto& item : core.named_parameters())
    EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0.0) << item.key();
}

TEST(StudentModel, CopiesTheTeacherAndOnlyAddsTheHybridParameters) {
  auto teacher = tiny_teacher();
  auto s = student::student_from_teacher(*teacher, small_window());
  std::map<std::string, at::Tensor> t;
  for (const auto& item : teacher->named_parameters(true)) t[item.key()] = item.value();
  for (const auto& [name, p] : s->copied_parameters()) {
    ASSERT_TRUE(t.count(name)) << name;
    EXPECT_TRUE(torch::equal(t[name], p)) << name;
  }
  EXPECT_EQ(s->copied_parameters().size(), t.size());
  EXPECT_EQ(s->new_parameters().size(), 2u * student::hybrid_parameter_names().size());
  const auto j = s->config_json();
  EXPECT_EQ(j["model_type"], "xlstm_hybrid");
  EXPECT_EQ(j["student"]["teacher_model_type"], "llama");
  EXPECT_EQ(j["student"]["window"], 6);
  EXPECT_EQ(j["hidden_size"], 32);
}

TEST(StudentModel, IncrementalDecodingMatchesTheFullForward) {
  auto teacher = tiny_teacher();
  auto s = student::student_from_teacher(*teacher, small_window());
  {  // leave the init so the mLSTM branch matters
    torch::NoGradGuard g;
    for (auto& [name, p] : s->new_parameters()) p.add_(torch::randn_like(p) * 0.2);
  }
  torch::NoGradGuard no_grad;
  const int64_t T = 21;  // > window + sinks: the ring buffer wraps
  auto ids = torch::randint(0, 50, {2, T}, torch::kLong);
  const at::Tensor full = s->forward(ids);
  auto cache = s->new_cache(2);
  std::vector<at::Tensor> pieces;
  pieces.push_back(s->forward(ids.narrow(1, 0, 5), cache.get()));  // prefill 5
  for (int64_t t = 5; t < T; ++t) pieces.push_back(s->forward(ids.narrow(1, t, 1), cache.get()));
  const at::Tensor incremental = torch::cat(pieces, 1);
  EXPECT_EQ(cache->length(), T);
  const double err = ((incremental - full).norm() / full.norm()).item<double>();
  EXPECT_LT(err, 1e-5);
}

TEST(StudentModel, SavedAndReloadedGivesTheSameLogits) {
  student::register_student();
  auto teacher = tiny_teacher("qwen2");
  auto s = student::student_from_teacher(*teacher, small_window());
  {
    torch::NoGradGuard g;
    for (auto& [name, p] : s->new_parameters()) p.add_(torch::randn_like(p) * 0.2);
  }
  const auto dir = std::filesystem::temp_directory_path() / ("xd_student_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  models::save_model(*s, dir.string());
  auto loaded = models::load_model(dir.string(), "cpu", at::kFloat);
  ASSERT_NE(std::dynamic_pointer_cast<student::StudentModel>(loaded), nullptr);
  torch::NoGradGuard no_grad;
  auto ids = torch::randint(0, 50, {1, 17}, torch::kLong);
  EXPECT_TRUE(torch::equal(loaded->forward(ids), s->forward(ids)));
  std::filesystem::remove_all(dir);
}
