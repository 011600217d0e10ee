// Sliding-window + sink attention on the CPU: blocked form against the dense
// masked oracle (outputs and gradients, lengths around the window), the exact
// visibility rule on a hand-built case, grouped-query attention against repeated
// keys, and the generation cache.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

#include "ops_test_util.h"
#include "xdistill/ops/window_attention.h"
#include "xdistill/util/error.h"

namespace {

using namespace xd;
const auto kF64 = at::TensorOptions().dtype(at::kDouble);

std::vector<at::Tensor> grads_of(const at::Tensor& out, const std::vector<at::Tensor>& leaves, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto g = at::randn(out.sizes(), gen, kF64).to(out.dtype());
  return torch::autograd::grad({(out * g).sum()}, leaves);
}

TEST(WindowReference, BlockedMatchesDenseAroundTheWindow) {
  at::manual_seed(1);
  const int64_t window = 16;
  for (int64_t S : {1, 15, 16, 17, 20, 21, 300}) {
    for (int64_t sinks : {0, 4}) {
      auto q = at::randn({2, 2, S, 8}, kF64).requires_grad_(true);
      auto k = at::randn({2, 2, S, 8}, kF64).requires_grad_(true);
      auto v = at::randn({2, 2, S, 8}, kF64).requires_grad_(true);
      const auto ref = ops::reference::window_attention_dense(q, k, v, window, sinks);
      const auto out = ops::window_attention(q, k, v, window, sinks);  // CPU: blocked
      const std::string what = "S=" + std::to_string(S) + " sinks=" + std::to_string(sinks);
      XD_EXPECT_CLOSE(out, ref, 1e-12, what);
      const auto g_ref = grads_of(ref, {q, k, v}, 3), g = grads_of(out, {q, k, v}, 3);
      for (int j = 0; j < 3; ++j) XD_EXPECT_CLOSE(g[j], g_ref[j], 1e-12, what + " d" + "qkv"[j]);
    }
  }
}

// With all logits equal (q = 0), each output is the mean of the visible values,
// which makes the visibility rule checkable by hand.
TEST(WindowReference, VisibilityRuleByHand) {
  const int64_t S = 12, window = 3, sinks = 2;
  const auto q = at::zeros({1, 1, S, 1}, kF64), k = at::randn({1, 1, S, 1}, kF64);
  const auto v = at::arange(S, kF64).pow(2).view({1, 1, S, 1});
  const auto out = ops::window_attention(q, k, v, window, sinks);
  for (int64_t t = 0; t < S; ++t) {
    double sum = 0;
    int count = 0;
    for (int64_t j = 0; j <= t; ++j)
      if (t - j < window || j < sinks) sum += double(j * j), ++count;
    EXPECT_NEAR(out[0][0][t][0].item<double>(), sum / count, 1e-12) << "t=" << t;
  }
}

TEST(WindowReference, CacheStepsEqualOneCall) {
  at::manual_seed(2);
  const int64_t S = 29, window = 8, sinks = 3, prompt = 11;
  const auto q = at::randn({2, 3, S, 4}), k = at::randn({2, 3, S, 4}), v = at::randn({2, 3, S, 4});
  const auto ref = ops::window_attention(q, k, v, window, sinks);
  ops::WindowCache cache(2, 3, 4, window, sinks, q.options());
  cache.append(k.narrow(2, 0, prompt), v.narrow(2, 0, prompt));
  std::vector<at::Tensor> outs;
  for (int64_t t = prompt; t < S; ++t)
    outs.push_back(ops::window_attention_step(q.narrow(2, t, 1), k.narrow(2, t, 1), v.narrow(2, t, 1), cache));
  XD_EXPECT_CLOSE(at::cat(outs, 2), ref.narrow(2, prompt, S - prompt), 1e-5, "steps after a prompt");
  EXPECT_EQ(cache.length, S);
}

// Grouped-query attention: k, v with Hk heads give exactly what the same keys
// repeated per query head give (at::repeat_interleave, as HF's repeat_kv), outputs
// and gradients (those of k, v summed over each group by autograd). Inputs arrive as
// [B,H,S,D] views of [B,S,H,D] tensors, as the student's projections make them.
TEST(WindowReference, GroupedQueryEqualsRepeatedKeys) {
  at::manual_seed(5);
  const int64_t B = 2, H = 6, S = 40, D = 8, window = 16, sinks = 3;
  for (int64_t Hk : {1, 2, 3}) {
    auto q = at::randn({B, S, H, D}, kF64).requires_grad_(true);
    auto k = at::randn({B, S, Hk, D}, kF64).requires_grad_(true);
    auto v = at::randn({B, S, Hk, D}, kF64).requires_grad_(true);
    const auto qh = q.transpose(1, 2), kh = k.transpose(1, 2), vh = v.transpose(1, 2);
    const auto out = ops::window_attention(qh, kh, vh, window, sinks);
    const auto ref = ops::window_attention(qh, kh.repeat_interleave(H / Hk, 1), vh.repeat_interleave(H / Hk, 1),
                                           window, sinks);
    const auto dense = ops::reference::window_attention_dense(qh, kh, vh, window, sinks);
    const std::string what = "Hk=" + std::to_string(Hk);
    ASSERT_EQ(out.sizes(), qh.sizes()) << what;
    XD_EXPECT_CLOSE(out, ref, 1e-12, what + " out");
    XD_EXPECT_CLOSE(dense, ref, 1e-12, what + " dense out");
    const auto g = grads_of(out, {q, k, v}, 7), g_ref = grads_of(ref, {q, k, v}, 7);
    for (int j = 0; j < 3; ++j) XD_EXPECT_CLOSE(g[j], g_ref[j], 1e-12, what + " d" + "qkv"[j]);
  }
}

TEST(WindowReference, GroupedQueryCacheStepsEqualOneCall) {
  at::manual_seed(6);
  const int64_t S = 23, window = 8, sinks = 2, prompt = 5, H = 4, Hk = 2;
  const auto q = at::randn({2, H, S, 4}), k = at::randn({2, Hk, S, 4}), v = at::randn({2, Hk, S, 4});
  const auto ref = ops::window_attention(q, k, v, window, sinks);
  ops::WindowCache cache(2, Hk, 4, window, sinks, q.options());
  cache.append(k.narrow(2, 0, prompt), v.narrow(2, 0, prompt));
  std::vector<at::Tensor> outs;
  for (int64_t t = prompt; t < S; ++t)
    outs.push_back(ops::window_attention_step(q.narrow(2, t, 1), k.narrow(2, t, 1), v.narrow(2, t, 1), cache));
  XD_EXPECT_CLOSE(at::cat(outs, 2), ref.narrow(2, prompt, S - prompt), 1e-5, "grouped steps after a prompt");
}

TEST(WindowReference, RejectsBadInputs) {
  const auto q = at::randn({1, 2, 8, 4});
  EXPECT_THROW(ops::window_attention(q, q.narrow(2, 0, 7), q), Error);
  const auto k3 = at::randn({1, 3, 8, 4}), q6 = at::randn({1, 6, 8, 4}), k4 = at::randn({1, 4, 8, 4});
  EXPECT_THROW(ops::window_attention(q6, k4, k4), Error);  // 4 does not divide 6
  EXPECT_THROW(ops::window_attention(q6, k3, k4), Error);  // k and v differ
  EXPECT_NO_THROW(ops::window_attention(q6, k3, k3));
  EXPECT_THROW(ops::window_attention(q, q, q, 0, 4), Error);
  EXPECT_THROW(ops::window_attention(q.squeeze(0), q.squeeze(0), q.squeeze(0)), Error);
}

// The scope that activation checkpointing's first forward opens: nested scopes restore
// the outer state, and another thread does not see this thread's scope.
TEST(WindowReference, TrainingForwardScopeNestsPerThread) {
  EXPECT_FALSE(ops::TrainingForwardScope::active());
  {
    const ops::TrainingForwardScope outer;
    EXPECT_TRUE(ops::TrainingForwardScope::active());
    {
      const ops::TrainingForwardScope inner;
      EXPECT_TRUE(ops::TrainingForwardScope::active());
    }
    EXPECT_TRUE(ops::TrainingForwardScope::active());
    bool other_thread = true;
    std::thread([&] { other_thread = ops::TrainingForwardScope::active(); }).join();
    EXPECT_FALSE(other_thread);
  }
  EXPECT_FALSE(ops::TrainingForwardScope::active());
}

}  // namespace
