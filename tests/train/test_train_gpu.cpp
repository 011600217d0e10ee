// The CUDA forms of the training losses, AdamW, the hybrid mix, and the backward of
// RMSNorm and of SiLU * up (kernels/loss_rows.cu, adamw_step.cu, hybrid_mix.cu,
// rmsnorm_backward.cu, silu_mul_backward.cu) against float64 oracles written out here,
// and against the ATen forms they replace (XD_FUSED_LOSSES=off, XD_FUSED_ADAMW=off).
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "ops/hybrid_mix.h"
#include "ops/row_kernels.h"
#include "xdistill/train/adamw.h"
#include "xdistill/train/losses.h"
#include "xdistill/util/error.h"

using namespace xd::train;

namespace {

#define XD_REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

double rel_err(const at::Tensor& a, const at::Tensor& ref) {
  const auto x = a.detach().to(at::kCPU, at::kDouble), r = ref.detach().to(at::kCPU, at::kDouble);
  if (!at::isfinite(x).all().item<bool>()) return INFINITY;
  const double n = r.norm().item<double>();
  return (x - r).norm().item<double>() / (n > 0 ? n : 1.0);
}

struct EnvOverride {
  std::string name;
  EnvOverride(const char* n, const char* value) : name(n) { setenv(n, value, 1); }
  ~EnvOverride() { unsetenv(name.c_str()); }
};

// distill_loss in float64, written out: CE at temperature 1, KL over the teacher's
// ids renormalised at temperature tau, both averaged over the unmasked positions.
std::pair<at::Tensor, at::Tensor> distill_oracle(const at::Tensor& logits64, const at::Tensor& targets,
                                                 const at::Tensor& mask, const at::Tensor& ids,
                                                 const at::Tensor& logprobs, double tau) {
  const auto w = mask.to(at::kDouble);
  const auto count = w.sum().clamp_min(1.0);
  const auto lse = logits64.logsumexp(-1);
  const auto ce = ((lse - logits64.gather(-1, targets.unsqueeze(-1)).squeeze(-1)) * w).sum() / count;
  const auto log_p = (logprobs.to(at::kDouble) / tau).log_softmax(-1);
  const auto log_q = (logits64.gather(-1, ids) / tau).log_softmax(-1);
  const auto kl = ((log_p.exp() * (log_p - log_q)).sum(-1) * w).sum() / count;
  return {ce, kl};
}

void check_distill(int64_t B, int64_t T, int64_t V, int64_t k, at::ScalarType dtype, double grad_tol) {
  torch::manual_seed(B * 1000 + V);
  const auto cpu64 = at::TensorOptions().dtype(at::kDouble);
  const auto logits = (at::randn({B, T, V}, cpu64) * 3).to(dtype);
  const auto teacher = at::randn({B, T, V}, cpu64) * 3;
  const auto targets = at::randint(0, V, {B, T}, at::kLong);
  auto mask = at::rand({B, T}, cpu64) > 0.2;
  const auto [ids, logprobs] = teacher_top_k(teacher.to(at::kFloat), k);
  const double tau = 2.0;
  const DistillWeights weights{0.9, 0.1, tau};

  auto leaf64 = logits.to(at::kDouble).requires_grad_(true);
  auto [ce64, kl64] = distill_oracle(leaf64, targets, mask, ids, logprobs, tau);
  const auto g64 = torch::autograd::grad({ce64 * 0.9 + kl64 * 0.1}, {leaf64})[0];

  const auto cuda = [](const at::Tensor& t) { return t.to(at::kCUDA); };
  auto run = [&](bool fused) {
    EnvOverride env("XD_FUSED_LOSSES", fused ? "on" : "off");
    auto leaf = cuda(logits).requires_grad_(true);
    const auto parts = distill_loss(leaf, cuda(targets), cuda(mask), cuda(ids), cuda(logprobs), weights);
    const auto g = torch::autograd::grad({parts.total}, {leaf})[0];
    return std::make_tuple(parts, g);
  };
  const auto [parts, grad] = run(true);
  const auto [aten_parts, aten_grad] = run(false);
  const std::string what = std::string(c10::toString(dtype)) + " V=" + std::to_string(V);
  EXPECT_LE(rel_err(parts.ce, ce64), 1e-6) << what << " ce " << parts.ce.item<double>() << " vs " << ce64.item<double>();
  EXPECT_LE(rel_err(parts.kl, kl64), 1e-5) << what << " kl " << parts.kl.item<double>() << " vs " << kl64.item<double>();
  EXPECT_EQ(grad.scalar_type(), dtype);
  EXPECT_LE(rel_err(grad, g64), grad_tol) << what << " d logits";
  // No worse than the ATen form it replaces, which rounds the same float32 sums once.
  EXPECT_LE(rel_err(grad, g64), rel_err(aten_grad, g64) * 1.05 + 1e-7) << what;
  EXPECT_NEAR(parts.ce.item<double>(), aten_parts.ce.item<double>(), 1e-5 * std::abs(ce64.item<double>()));
  // Masked rows get no gradient at all.
  const auto masked_rows = grad.to(at::kCPU, at::kDouble).abs().sum(-1).masked_select(mask.logical_not());
  EXPECT_EQ(masked_rows.numel() == 0 ? 0.0 : masked_rows.max().item<double>(), 0.0) << what;
}

}  // namespace

