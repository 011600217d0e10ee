// Plain-ATen sliding-window + sink attention: the oracles and the CPU path.
#include <ATen/ATen.h>

#include <cmath>

#include "ops/window_heads.h"
#include "xdistill/ops/window_attention.h"

namespace xd::ops::reference {
namespace {

at::ScalarType compute_type(const at::Tensor& q) {
  return q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// visible[t, j] for query positions t in [t0, t0+Tq) and key positions keys[j].
at::Tensor visible_mask(int64_t t0, int64_t Tq, const at::Tensor& key_pos, int64_t window, int64_t sinks) {
  const auto t = at::arange(t0, t0 + Tq, key_pos.options()).unsqueeze(-1);
  const auto j = key_pos.unsqueeze(0);
  return (j <= t) & ((t - j < window) | (j < sinks));
}

at::Tensor masked_softmax_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& mask) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto logits = at::matmul(q, k.transpose(-1, -2)) * scale;
  logits = logits.masked_fill(~mask, -std::numeric_limits<double>::infinity());
  return at::matmul(at::softmax(logits, -1), v);
}

}  // namespace

at::Tensor window_attention_dense(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                                  int64_t sinks) {
  const auto t = compute_type(q);
  const int64_t S = q.size(2);
  const auto pos = at::arange(S, q.options().dtype(at::kLong));
  const auto mask = visible_mask(0, S, pos, window, sinks);
  const int64_t H = q.size(1);
  return masked_softmax_attention(q.to(t), repeat_kv(k.to(t), H), repeat_kv(v.to(t), H), mask).to(q.scalar_type());
}

at::Tensor window_attention_blocked(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                                    int64_t sinks) {
  const auto t = compute_type(q);
  const auto qc = q.to(t), kc = repeat_kv(k.to(t), q.size(1)), vc = repeat_kv(v.to(t), q.size(1));
  const int64_t S = q.size(2), block = 256;
  const auto long_opts = q.options().dtype(at::kLong);
  std::vector<at::Tensor> outs;
  for (int64_t t0 = 0; t0 < S; t0 += block) {
    const int64_t Tq = std::min(block, S - t0);
    // Keys in the window of any query of the block, plus the sinks before them.
    const int64_t k0 = std::max<int64_t>(0, t0 - window + 1);
    const int64_t n_sinks = std::min(sinks, k0);
    auto key_pos = at::arange(k0, t0 + Tq, long_opts);
    auto keys = kc.narrow(2, k0, t0 + Tq - k0), values = vc.narrow(2, k0, t0 + Tq - k0);
    if (n_sinks > 0) {
      key_pos = at::cat({at::arange(n_sinks, long_opts), key_pos});
      keys = at::cat({kc.narrow(2, 0, n_sinks), keys}, 2);
      values = at::cat({vc.narrow(2, 0, n_sinks), values}, 2);
    }
    const auto mask = visible_mask(t0, Tq, key_pos, window, sinks);
    outs.push_back(masked_softmax_attention(qc.narrow(2, t0, Tq), keys, values, mask));
  }
  return at::cat(outs, 2).to(q.scalar_type());
}

}  // namespace xd::ops::reference
