// Losses and the optimizer against hand-computed values (plain double loops); Stage I's
// micro-batch against its traced definition.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <vector>

#include "train/session.h"
#include "xdistill/models/decoder.h"
#include "xdistill/student/student_model.h"
#include "xdistill/train/adamw.h"
#include "xdistill/train/losses.h"
#include "xdistill/util/error.h"

using namespace xd::train;

namespace {
double logsumexp(const std::vector<double>& x) {
  double m = -INFINITY;
  for (double v : x) m = std::max(m, v);
  double s = 0;
  for (double v : x) s += std::exp(v - m);
  return m + std::log(s);
}
}  // namespace

TEST(DistillLoss, PartsEqualHandComputedValues) {
  // B=1, T=3, V=6, k=3; position 1 is masked out.
  const int T = 3, V = 6, K = 3;
  torch::manual_seed(11);
  auto logits = torch::randn({1, T, V}, torch::kDouble) * 2;
  auto teacher_logits = torch::randn({1, T, V}, torch::kDouble) * 2;
  auto targets = torch::tensor({{4, 0, 2}}, torch::kLong);
  auto mask = torch::tensor({{1, 0, 1}}, torch::kUInt8);
  auto [ids, logprobs] = teacher_top_k(teacher_logits.to(torch::kFloat), K);
  const double tau = 2.0;
  auto parts = distill_loss(logits.to(torch::kFloat), targets, mask, ids, logprobs, {0.9, 0.1, tau});

  double ce = 0, kl = 0;
  int count = 0;
  for (int t = 0; t < T; ++t) {
    if (t == 1) continue;
    std::vector<double> s(V), te(V);
    for (int v = 0; v < V; ++v) {
      s[v] = logits[0][t][v].item<double>();
      te[v] = teacher_logits[0][t][v].item<double>();
    }
    ce += logsumexp(s) - s[targets[0][t].item<int64_t>()];
    // The teacher's top-3 by hand: sort indices by logit.
    std::vector<int> order(V);
    for (int v = 0; v < V; ++v) order[v] = v;
    std::sort(order.begin(), order.end(), [&](int a, int b) { return te[a] > te[b]; });
    std::vector<double> tp, sp;
    for (int j = 0; j < K; ++j) {
      EXPECT_EQ(ids[0][t][j].item<int64_t>(), order[j]);
      tp.push_back(te[order[j]] / tau);
      sp.push_back(s[order[j]] / tau);
    }
    const double zt = logsumexp(tp), zs = logsumexp(sp);
    for (int j = 0; j < K; ++j) kl += std::exp(tp[j] - zt) * ((tp[j] - zt) - (sp[j] - zs));
    ++count;
  }
  ce /= count;
  kl /= count;
  EXPECT_EQ(parts.positions, 2);
  EXPECT_NEAR(parts.ce.item<double>(), ce, 1e-5);
  EXPECT_NEAR(parts.kl.item<double>(), kl, 1e-5);
  EXPECT_NEAR(parts.total.item<double>(), 0.9 * ce + 0.1 * kl, 1e-5);
  EXPECT_GT(kl, 1e-3);  // the case is not degenerate

  // The same teacher as student: KL vanishes.
  auto same = distill_loss(teacher_logits.to(torch::kFloat), targets, mask, ids, logprobs, {0.9, 0.1, 1.0});
  EXPECT_NEAR(same.kl.item<double>(), 0.0, 1e-6);
}

TEST(DistillLoss, GradientOfKlMatchesFiniteDifferences) {
  torch::manual_seed(5);
  auto logits = torch::randn({2, 4, 9}, torch::kDouble).requires_grad_(true);
  auto targets = torch::randint(0, 9, {2, 4}, torch::kLong);
  auto mask = torch::ones({2, 4}, torch::kBool);
  auto [ids, lp] = teacher_top_k(torch::randn({2, 4, 9}), 4);
  auto f = [&](const torch::Tensor& x) {
    auto p = distill_loss(x, targets, mask, ids, lp.to(torch::kDouble), {0.9, 0.1, 1.0});
    return p.total;
  };
  // distill_loss computes in float32: compare autograd with central differences loosely.
  auto loss = f(logits);
  loss.backward();
  auto g = logits.grad();
  const double h = 1e-2;
  for (int64_t idx : {0, 7, 20, 41, 70}) {
    auto a = logits.detach().clone(), b = logits.detach().clone();
    a.view(-1)[idx] += h;
    b.view(-1)[idx] -= h;
    const double fd = (f(a).item<double>() - f(b).item<double>()) / (2 * h);
    EXPECT_NEAR(g.view(-1)[idx].item<double>(), fd, 2e-3) << idx;
  }
}

TEST(AlignmentLoss, SumOverPositionsMeanOverFeatures) {
  auto s = torch::zeros({2, 3, 4});
  auto t = torch::zeros({2, 3, 4});
  t[0][1][2] = 2.0;  // one squared error of 4 -> per-position mean 1, row 0 sum 1
  t[1][0][0] = 4.0;  // 16 -> 4 in row 1
  EXPECT_FLOAT_EQ(alignment_loss(s, t).item<float>(), (1.0f + 4.0f) / 2.0f);
}