TEST(FusedLossesGpu, DistillLossMatchesFloat64Oracle) {
  XD_REQUIRE_CUDA();
  check_distill(2, 37, 1000, 16, at::kBFloat16, 4e-3);  // 16-byte rows
  check_distill(1, 29, 1003, 7, at::kBFloat16, 4e-3);   // rows not on 16 bytes: the scalar loop
  check_distill(2, 21, 5000, 64, at::kFloat, 1e-6);
  check_distill(1, 9, 2048, 1, at::kHalf, 4e-3);
}

TEST(FusedLossesGpu, DistillLossRejectsIdsOutsideTheVocabulary) {
  XD_REQUIRE_CUDA();
  const auto opts = at::TensorOptions().device(at::kCUDA);
  const auto logits = at::randn({1, 4, 50}, opts.dtype(at::kBFloat16));
  auto targets = at::zeros({1, 4}, opts.dtype(at::kLong));
  targets[0][2] = 50;
  const auto mask = at::ones({1, 4}, opts.dtype(at::kBool));
  try {
    distill_loss(logits, targets, mask, at::Tensor(), at::Tensor(), {1.0, 0.0, 1.0});
    FAIL() << "an out-of-vocabulary target was accepted";
  } catch (const xd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the vocabulary of 50"), std::string::npos) << e.what();
  }
}

TEST(FusedLossesGpu, TeacherTopKLogProbsMatchFloat64) {
  XD_REQUIRE_CUDA();
  torch::manual_seed(5);
  const auto logits64 = at::randn({2, 11, 3001}, at::kDouble) * 4;
  const auto logits = logits64.to(at::kBFloat16);
  const auto [ids, logprobs] = teacher_top_k(logits.to(at::kCUDA), 32);
  const auto exact = logits.to(at::kDouble).log_softmax(-1).gather(-1, ids.to(at::kCPU));
  EXPECT_LE(rel_err(logprobs, exact), 1e-6);
  // Sorted, and the k largest values (ties may pick other ids of the same value).
  const auto top = std::get<0>(logits.to(at::kDouble).topk(32, -1));
  EXPECT_LE(rel_err(logits.to(at::kDouble).gather(-1, ids.to(at::kCPU)), top), 0.0);
}

TEST(FusedLossesGpu, AlignmentLossMatchesFloat64Oracle) {
  XD_REQUIRE_CUDA();
  for (const auto& [F, dtype] : {std::pair<int64_t, at::ScalarType>{264, at::kBFloat16}, {100, at::kBFloat16},
                                 {96, at::kFloat}}) {
    torch::manual_seed(F);
    const auto student = at::randn({2, 33, F}, at::kDouble).to(dtype);
    const auto teacher = (student.to(at::kDouble) + 0.1 * at::randn({2, 33, F}, at::kDouble)).to(dtype);
    auto leaf64 = student.to(at::kDouble).requires_grad_(true);
    const auto loss64 = (leaf64 - teacher.to(at::kDouble)).square().mean(-1).sum(1).mean();
    const auto g64 = torch::autograd::grad({loss64 * 3.0}, {leaf64})[0];
    auto leaf = student.to(at::kCUDA).requires_grad_(true);
    const auto loss = alignment_loss(leaf, teacher.to(at::kCUDA));
    const auto g = torch::autograd::grad({loss * 3.0}, {leaf})[0];
    const std::string what = std::string(c10::toString(dtype)) + " F=" + std::to_string(F);
    EXPECT_LE(rel_err(loss, loss64), 1e-6) << what;
    EXPECT_LE(rel_err(g, g64), dtype == at::kFloat ? 1e-6 : 4e-3) << what;
    EXPECT_EQ(g.scalar_type(), dtype) << what;
  }
}

