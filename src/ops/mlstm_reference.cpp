// Plain-ATen mLSTM forms (spec: shared/spec/mlstm.md). Written for clarity; they
// are the oracles the CUDA kernels are tested against, and the CPU implementation.
#include "xdistill/ops/mlstm_reference.h"

#include <ATen/ATen.h>

#include <cmath>

#include "xdistill/util/error.h"

namespace xd::ops::reference {
namespace {

at::ScalarType compute_type(const at::Tensor& v) {
  return v.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

struct Inputs {
  at::Tensor q, k, v, i, lf;  // q already scaled by 1/sqrt(Dk); lf = log sigmoid(f)
  at::Tensor C0, n0, m0;      // zero state when none is given
};

Inputs prepare(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& i,
               const at::Tensor& f, const c10::optional<MlstmState>& initial) {
  const auto t = compute_type(v);
  Inputs in;
  in.q = q.to(t) / std::sqrt(static_cast<double>(q.size(-1)));
  in.k = k.to(t);
  in.v = v.to(t);
  in.i = i.to(t);
  in.lf = at::log_sigmoid(f.to(t));
  const int64_t B = q.size(0), H = q.size(1), Dk = q.size(3), Dv = v.size(3);
  if (initial) {
    in.C0 = initial->C.to(t);
    in.n0 = initial->n.to(t);
    in.m0 = initial->m.to(t);
  } else {
    const auto opts = q.options().dtype(t);
    in.C0 = at::zeros({B, H, Dk, Dv}, opts);
    in.n0 = at::zeros({B, H, Dk}, opts);
    in.m0 = at::zeros({B, H}, opts);
  }
  return in;
}

// h = num / (max(|dn|, exp(-m)) + eps), the normaliser shared by every form.
at::Tensor normalise(const at::Tensor& num, const at::Tensor& dn, const at::Tensor& m) {
  const auto den = at::maximum(dn.abs(), at::exp(-m)) + kMlstmEps;
  return num / den.unsqueeze(-1);
}

}  // namespace

std::pair<at::Tensor, MlstmState> mlstm_recurrent(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                  const at::Tensor& i, const at::Tensor& f,
                                                  const c10::optional<MlstmState>& initial) {
  auto in = prepare(q, k, v, i, f, initial);
  at::Tensor C = in.C0, n = in.n0, m = in.m0;
  std::vector<at::Tensor> hs;
  for (int64_t t = 0; t < q.size(2); ++t) {
    const auto lf = in.lf.select(2, t), it = in.i.select(2, t);
    const auto qt = in.q.select(2, t), kt = in.k.select(2, t), vt = in.v.select(2, t);
    const auto m_new = at::maximum(lf + m, it);
    const auto a = at::exp(lf + m - m_new), b = at::exp(it - m_new);
    C = a.unsqueeze(-1).unsqueeze(-1) * C + b.unsqueeze(-1).unsqueeze(-1) * kt.unsqueeze(-1) * vt.unsqueeze(-2);
    n = a.unsqueeze(-1) * n + b.unsqueeze(-1) * kt;
    m = m_new;
    const auto num = at::matmul(qt.unsqueeze(-2), C).squeeze(-2);
    const auto dn = (qt * n).sum(-1);
    hs.push_back(normalise(num, dn, m));
  }
  return {at::stack(hs, 2).to(v.scalar_type()), MlstmState{C, n, m}};
}

std::pair<at::Tensor, MlstmState> mlstm_parallel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                 const at::Tensor& i, const at::Tensor& f,
                                                 const c10::optional<MlstmState>& initial) {
  auto in = prepare(q, k, v, i, f, initial);
  const int64_t S = q.size(2);
  const auto opts = in.lf.options().dtype(at::kBool);
  // logD[t,j] = sum_{j<s<=t} lf_s + i_j, from a masked cumulative sum (no
  // difference of two long cumsums, which would cancel badly).
  const auto strictly_below = at::ones({S, S}, opts).tril(-1);  // [s, j]: s > j
  const auto lf_sj = in.lf.unsqueeze(-1).expand({-1, -1, S, S}).masked_fill(~strictly_below, 0.0);
  auto logD = lf_sj.cumsum(2) + in.i.unsqueeze(-2);
  const auto causal = at::ones({S, S}, opts).tril();
  logD = logD.masked_fill(~causal, -std::numeric_limits<double>::infinity());
  // The initial state enters every row with weight exp(F_t + m0), F_t = sum_{s<=t} lf_s.
  const auto log_init = in.lf.cumsum(2) + in.m0.unsqueeze(-1);
  const auto m = at::maximum(std::get<0>(logD.max(-1)), log_init);  // [B,H,S]
  const auto D = at::exp(logD - m.unsqueeze(-1));
  const auto init_w = at::exp(log_init - m);
  const auto Ct = at::matmul(in.q, in.k.transpose(-1, -2)) * D;
  const auto num = at::matmul(Ct, in.v) + init_w.unsqueeze(-1) * at::matmul(in.q, in.C0);
  const auto dn = Ct.sum(-1) + init_w * at::matmul(in.q, in.n0.unsqueeze(-1)).squeeze(-1);
  const auto h = normalise(num, dn, m);
  // Final state: the last row's weights.
  const auto m_last = m.select(2, S - 1);
  const auto w = D.select(2, S - 1);  // [B,H,S], already relative to m_last
  const auto wi = init_w.select(2, S - 1);
  const auto C = at::matmul(in.k.transpose(-1, -2) * w.unsqueeze(-2), in.v) + wi.unsqueeze(-1).unsqueeze(-1) * in.C0;
  const auto n = (in.k * w.unsqueeze(-1)).sum(2) + wi.unsqueeze(-1) * in.n0;
  return {h.to(v.scalar_type()), MlstmState{C, n, m_last}};
}

std::pair<at::Tensor, MlstmState> mlstm_chunkwise(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                  const at::Tensor& i, const at::Tensor& f,
                                                  const c10::optional<MlstmState>& initial, int64_t chunk_size) {
  XD_CHECK(chunk_size > 0, "mlstm_chunkwise: chunk_size must be positive, got ", chunk_size);
  auto in = prepare(q, k, v, i, f, initial);
  const int64_t S = q.size(2);
  at::Tensor C = in.C0, n = in.n0, m = in.m0;
  std::vector<at::Tensor> hs;
  for (int64_t start = 0; start < S; start += chunk_size) {
    const int64_t L = std::min(chunk_size, S - start);
    const auto qc = in.q.narrow(2, start, L), kc = in.k.narrow(2, start, L), vc = in.v.narrow(2, start, L);
    const auto ic = in.i.narrow(2, start, L);
    const auto b = in.lf.narrow(2, start, L).cumsum(2);  // log decay from the chunk start, inclusive
    // m_t = b_t + max(m_prev, max_{j<=t} (i_j - b_j)): the recurrent stabiliser.
    const auto u = std::get<0>(at::cummax(ic - b, 2));
    const auto m_pos = b + at::maximum(m.unsqueeze(-1), u);
    const auto causal = at::ones({L, L}, b.options().dtype(at::kBool)).tril();
    const auto logW = (b.unsqueeze(-1) - b.unsqueeze(-2) + ic.unsqueeze(-2) - m_pos.unsqueeze(-1))
                          .masked_fill(~causal, -std::numeric_limits<double>::infinity());
    const auto Sw = at::matmul(qc, kc.transpose(-1, -2)) * at::exp(logW);
    const auto carry = at::exp(b + m.unsqueeze(-1) - m_pos);  // weight of the carried state
    const auto num = at::matmul(Sw, vc) + carry.unsqueeze(-1) * at::matmul(qc, C);
    const auto dn = Sw.sum(-1) + carry * at::matmul(qc, n.unsqueeze(-1)).squeeze(-1);
    hs.push_back(normalise(num, dn, m_pos));
    // State update to the chunk end.
    const auto g = b.select(2, L - 1);
    const auto m_new = m_pos.select(2, L - 1);
    const auto w = at::exp(g.unsqueeze(-1) - b + ic - m_new.unsqueeze(-1));  // [B,H,L]
    const auto decay = at::exp(g + m - m_new);
    C = decay.unsqueeze(-1).unsqueeze(-1) * C + at::matmul(kc.transpose(-1, -2) * w.unsqueeze(-2), vc);
    n = decay.unsqueeze(-1) * n + (kc * w.unsqueeze(-1)).sum(2);
    m = m_new;
  }
  return {at::cat(hs, 2).to(v.scalar_type()), MlstmState{C, n, m}};
}

}  // namespace xd::ops::reference
