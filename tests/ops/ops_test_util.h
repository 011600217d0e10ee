// Helpers shared by the operator tests: relative L2 errors that name the first
// bad element, fresh random mLSTM inputs, and gradients of a random projection.
#pragma once
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "xdistill/ops/mlstm.h"

namespace xd::test {

// ||a - ref|| / ||ref|| in float64; NaN anywhere gives +inf.
inline double rel_err(const at::Tensor& a, const at::Tensor& ref) {
  const auto x = a.detach().to(at::kCPU, at::kDouble), r = ref.detach().to(at::kCPU, at::kDouble);
  if (!at::isfinite(x).all().item<bool>()) return std::numeric_limits<double>::infinity();
  const double nr = r.norm().item<double>();
  return (x - r).norm().item<double>() / (nr > 0 ? nr : 1.0);
}

// A failure message pointing at the largest deviation.
inline std::string worst(const at::Tensor& a, const at::Tensor& ref) {
  const auto x = a.detach().to(at::kCPU, at::kDouble).flatten(), r = ref.detach().to(at::kCPU, at::kDouble).flatten();
  const int64_t idx = (x - r).abs().nan_to_num(1e300).argmax().item<int64_t>();
  std::ostringstream os;
  os << "worst flat index " << idx << ": got " << x[idx].item<double>() << ", want " << r[idx].item<double>();
  return os.str();
}

#define XD_EXPECT_CLOSE(a, ref, tol, what)                                                                  \
  do {                                                                                                      \
    const double e_ = ::xd::test::rel_err((a), (ref));                                                      \
    EXPECT_LE(e_, (tol)) << (what) << ": relative L2 error " << e_ << "; " << ::xd::test::worst((a), (ref)); \
  } while (0)

struct MlstmInputs {
  at::Tensor q, k, v, i, f;
  c10::optional<ops::MlstmState> initial;
};

// Gates drawn wide so that both sides of the normaliser's max and of the
// stabiliser's max occur.
inline MlstmInputs random_mlstm(int64_t B, int64_t H, int64_t S, int64_t Dk, int64_t Dv, bool with_state,
                                at::TensorOptions opts) {
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  MlstmInputs in;
  in.q = at::randn({B, H, S, Dk}, f64).to(opts);
  in.k = at::randn({B, H, S, Dk}, f64).to(opts);
  in.v = at::randn({B, H, S, Dv}, f64).to(opts);
  const auto gate_opts = opts.dtype(opts.dtype() == at::kDouble ? at::kDouble : at::kFloat);
  in.i = (2.0 * at::randn({B, H, S}, f64) - 1.0).to(gate_opts);
  in.f = (2.0 * at::randn({B, H, S}, f64) + 2.0).to(gate_opts);
  if (with_state) {
    in.initial = ops::MlstmState{at::randn({B, H, Dk, Dv}, f64).to(gate_opts),
                                 at::randn({B, H, Dk}, f64).to(gate_opts),
                                 (at::randn({B, H}, f64)).to(gate_opts)};
  }
  return in;
}

using MlstmFn = std::function<std::pair<at::Tensor, ops::MlstmState>(const MlstmInputs&)>;

// Outputs (h, C, n, m) and gradients of sum(h*Gh) + sum(C*GC) + sum(n*Gn) + sum(m*Gm)
// with respect to q, k, v, i, f and (when present) the initial C, n, m.
struct MlstmRun {
  std::vector<at::Tensor> outputs, grads;
};

// Gradients of sum_j <output_j, W_j> for random float64 projections W_j (drawn from
// `seed`; outputs h, C, n, m). Each W_j reaches the operator as the gradient of its
// output, so it is rounded to that output's dtype; project_as[j], when given, rounds it
// to that dtype first, so that a float64 oracle receives the upstream gradient a bf16
// kernel receives.
inline MlstmRun run_with_grads(const MlstmFn& fn, const MlstmInputs& base, uint64_t seed,
                               const std::vector<at::ScalarType>& project_as = {}) {
  MlstmInputs in;
  auto leaf = [](const at::Tensor& t) { return t.detach().clone().requires_grad_(true); };
  in.q = leaf(base.q); in.k = leaf(base.k); in.v = leaf(base.v); in.i = leaf(base.i); in.f = leaf(base.f);
  std::vector<at::Tensor> leaves{in.q, in.k, in.v, in.i, in.f};
  if (base.initial) {
    in.initial = ops::MlstmState{leaf(base.initial->C), leaf(base.initial->n), leaf(base.initial->m)};
    leaves.insert(leaves.end(), {in.initial->C, in.initial->n, in.initial->m});
  }
  auto [h, st] = fn(in);
  MlstmRun run;
  run.outputs = {h.detach(), st.C.detach(), st.n.detach(), st.m.detach()};
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto like = [&](const at::Tensor& t, size_t j) {
    at::Tensor w = at::randn(t.sizes(), gen, at::TensorOptions().dtype(at::kDouble));
    if (j < project_as.size()) w = w.to(project_as[j]);
    return w.to(t.options());
  };
  // Drawn m, n, C, h: the order GCC gave the sum of the four projections that this
  // replaced, whose operands it evaluated right to left, so the seeds keep their draws.
  const auto wm = like(st.m, 3), wn = like(st.n, 2), wC = like(st.C, 1), wh = like(h, 0);
  const auto loss = (h * wh).sum() + (st.C * wC).sum() + (st.n * wn).sum() + (st.m * wm).sum();
  run.grads = torch::autograd::grad({loss}, leaves);
  return run;
}

// Fraction of positions whose normaliser takes the floor exp(-m) (recurrent, f64).
inline double floor_fraction(const MlstmInputs& in) {
  const auto q = in.q / std::sqrt(double(in.q.size(-1)));
  const auto lf = at::log_sigmoid(in.f);
  auto n = in.initial ? in.initial->n : at::zeros({q.size(0), q.size(1), q.size(3)}, at::TensorOptions().dtype(at::kDouble));
  auto m = in.initial ? in.initial->m : at::zeros({q.size(0), q.size(1)}, at::TensorOptions().dtype(at::kDouble));
  int64_t floor = 0, total = 0;
  for (int64_t t = 0; t < q.size(2); ++t) {
    const auto m_new = at::maximum(lf.select(2, t) + m, in.i.select(2, t));
    n = at::exp(lf.select(2, t) + m - m_new).unsqueeze(-1) * n +
        at::exp(in.i.select(2, t) - m_new).unsqueeze(-1) * in.k.select(2, t);
    m = m_new;
    const auto dn = (q.select(2, t) * n).sum(-1).abs();
    floor += (dn < at::exp(-m)).sum().item<int64_t>();
    total += dn.numel();
  }
  return double(floor) / double(total);
}

inline const char* mlstm_grad_name(size_t idx) {
  static const char* names[] = {"dq", "dk", "dv", "di", "df", "dC0", "dn0", "dm0"};
  return names[idx];
}
inline const char* mlstm_output_name(size_t idx) {
  static const char* names[] = {"h", "C", "n", "m"};
  return names[idx];
}

}  // namespace xd::test