namespace {

// AdamW in float64: decoupled decay, bias-corrected moments (adamw.h).
struct Adam64 {
  at::Tensor w, m, v;
  void step(const at::Tensor& g, double lr, double b1, double b2, double eps, double wd, int t) {
    w = w * (1 - lr * wd);
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
    w = w - (lr / bc1) * m / (v.sqrt() / std::sqrt(bc2) + eps);
  }
};

void check_adamw(bool buffers) {
  torch::manual_seed(buffers ? 3 : 4);
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  // bf16 matrix (vector path), bf16 of odd length (scalar tail), float32 matrix (its own master),
  // a bf16 vector that never gets a gradient (decay off for vectors: only the moments' decay acts).
  std::vector<std::pair<std::string, at::Tensor>> params = {
      {"a", at::randn({64, 33}, cuda).to(at::kBFloat16)},
      {"b", at::randn({1003}, cuda).to(at::kBFloat16)},
      {"c", at::randn({17, 5}, cuda)},
      {"d", at::randn({12}, cuda).to(at::kBFloat16)}};
  std::vector<Adam64> ref;
  for (auto& [name, p] : params) {
    const auto w = p.to(at::kCPU, at::kDouble);
    ref.push_back({w, at::zeros_like(w), at::zeros_like(w)});
  }
  AdamWOptions opt;
  opt.fp32_gradient_buffers = buffers;
  AdamW adam(params, opt);
  ASSERT_TRUE(adam.uses_kernel());
  ASSERT_EQ(adam.has_gradient_buffers(), buffers);
  const double lr = 1e-2;
  for (int t = 1; t <= 3; ++t) {
    std::vector<at::Tensor> grads;
    double sq = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      if (i == 3) {
        grads.push_back(at::zeros_like(ref[i].w));
        continue;
      }
      auto g = (at::randn(params[i].second.sizes(), cuda) * (t == 2 ? 50.0 : 0.3)).to(params[i].second.dtype());
      params[i].second.mutable_grad() = g;
      grads.push_back(g.to(at::kCPU, at::kDouble));
      sq += grads.back().square().sum().item<double>();
    }
    adam.accumulate_gradients();
    const double norm = adam.clip_grad_norm(1.0);  // step 2's gradients are clipped
    EXPECT_NEAR(norm, std::sqrt(sq), 1e-5 * std::sqrt(sq));
    const double coef = norm > 1.0 ? 1.0 / (norm + 1e-6) : 1.0;
    ASSERT_TRUE(adam.step(lr));
    for (size_t i = 0; i < params.size(); ++i) {
      const bool decayed = params[i].second.dim() >= 2;
      ref[i].step(grads[i] * coef, lr, opt.beta1, opt.beta2, opt.eps, decayed ? opt.weight_decay : 0.0, t);
      EXPECT_FALSE(params[i].second.grad().defined()) << "the step releases .grad";
    }
  }
  const auto state = adam.state_tensors();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params[i].first;
    at::Tensor master, m, v;
    for (const auto& [key, t] : state) {
      if (key == "master/" + name) master = t;
      if (key == "exp_avg/" + name) m = t;
      if (key == "exp_avg_sq/" + name) v = t;
    }
    EXPECT_LE(rel_err(master, ref[i].w), 1e-6) << name << (buffers ? " buffers" : " in place");
    EXPECT_LE(rel_err(m, ref[i].m), 1e-6) << name;
    EXPECT_LE(rel_err(v, ref[i].v), 1e-6) << name;
    // The model's tensor is its master rounded once.
    EXPECT_TRUE(params[i].second.equal(master.to(params[i].second.dtype()))) << name;
  }
}

}  // namespace

TEST(FusedAdamWGpu, MatchesFloat64OracleWithFp32Buffers) {
  XD_REQUIRE_CUDA();
  check_adamw(true);
}

TEST(FusedAdamWGpu, MatchesFloat64OracleReadingGradInPlace) {
  XD_REQUIRE_CUDA();
  check_adamw(false);
}