TEST(AdamW, MatchesTheScalarDefinitionWithMasterWeights) {
  torch::manual_seed(3);
  auto w32 = torch::randn({3, 4}).requires_grad_(true);
  auto b16 = torch::randn({4}).to(torch::kBFloat16).requires_grad_(true);
  AdamWOptions opt{0.9, 0.95, 1e-8, 0.1, false};
  AdamW adam({{"w", w32}, {"b", b16}}, opt);
  EXPECT_EQ(adam.num_parameters(), 16);

  // Scalar reference in double.
  std::vector<double> pw(12), pb(4), mw(12, 0), vw(12, 0), mb(4, 0), vb(4, 0);
  for (int i = 0; i < 12; ++i) pw[i] = w32.view(-1)[i].item<double>();
  for (int i = 0; i < 4; ++i) pb[i] = b16[i].item<double>();
  auto ref_step = [&](std::vector<double>& p, std::vector<double>& m, std::vector<double>& v,
                      const std::vector<double>& g, double lr, int t, bool decay) {
    for (size_t i = 0; i < p.size(); ++i) {
      if (decay) p[i] *= 1 - lr * 0.1;
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.95 * v[i] + 0.05 * g[i] * g[i];
      const double mh = m[i] / (1 - std::pow(0.9, t)), vh = v[i] / (1 - std::pow(0.95, t));
      p[i] -= lr * mh / (std::sqrt(vh) + 1e-8);
    }
  };
  for (int t = 1; t <= 3; ++t) {
    // Two micro-batches accumulate into the fp32 buffers.
    std::vector<double> gw(12, 0), gb(4, 0);
    for (int micro = 0; micro < 2; ++micro) {
      auto x = torch::randn({4});
      auto loss = (torch::matmul(w32, x).sum() * (t + micro)) + (b16.to(torch::kFloat) * x).square().sum();
      loss.backward();
      auto gw_t = w32.grad().clone();
      auto gb_t = b16.grad().to(torch::kFloat).clone();
      for (int i = 0; i < 12; ++i) gw[i] += gw_t.view(-1)[i].item<double>();
      for (int i = 0; i < 4; ++i) gb[i] += gb_t[i].item<double>();
      adam.accumulate_gradients();
      EXPECT_FALSE(w32.grad().defined());
    }
    const double lr = 1e-2 * t;
    ref_step(pw, mw, vw, gw, lr, t, true);
    ref_step(pb, mb, vb, gb, lr, t, false);  // 1-D: not decayed
    adam.step(lr);
  }
  for (int i = 0; i < 12; ++i) EXPECT_NEAR(w32.view(-1)[i].item<double>(), pw[i], 1e-5);
  auto state = adam.state_tensors();
  torch::Tensor master_b;
  for (auto& [name, t] : state)
    if (name == "master/b") master_b = t;
  ASSERT_TRUE(master_b.defined());
  EXPECT_EQ(master_b.scalar_type(), torch::kFloat);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(master_b[i].item<double>(), pb[i], 1e-5);                // fp32 master is exact
    EXPECT_EQ(b16[i].item<float>(), master_b[i].to(torch::kBFloat16).item<float>());  // bf16 copy of it
  }
}

TEST(AdamW, ClipsTheGlobalNormAndRestoresState) {
  auto a = torch::zeros({2}).requires_grad_(true);
  auto b = torch::zeros({1}).requires_grad_(true);
  AdamW adam({{"a", a}, {"b", b}}, {});
  a.mutable_grad() = torch::tensor({3.0f, 0.0f});
  b.mutable_grad() = torch::tensor({4.0f});
  adam.accumulate_gradients();
  EXPECT_NEAR(adam.clip_grad_norm(1.0), 5.0, 1e-6);
  EXPECT_NEAR(adam.gradients()[0][0].item<double>(), 0.6, 1e-6);
  EXPECT_NEAR(adam.clip_grad_norm(0.0), 1.0, 1e-5);
  adam.step(0.1);
  auto saved = adam.state_tensors();
  std::map<std::string, torch::Tensor> copy;
  for (auto& [n, t] : saved) copy[n] = t.clone();

  auto a2 = torch::zeros({2}).requires_grad_(true), b2 = torch::zeros({1}).requires_grad_(true);
  AdamW again({{"a", a2}, {"b", b2}}, {});
  again.load_state(copy, adam.steps_taken());
  EXPECT_TRUE(torch::equal(a2, a));
  EXPECT_EQ(again.steps_taken(), 1);
  copy.erase("exp_avg/b");
  EXPECT_THROW(again.load_state(copy, 1), xd::Error);
}

