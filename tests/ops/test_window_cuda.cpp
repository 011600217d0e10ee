// CUDA sliding window + sinks (cuDNN's fused attention, the default with gradients, or
// flash attention, merged with the sinks) against the dense float64 oracle: outputs and
// gradients for bf16 inputs (<= 1e-2) at lengths around the window; float32 (reference
// path) at <= 1e-5; the cache.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <cstdlib>

#include "ops/window_attention_cuda.h"
#include "ops_test_util.h"
#include "xdistill/ops/window_attention.h"

namespace {

using namespace xd;

#define XD_REQUIRE_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device"

// An environment switch of the operators, set for one test's scope.
struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const char* value) : name(n) { setenv(n, value, 1); }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

struct Case {
  int64_t B, H, S, D, window, sinks;
  at::ScalarType dtype;
  double tol;
  int64_t Hk = 0;        // key/value heads; 0: H
  bool strided = false;  // q, k, v as [B,H,S,D] views of [B,S,H,D] tensors (the projections' layout)
  bool blocked_oracle = false;  // the blocked float64 reference (tested against the dense one on the CPU)
  bool expect_cudnn = false;    // cuDNN's fused attention must take it
};

void check(const Case& c) {
  const int64_t Hk = c.Hk > 0 ? c.Hk : c.H;
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  auto draw = [&](int64_t heads) {
    return c.strided ? at::randn({c.B, c.S, heads, c.D}, f64).to(c.dtype).transpose(1, 2)
                     : at::randn({c.B, heads, c.S, c.D}, f64).to(c.dtype);
  };
  const auto q = draw(c.H), k = draw(Hk), v = draw(Hk);
  // Rounded to the output's dtype: the upstream gradient the kernels receive, given to the oracle too.
  const auto g = at::randn({c.B, c.H, c.S, c.D}, f64).to(c.dtype).to(at::kDouble);
  std::vector<at::Tensor> ref_leaves{q.to(at::kDouble).requires_grad_(true), k.to(at::kDouble).requires_grad_(true),
                                     v.to(at::kDouble).requires_grad_(true)};
  const auto oracle = c.blocked_oracle ? ops::reference::window_attention_blocked
                                       : ops::reference::window_attention_dense;
  const auto ref = oracle(ref_leaves[0], ref_leaves[1], ref_leaves[2], c.window, c.sinks);
  const auto ref_grads = torch::autograd::grad({(ref * g).sum()}, ref_leaves);
  // Leaves on the GPU in the same layout (.cuda() keeps the strides of a transposed view).
  std::vector<at::Tensor> leaves{q.cuda().detach().requires_grad_(true), k.cuda().detach().requires_grad_(true),
                                 v.cuda().detach().requires_grad_(true)};
  if (c.strided) {
    ASSERT_FALSE(leaves[0].is_contiguous());
  }
  if (c.expect_cudnn) {
    std::string why;
    ASSERT_TRUE(ops::detail::window_attention_cudnn_takes(leaves[0], leaves[1], leaves[2], c.window, &why))
        << "cuDNN does not take S=" << c.S << " D=" << c.D << ": " << why;
  }
  const auto out = ops::window_attention(leaves[0], leaves[1], leaves[2], c.window, c.sinks);
  const auto grads = torch::autograd::grad({(out.to(at::kDouble) * g.cuda()).sum()}, leaves);
  std::ostringstream what;
  what << c10::toString(c.dtype) << " S=" << c.S << " D=" << c.D << " H=" << c.H << " Hk=" << Hk
       << " window=" << c.window << " sinks=" << c.sinks << (c.strided ? " strided" : "");
  ASSERT_EQ(out.sizes(), q.sizes()) << what.str();
  XD_EXPECT_CLOSE(out, ref, c.tol, what.str() + " out");
  for (int j = 0; j < 3; ++j) {
    ASSERT_EQ(grads[j].sizes(), ref_grads[j].sizes()) << what.str();
    XD_EXPECT_CLOSE(grads[j], ref_grads[j], c.tol, what.str() + " d" + "qkv"[j]);
  }
}