TEST(FusedAdamWGpu, InPlaceGradientsRefuseASecondMicroBatch) {
  XD_REQUIRE_CUDA();
  std::vector<std::pair<std::string, at::Tensor>> params = {
      {"w", at::randn({8, 8}, at::TensorOptions().device(at::kCUDA)).to(at::kBFloat16)}};
  AdamWOptions opt;
  opt.fp32_gradient_buffers = false;
  AdamW adam(params, opt);
  adam.accumulate_gradients();
  EXPECT_THROW(adam.accumulate_gradients(), xd::Error);
  EXPECT_THROW(adam.gradients(), xd::Error);
}

TEST(FusedAdamWGpu, KernelAndAtenPathsAgree) {
  XD_REQUIRE_CUDA();
  torch::manual_seed(9);
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  const auto w0 = at::randn({300, 41}, cuda).to(at::kBFloat16);
  std::vector<at::Tensor> finals;
  for (const char* mode : {"on", "off"}) {
    EnvOverride env("XD_FUSED_ADAMW", mode);
    std::vector<std::pair<std::string, at::Tensor>> params = {{"w", w0.clone()}};
    AdamW adam(params, AdamWOptions{});
    EXPECT_EQ(adam.uses_kernel(), std::string(mode) == "on");
    torch::manual_seed(10);
    for (int t = 0; t < 4; ++t) {
      params[0].second.mutable_grad() = at::randn({300, 41}, cuda).to(at::kBFloat16);
      adam.accumulate_gradients();
      adam.clip_grad_norm(5.0);
      adam.step(3e-3);
    }
    finals.push_back(adam.state_tensors()[0].second.clone());
  }
  EXPECT_LE(rel_err(finals[0], finals[1]), 1e-6);
}

// The student's branch mix (ops/hybrid_mix.h) against float64, in the layouts the
// hybrid block hands it: global contiguous [B,H,S,Dh], local a [B,H,S,Dh] view of
// [B,S,H,Dh]; Dh = 128 (four elements per lane) and Dh = 6 (one per lane).
TEST(HybridMixGpu, ForwardAndBackwardMatchFloat64) {
  XD_REQUIRE_CUDA();
  for (const auto& [D, dtype] : {std::pair<int64_t, at::ScalarType>{128, at::kBFloat16}, {6, at::kBFloat16},
                                 {64, at::kFloat}}) {
    torch::manual_seed(D);
    const int64_t B = 2, H = 3, S = 19;
    const auto cuda = at::TensorOptions().device(at::kCUDA);
    const auto global = at::randn({B, H, S, D}, cuda).to(dtype);
    const auto local = at::randn({B, S, H, D}, cuda).to(dtype).transpose(1, 2);
    const auto gate = at::rand({B, S, H}, cuda);
    const auto grad = at::randn({B, S, H, D}, cuda).to(dtype);
    ASSERT_TRUE(xd::ops::fused_mix_supported(global, local, gate));
    const auto out = xd::ops::fused_mix_forward(global, local, gate);
    auto [d_global, d_local, d_gate] = xd::ops::fused_mix_backward(grad, global, local, gate, true, true, true);

    const auto g64 = global.to(at::kDouble).transpose(1, 2), l64 = local.to(at::kDouble).transpose(1, 2);
    const auto o64 = gate.to(at::kDouble).unsqueeze(-1), gr64 = grad.to(at::kDouble);
    const double tol = dtype == at::kFloat ? 1e-6 : 4e-3;
    const std::string what = std::string(c10::toString(dtype)) + " Dh=" + std::to_string(D);
    EXPECT_LE(rel_err(out, o64 * g64 + (1 - o64) * l64), tol) << what;
    EXPECT_TRUE(out.is_contiguous()) << what;
    EXPECT_LE(rel_err(d_global, (gr64 * o64).transpose(1, 2)), tol) << what;
    EXPECT_TRUE(d_global.is_contiguous()) << what;
    EXPECT_LE(rel_err(d_local, (gr64 * (1 - o64)).transpose(1, 2)), tol) << what;
    EXPECT_LE(rel_err(d_gate, (gr64 * (g64 - l64)).sum(-1)), 1e-5) << what;
    // Only what is asked for is computed.
    auto [none_global, none_local, only_gate] = xd::ops::fused_mix_backward(grad, global, local, gate, false, false, true);
    EXPECT_FALSE(none_global.defined() || none_local.defined());
    EXPECT_TRUE(only_gate.equal(d_gate)) << what;
  }
}