TEST(AdamW, SkipsAStepWhoseGradientIsNotFinite) {
  auto a = torch::ones({2}).requires_grad_(true);
  AdamW adam({{"a", a}}, {});
  a.mutable_grad() = torch::tensor({1.0f, std::numeric_limits<float>::infinity()});
  adam.accumulate_gradients();
  EXPECT_FALSE(std::isfinite(adam.clip_grad_norm(1.0)));
  EXPECT_FALSE(adam.step(0.1));
  EXPECT_TRUE(torch::equal(a, torch::ones({2})));  // weights untouched
  EXPECT_EQ(adam.steps_taken(), 0);
  EXPECT_EQ(adam.gradients()[0].abs().sum().item<float>(), 0.0f);  // the bad gradient is dropped
  // The moments were not poisoned: a finite gradient then steps normally, without clip_grad_norm.
  a.mutable_grad() = torch::tensor({1.0f, -1.0f});
  adam.accumulate_gradients();
  EXPECT_TRUE(adam.step(0.1));
  EXPECT_EQ(adam.steps_taken(), 1);
  EXPECT_TRUE(torch::isfinite(a).all().item<bool>());
  // First Adam step: m^ = g, v^ = g^2, so each weight moves by -lr * sign(g) (1-D: no decay).
  EXPECT_NEAR(a[0].item<float>(), 0.9f, 1e-5);
  EXPECT_NEAR(a[1].item<float>(), 1.1f, 1e-5);
}

// Stage I's micro-batch (teacher and student walking the layers together, the student
// core fed the teacher's own projections) against the definition: every student mixer
// run on the teacher's input to its layer, MSE against the teacher's mixer output before
// W_o, summed over layers. Same loss and the same gradients of the new parameters; a
// GQA teacher (4 query heads, 2 key/value heads) with per-head q/k norms (Qwen3).
TEST(AlignStep, WalkingTheLayersTogetherEqualsTheTracedDefinition) {
  torch::manual_seed(3);
  const nlohmann::json c = {{"model_type", "qwen3"},   {"hidden_size", 64},       {"intermediate_size", 96},
                            {"num_hidden_layers", 3},  {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                            {"head_dim", 16},          {"vocab_size", 50},         {"max_position_embeddings", 256},
                            {"rms_norm_eps", 1e-6},    {"rope_theta", 10000.0},    {"tie_word_embeddings", false}};
  const auto config = xd::models::parse_model_config(c, "test");
  auto teacher = std::make_shared<xd::models::Decoder>(config, xd::models::plan_from_config(config),
                                                       at::TensorOptions().dtype(at::kFloat));
  torch::NoGradGuard init;
  for (auto& item : teacher->named_parameters(true)) item.value().copy_(torch::randn(item.value().sizes()) * 0.2);
  xd::student::StudentConfig sc;
  sc.window = 8;
  sc.sinks = 2;
  auto student = xd::student::student_from_teacher(*teacher, sc);
  for (auto& [name, p] : student->new_parameters()) p.add_(torch::randn(p.sizes()) * 0.3);

  xd::data::Batch batch;
  batch.rows = 2;
  batch.seq_len = 21;
  for (int i = 0; i < batch.rows * batch.seq_len; ++i) batch.inputs.push_back((i * 7 + 3) % 50);
  TrainSession session;
  session.recipe.stage = Stage::Align;
  session.teacher = teacher;
  session.model = student;
  std::vector<at::Tensor> params;
  for (auto& [name, p] : student->new_parameters()) params.push_back(p);
  MicroLosses got;
  {
    torch::AutoGradMode grad(true);
    got = run_micro_batch(session, batch, 1.0);
  }
  std::vector<at::Tensor> got_grads;
  for (auto& p : params) {
    got_grads.push_back(p.grad().clone());
    p.mutable_grad() = at::Tensor();
  }

  torch::AutoGradMode grad(true);
  const at::Tensor ids = batch_tensor(batch.inputs, batch, at::kCPU);
  xd::models::ForwardTrace trace;
  {
    torch::NoGradGuard no_grad;
    teacher->hidden_states(ids, nullptr, &trace);
  }
  at::Tensor want = torch::zeros({});
  for (size_t l = 0; l < student->blocks().size(); ++l) {
    auto& block = *student->blocks()[l];
    at::Tensor x;
    {
      torch::NoGradGuard no_grad;
      x = block.mixer_norm->forward(trace.layer_inputs[l]);
    }
    want = want + alignment_loss(block.mixer->forward_pre_out(x, student->context(l, 0)), trace.mixer_outputs[l]);
  }
  want.backward();
  EXPECT_NEAR(got.total.item<double>(), want.item<double>(), 1e-5 * want.item<double>());
  ASSERT_GT(want.item<double>(), 0.0);
  for (size_t i = 0; i < params.size(); ++i) {
    ASSERT_TRUE(params[i].grad().defined());
    const double rel = ((got_grads[i] - params[i].grad()).norm() / params[i].grad().norm()).item<double>();
    EXPECT_LT(rel, 1e-4) << "parameter " << i;
  }
}