void check(int64_t B, int64_t H, int64_t S, int64_t D, int64_t window, int64_t sinks, at::ScalarType dtype, double tol) {
  check(Case{B, H, S, D, window, sinks, dtype, tol});
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
  const ScopedEnv env("XD_WINDOW_SINKS", "aten");
  for (int64_t S : {513, 1100}) check(1, 2, S, 128, 512, 4, at::kBFloat16, 1e-2);
  check(2, 3, 239, 64, 16, 4, at::kBFloat16, 1e-2);
}

// Grouped-query attention (Hk key/value heads) and strided [B,H,S,D] views of
// [B,S,H,D] tensors, on the fused sink kernels, the ATen merge and float32.
TEST(WindowCuda, GroupedQueryAndStridedMatchDenseOracle) {
  XD_REQUIRE_CUDA();
  at::manual_seed(5);
  for (int64_t S : {511, 513, 1100}) check(Case{2, 8, S, 128, 512, 4, at::kBFloat16, 1e-2, 2, true});
  check(Case{1, 4, 700, 128, 512, 4, at::kBFloat16, 1e-2, 1, false});
  check(Case{1, 6, 239, 64, 16, 4, at::kBFloat16, 1e-2, 3, true});
  check(Case{1, 4, 300, 64, 32, 7, at::kHalf, 1e-2, 2, true});
  check(Case{2, 4, 600, 128, 512, 4, at::kBFloat16, 1e-2, 4, true});  // strided, plain multi-head
  check(Case{1, 4, 100, 32, 16, 3, at::kFloat, 1e-5, 2, true});
  const ScopedEnv env("XD_WINDOW_SINKS", "aten");
  check(Case{2, 8, 1100, 128, 512, 4, at::kBFloat16, 1e-2, 2, true});
}

// Enough heads that each block's row slots run several rows (and the dk/dv partials
// of several blocks and query heads meet), against the blocked float64 reference.
TEST(WindowCuda, ManyRowsPerBlockMatchBlockedOracle) {
  XD_REQUIRE_CUDA();
  at::manual_seed(6);
  check(Case{4, 16, 1088, 64, 64, 8, at::kBFloat16, 1e-2, 4, true, true});
  check(Case{2, 32, 1000, 128, 200, 4, at::kHalf, 1e-2, 8, true, true});
}

// cuDNN's fused attention for the window (the default of training steps; also
// XD_WINDOW_ATTENTION=cudnn), merged with the sink kernels: lengths around the window,
// grouped query heads, strided views, float16, a short window.
TEST(WindowCuda, CudnnWindowMatchesDenseOracle) {
  XD_REQUIRE_CUDA();
  at::manual_seed(7);
  const ScopedEnv env("XD_WINDOW_ATTENTION", "cudnn");
  auto cudnn = [](Case c) {
    c.expect_cudnn = true;
    return c;
  };
  for (int64_t S : {113, 511, 512, 513, 517, 1100}) check(cudnn(Case{1, 2, S, 128, 512, 4, at::kBFloat16, 1e-2}));
  // cuDNN refuses a single position ("s_q = s_kv = 1 is not supported"): flash attention runs.
  std::string why;
  const auto one = at::randn({1, 2, 1, 128}, at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16));
  EXPECT_FALSE(ops::detail::window_attention_cudnn_takes(one, one, one, 512, &why));
  check(Case{1, 2, 1, 128, 512, 4, at::kBFloat16, 1e-2});
  // A broadcast upstream gradient (stride 0, as from out.sum()): dout is copied first.
  {
    const auto cuda = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
    auto q = at::randn({1, 2, 600, 64}, cuda).requires_grad_(true), k = at::randn({1, 2, 600, 64}, cuda).requires_grad_(true),
         v = at::randn({1, 2, 600, 64}, cuda).requires_grad_(true);
    ops::window_attention(q, k, v, 512, 4).sum().backward();
    auto q64 = q.detach().to(at::kDouble).requires_grad_(true), k64 = k.detach().to(at::kDouble).requires_grad_(true),
         v64 = v.detach().to(at::kDouble).requires_grad_(true);
    ops::reference::window_attention_dense(q64, k64, v64, 512, 4).sum().backward();
    XD_EXPECT_CLOSE(q.grad(), q64.grad(), 1e-2, "broadcast dout dq");
    XD_EXPECT_CLOSE(v.grad(), v64.grad(), 1e-2, "broadcast dout dv");
  }
  for (int64_t S : {511, 513, 1100}) check(cudnn(Case{2, 8, S, 128, 512, 4, at::kBFloat16, 1e-2, 2, true}));
  check(cudnn(Case{2, 3, 239, 64, 16, 4, at::kBFloat16, 1e-2}));
  check(cudnn(Case{1, 4, 300, 64, 32, 7, at::kHalf, 1e-2, 2, true}));
  check(cudnn(Case{2, 32, 1000, 128, 200, 4, at::kBFloat16, 1e-2, 8, true, true}));
}