// RMSNorm with autograd (ops/row_kernels.h) against float64: Llama's w * round(n) and
// OLMo's round(w * n), rows of 256 and 4096 (one and two 16-byte steps per thread at
// 512 threads for 8192), gradients of x and of the weight.
TEST(RmsNormGradGpu, ForwardAndBackwardMatchFloat64) {
  XD_REQUIRE_CUDA();
  EnvOverride on("XD_TRAINING_ROW_KERNELS", "on");
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{37, 256}, {300, 8192}, {5, 96}}) {
    for (bool weight_in_fp32 : {false, true}) {
      torch::manual_seed(rows + cols);
      const auto cuda = at::TensorOptions().device(at::kCUDA);
      const auto x = (at::randn({1, rows, cols}, cuda) * 2).to(at::kBFloat16);
      const auto w = (at::rand({cols}, cuda) + 0.5).to(at::kBFloat16);
      const auto g = at::randn({1, rows, cols}, cuda).to(at::kBFloat16);
      ASSERT_TRUE(xd::ops::fused_norm_grad_supported(x, w));
      auto xl = x.clone().requires_grad_(true), wl = w.clone().requires_grad_(true);
      const auto y = xd::ops::rmsnorm_with_grad(xl, wl, 1e-5, weight_in_fp32);
      const auto grads = torch::autograd::grad({y}, {xl, wl}, {g});
      auto x64 = x.to(at::kDouble).requires_grad_(true), w64 = w.to(at::kDouble).requires_grad_(true);
      const auto y64 = w64 * (x64 * (x64.square().mean(-1, true) + 1e-5).rsqrt());
      const auto g64 = torch::autograd::grad({y64}, {x64, w64}, {g.to(at::kDouble)});
      const std::string what = std::to_string(rows) + "x" + std::to_string(cols) + (weight_in_fp32 ? " OLMo" : " Llama");
      EXPECT_LE(rel_err(y, y64), 4e-3) << what;
      EXPECT_LE(rel_err(grads[0], g64[0]), 4e-3) << what << " dx";
      EXPECT_LE(rel_err(grads[1], g64[1]), 4e-3) << what << " dweight";
      EXPECT_EQ(grads[1].scalar_type(), at::kBFloat16) << what;
    }
  }
}

// SiLU(gate) * up with autograd (ops/row_kernels.h) against float64, 16-byte rows and
// rows of 5 (the element-wise kernel).
TEST(SiluMulGradGpu, ForwardAndBackwardMatchFloat64) {
  XD_REQUIRE_CUDA();
  EnvOverride on("XD_TRAINING_ROW_KERNELS", "on");
  for (const auto& [rows, cols, dtype] : {std::tuple<int64_t, int64_t, at::ScalarType>{33, 512, at::kBFloat16},
                                          {7, 5, at::kBFloat16}, {9, 64, at::kFloat}}) {
    torch::manual_seed(rows * cols);
    const auto cuda = at::TensorOptions().device(at::kCUDA);
    const auto gate = (at::randn({rows, cols}, cuda) * 3).to(dtype), up = at::randn({rows, cols}, cuda).to(dtype);
    const auto g = at::randn({rows, cols}, cuda).to(dtype);
    ASSERT_TRUE(xd::ops::fused_silu_mul_grad_supported(gate, up));
    auto gl = gate.clone().requires_grad_(true), ul = up.clone().requires_grad_(true);
    const auto y = xd::ops::silu_mul_with_grad(gl, ul);
    const auto grads = torch::autograd::grad({y}, {gl, ul}, {g});
    auto g64 = gate.to(at::kDouble).requires_grad_(true), u64 = up.to(at::kDouble).requires_grad_(true);
    const auto y64 = at::silu(g64) * u64;
    const auto want = torch::autograd::grad({y64}, {g64, u64}, {g.to(at::kDouble)});
    const double tol = dtype == at::kFloat ? 1e-6 : 4e-3;
    const std::string what = std::to_string(rows) + "x" + std::to_string(cols) + " " + c10::toString(dtype);
    EXPECT_LE(rel_err(y, y64), tol) << what;
    EXPECT_LE(rel_err(grads[0], want[0]), tol) << what << " d gate";
    EXPECT_LE(rel_err(grads[1], want[1]), tol) << what << " d up";
  }
}
