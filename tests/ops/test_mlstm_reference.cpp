// The CPU reference mLSTM forms against each other in float64: forward, final
// states and autograd gradients; finite differences of the recurrent definition;
// state passing across calls; the generation step; input checks.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "ops_test_util.h"
#include "xdistill/ops/mlstm.h"
#include "xdistill/ops/mlstm_reference.h"
#include "xdistill/util/error.h"

namespace {

using namespace xd;
using xd::test::MlstmInputs;
const auto kF64 = at::TensorOptions().dtype(at::kDouble);

test::MlstmFn recurrent = [](const MlstmInputs& in) {
  return ops::reference::mlstm_recurrent(in.q, in.k, in.v, in.i, in.f, in.initial);
};
test::MlstmFn parallel = [](const MlstmInputs& in) {
  return ops::reference::mlstm_parallel(in.q, in.k, in.v, in.i, in.f, in.initial);
};
test::MlstmFn chunkwise(int64_t L) {
  return [L](const MlstmInputs& in) {
    return ops::reference::mlstm_chunkwise(in.q, in.k, in.v, in.i, in.f, in.initial, L);
  };
}

void expect_same(const test::MlstmRun& a, const test::MlstmRun& ref, double tol, const std::string& what) {
  for (size_t j = 0; j < ref.outputs.size(); ++j)
    XD_EXPECT_CLOSE(a.outputs[j], ref.outputs[j], tol, what + " " + test::mlstm_output_name(j));
  for (size_t j = 0; j < ref.grads.size(); ++j)
    XD_EXPECT_CLOSE(a.grads[j], ref.grads[j], tol, what + " " + test::mlstm_grad_name(j));
}

struct Shape { int64_t B, H, S, Dk, Dv; bool state; };

TEST(MlstmReference, FormsAgreeInFloat64) {
  at::manual_seed(1);
  for (const auto& s : {Shape{2, 2, 13, 6, 5, false}, Shape{1, 3, 23, 4, 7, true}, Shape{1, 1, 1, 3, 3, true},
                        Shape{2, 1, 40, 8, 8, false}}) {
    const auto in = test::random_mlstm(s.B, s.H, s.S, s.Dk, s.Dv, s.state, kF64);
    const auto ref = test::run_with_grads(recurrent, in, 7);
    const std::string shape = "S=" + std::to_string(s.S) + (s.state ? " with state" : "");
    expect_same(test::run_with_grads(parallel, in, 7), ref, 1e-10, "parallel " + shape);
    for (int64_t L : {1, 4, 5, 64})
      expect_same(test::run_with_grads(chunkwise(L), in, 7), ref, 1e-10,
                  "chunkwise L=" + std::to_string(L) + " " + shape);
  }
}

TEST(MlstmReference, GatesExerciseBothSidesOfTheNormaliser) {
  at::manual_seed(2);
  const auto in = test::random_mlstm(2, 2, 64, 8, 8, false, kF64);
  const double fr = test::floor_fraction(in);
  EXPECT_GT(fr, 0.02) << "the floor exp(-m) is never taken";
  EXPECT_LT(fr, 0.98) << "the |q.n| side is never taken";
}

// The recurrent definition's autograd against central finite differences along
// random directions (a gradcheck that does not trust autograd itself).
TEST(MlstmReference, RecurrentGradientMatchesFiniteDifferences) {
  at::manual_seed(3);
  const auto in = test::random_mlstm(1, 2, 9, 3, 4, true, kF64);
  const auto run = test::run_with_grads(recurrent, in, 11);
  std::vector<at::Tensor> x{in.q, in.k, in.v, in.i, in.f, in.initial->C, in.initial->n, in.initial->m};
  auto loss_at = [&](const std::vector<at::Tensor>& y) {
    MlstmInputs p{y[0], y[1], y[2], y[3], y[4], ops::MlstmState{y[5], y[6], y[7]}};
    auto [h, st] = ops::reference::mlstm_recurrent(p.q, p.k, p.v, p.i, p.f, p.initial);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    auto like = [&](const at::Tensor& t) { return at::randn(t.sizes(), gen, kF64); };
    return ((h * like(h)).sum() + (st.C * like(st.C)).sum() + (st.n * like(st.n)).sum() + (st.m * like(st.m)).sum())
        .item<double>();
  };
  for (size_t j = 0; j < x.size(); ++j) {
    const auto dir = at::randn(x[j].sizes(), kF64);
    const double h = 1e-6;
    auto plus = x, minus = x;
    plus[j] = x[j] + h * dir;
    minus[j] = x[j] - h * dir;
    const double fd = (loss_at(plus) - loss_at(minus)) / (2 * h);
    const double an = (run.grads[j] * dir).sum().item<double>();
    EXPECT_NEAR(an, fd, 1e-6 * std::max(1.0, std::abs(fd))) << test::mlstm_grad_name(j);
  }
}

// One call over S equals calls over pieces with the state handed on, in outputs
// and in gradients (the pieces' graph is chained through the states).
TEST(MlstmReference, StatePassingEqualsOneCall) {
  at::manual_seed(4);
  const auto in = test::random_mlstm(2, 2, 37, 5, 6, true, kF64);
  const auto whole = test::run_with_grads(chunkwise(8), in, 5);
  test::MlstmFn pieces = [](const MlstmInputs& x) {
    c10::optional<ops::MlstmState> st = x.initial;
    std::vector<at::Tensor> hs;
    for (auto [a, len] : {std::pair<int64_t, int64_t>{0, 10}, {10, 1}, {11, 26}}) {
      auto [h, next] = ops::mlstm(x.q.narrow(2, a, len), x.k.narrow(2, a, len), x.v.narrow(2, a, len),
                                  x.i.narrow(2, a, len), x.f.narrow(2, a, len), st, 64);
      hs.push_back(h);
      st = next;
    }
    return std::make_pair(at::cat(hs, 2), *st);
  };
  expect_same(test::run_with_grads(pieces, in, 5), whole, 1e-10, "pieces");
}

TEST(MlstmReference, OperatorOnCpuMatchesRecurrentInFloat32) {
  at::manual_seed(5);
  const auto in64 = test::random_mlstm(2, 3, 77, 16, 12, true, kF64);
  const auto ref = test::run_with_grads(recurrent, in64, 9);
  MlstmInputs in32{in64.q.to(at::kFloat), in64.k.to(at::kFloat), in64.v.to(at::kFloat), in64.i.to(at::kFloat),
                   in64.f.to(at::kFloat),
                   ops::MlstmState{in64.initial->C.to(at::kFloat), in64.initial->n.to(at::kFloat),
                                   in64.initial->m.to(at::kFloat)}};
  for (int64_t L : {64, 128}) {
    test::MlstmFn op = [L](const MlstmInputs& x) { return ops::mlstm(x.q, x.k, x.v, x.i, x.f, x.initial, L); };
    expect_same(test::run_with_grads(op, in32, 9), ref, 1e-5, "mlstm f32 L=" + std::to_string(L));
  }
}

TEST(MlstmReference, StepsEqualOneCall) {
  at::manual_seed(6);
  auto in = test::random_mlstm(2, 2, 12, 4, 6, true, at::TensorOptions().dtype(at::kFloat));
  auto [h_all, final_state] = ops::mlstm(in.q, in.k, in.v, in.i, in.f, in.initial);
  ops::MlstmState st = *in.initial;
  std::vector<at::Tensor> hs;
  for (int64_t t = 0; t < 12; ++t) {
    auto [h, next] = ops::mlstm_step(in.q.narrow(2, t, 1), in.k.narrow(2, t, 1), in.v.narrow(2, t, 1),
                                     in.i.narrow(2, t, 1), in.f.narrow(2, t, 1), st);
    hs.push_back(h);
    st = next;
  }
  XD_EXPECT_CLOSE(at::cat(hs, 2), h_all, 1e-5, "h");
  XD_EXPECT_CLOSE(st.C, final_state.C, 1e-5, "C");
  XD_EXPECT_CLOSE(st.n, final_state.n, 1e-5, "n");
  XD_EXPECT_CLOSE(st.m, final_state.m, 1e-5, "m");
}

TEST(MlstmReference, RejectsBadInputsWithClearErrors) {
  const auto in = test::random_mlstm(1, 2, 8, 4, 4, false, at::TensorOptions().dtype(at::kFloat));
  EXPECT_THROW(ops::mlstm(in.q, in.k.narrow(2, 0, 7), in.v, in.i, in.f), Error);
  EXPECT_THROW(ops::mlstm(in.q, in.k, in.v, in.i.unsqueeze(-1), in.f), Error);
  EXPECT_THROW(ops::mlstm(in.q, in.k, in.v, in.i, in.f, c10::nullopt, 32), Error);
  EXPECT_THROW(ops::mlstm(in.q.to(at::kBFloat16), in.k, in.v, in.i, in.f), Error);
  ops::MlstmState bad{at::zeros({1, 2, 4, 5}), at::zeros({1, 2, 4}), at::zeros({1, 2})};
  try {
    ops::mlstm(in.q, in.k, in.v, in.i, in.f, bad);
    FAIL() << "a mis-shaped initial C was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("initial C"), std::string::npos) << e.what();
  }
}

}  // namespace