// Flash attention for the window (XD_WINDOW_ATTENTION=flash), forward and backward,
// and the default of a forward without gradients.
TEST(WindowCuda, FlashWindowMatchesDenseOracle) {
  XD_REQUIRE_CUDA();
  at::manual_seed(9);
  {
    const ScopedEnv env("XD_WINDOW_ATTENTION", "flash");
    for (int64_t S : {1, 513, 1100}) check(Case{1, 2, S, 128, 512, 4, at::kBFloat16, 1e-2});
    check(Case{2, 8, 1100, 128, 512, 4, at::kBFloat16, 1e-2, 2, true});
    check(Case{1, 4, 300, 64, 32, 7, at::kHalf, 1e-2, 2, true});
    check(Case{2, 32, 1000, 128, 200, 4, at::kBFloat16, 1e-2, 8, true, true});
    const ScopedEnv aten("XD_WINDOW_SINKS", "aten");
    check(Case{2, 8, 1100, 128, 512, 4, at::kBFloat16, 1e-2, 2, true});
  }
  const at::NoGradGuard no_grad;
  const auto cuda = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const auto q = at::randn({2, 8, 1100, 128}, cuda), k = at::randn({2, 2, 1100, 128}, cuda),
             v = at::randn({2, 2, 1100, 128}, cuda);
  const auto ref = ops::reference::window_attention_dense(q.to(at::kDouble), k.to(at::kDouble), v.to(at::kDouble),
                                                          512, 4);
  XD_EXPECT_CLOSE(ops::window_attention(q, k, v, 512, 4), ref, 1e-2, "forward without gradients");
}

// The sink kernels at head dims 128, 64 and 32, grouped and strided, many rows per
// block (the dk/dv partials of several chunks and query heads meet in the reduction),
// float16.
TEST(WindowCuda, SinkKernelShapesMatchDenseOracle) {
  XD_REQUIRE_CUDA();
  at::manual_seed(8);
  for (int64_t S : {513, 1100}) check(Case{2, 8, S, 128, 512, 4, at::kBFloat16, 1e-2, 2, true});
  check(Case{2, 3, 239, 64, 16, 4, at::kBFloat16, 1e-2});
  check(Case{1, 4, 300, 32, 32, 7, at::kHalf, 1e-2, 2, true});
  check(Case{4, 16, 1088, 64, 64, 8, at::kBFloat16, 1e-2, 4, true, true});
  check(Case{2, 32, 1000, 128, 200, 4, at::kHalf, 1e-2, 8, true, true});
}

// A forward without gradients inside TrainingForwardScope (activation checkpointing's
// first forward of a block) runs the training step's kernels: the same bits as the
// forward of a step whose inputs need gradients (the recompute in the backward).
TEST(WindowCuda, TrainingForwardScopeGivesTheTrainingForwardsBits) {
  XD_REQUIRE_CUDA();
  at::manual_seed(11);
  const auto cuda = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const auto q = at::randn({2, 1100, 8, 128}, cuda).transpose(1, 2), k = at::randn({2, 1100, 2, 128}, cuda).transpose(1, 2),
             v = at::randn({2, 1100, 2, 128}, cuda).transpose(1, 2);
  const auto trained = ops::window_attention(q.detach().requires_grad_(true), k.detach().requires_grad_(true),
                                             v.detach().requires_grad_(true), 512, 4).detach();
  at::Tensor scoped;
  {
    const at::NoGradGuard no_grad;
    const ops::TrainingForwardScope scope;
    scoped = ops::window_attention(q, k, v, 512, 4);
  }
  EXPECT_TRUE(at::equal(scoped, trained));
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
