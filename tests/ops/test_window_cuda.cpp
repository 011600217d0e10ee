// CUDA sliding window + sinks (flash attention merged with the sinks) against the
// dense float64 oracle: outputs and gradients for bf16 inputs (<= 1e-2) at
// lengths around the window; float32 (reference path) at <= 1e-5; the cache.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cstdlib>

#include "ops_test_util.h"
#include "xdistill/ops/window_attention.h"

namespace {

using namespace xd;

#define XD_REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

void check(int64_t B, int64_t H, int64_t S, int64_t D, int64_t window, int64_t sinks, at::ScalarType dtype, double tol) {
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  auto q = at::randn({B, H, S, D}, f64).to(dtype), k = at::randn({B, H, S, D}, f64).to(dtype),
       v = at::randn({B, H, S, D}, f64).to(dtype);
  const auto g = at::randn({B, H, S, D}, f64);
  std::vector<at::Tensor> ref_leaves{q.to(at::kDouble).requires_grad_(true), k.to(at::kDouble).requires_grad_(true),
                                     v.to(at::kDouble).requires_grad_(true)};
  const auto ref = ops::reference::window_attention_dense(ref_leaves[0], ref_leaves[1], ref_leaves[2], window, sinks);
  const auto ref_grads = torch::autograd::grad({(ref * g).sum()}, ref_leaves);
  std::vector<at::Tensor> leaves{q.cuda().requires_grad_(true), k.cuda().requires_grad_(true),
                                 v.cuda().requires_grad_(true)};
  const auto out = ops::window_attention(leaves[0], leaves[1], leaves[2], window, sinks);
  const auto grads = torch::autograd::grad({(out.to(at::kDouble) * g.cuda()).sum()}, leaves);
  std::ostringstream what;
  what << c10::toString(dtype) << " S=" << S << " D=" << D << " window=" << window << " sinks=" << sinks;
  XD_EXPECT_CLOSE(out, ref, tol, what.str() + " out");
  for (int j = 0; j < 3; ++j) XD_EXPECT_CLOSE(grads[j], ref_grads[j], tol, what.str() + " d" + "qkv"[j]);
}

TEST(WindowCuda, BFloat16MatchesDenseOracle) {
  XD_REQUIRE_CUDA();
  at::manual_seed(1);
  for (int64_t S : {1, 113, 511, 512, 513, 517, 1100}) check(1, 2, S, 128, 512, 4, at::kBFloat16, 1e-2);
  for (int64_t S : {1, 16, 17, 20, 21, 239}) check(2, 3, S, 64, 16, 4, at::kBFloat16, 1e-2);
  check(1, 2, 300, 64, 16, 0, at::kBFloat16, 1e-2);
  check(1, 2, 300, 64, 32, 4, at::kHalf, 1e-2);
}

// The sink merge done with ATen operations (XD_WINDOW_SINKS=aten) instead of the fused kernels.
TEST(WindowCuda, AtenSinkMergeMatchesDenseOracle) {
  XD_REQUIRE_CUDA();
  at::manual_seed(4);
  setenv("XD_WINDOW_SINKS", "aten", 1);
  for (int64_t S : {513, 1100}) check(1, 2, S, 128, 512, 4, at::kBFloat16, 1e-2);
  check(2, 3, 239, 64, 16, 4, at::kBFloat16, 1e-2);
  unsetenv("XD_WINDOW_SINKS");
}

TEST(WindowCuda, Float32MatchesDenseOracle) {
  XD_REQUIRE_CUDA();
  at::manual_seed(2);
  for (int64_t S : {17, 239}) check(1, 2, S, 32, 16, 4, at::kFloat, 1e-5);
}

TEST(WindowCuda, CacheStepsEqualOneCall) {
  XD_REQUIRE_CUDA();
  at::manual_seed(3);
  const int64_t S = 40, window = 16, sinks = 4, prompt = 9;
  const auto o = at::TensorOptions().device(at::kCUDA).dtype(at::kFloat);
  const auto q = at::randn({2, 2, S, 32}, o), k = at::randn({2, 2, S, 32}, o), v = at::randn({2, 2, S, 32}, o);
  const auto ref = ops::window_attention(q, k, v, window, sinks);
  ops::WindowCache cache(2, 2, 32, window, sinks, o);
  cache.append(k.narrow(2, 0, prompt), v.narrow(2, 0, prompt));
  std::vector<at::Tensor> outs;
  for (int64_t t = prompt; t < S; ++t)
    outs.push_back(ops::window_attention_step(q.narrow(2, t, 1), k.narrow(2, t, 1), v.narrow(2, t, 1), cache));
  XD_EXPECT_CLOSE(at::cat(outs, 2), ref.narrow(2, prompt, S - prompt), 1e-5, "steps");
}

}  // namespace
