#include "xdistill/student/hybrid_core.h"

#include <torch/torch.h>

#include <cmath>

#include "xdistill/infer/window_prefill.h"
#include "xdistill/util/error.h"

namespace xd::student {

const std::vector<std::string>& hybrid_parameter_names() {
  static const std::vector<std::string> names = {"feature_q", "feature_k", "igate_w", "igate_b",
                                                 "fgate_w",   "fgate_b",   "ogate_w", "ogate_b"};
  return names;
}

HybridCore::HybridCore(int64_t hidden, int64_t heads, int64_t head_dim, StudentConfig config)
    : hidden_(hidden), heads_(heads), head_dim_(head_dim), config_(std::move(config)) {
  config_.validate(head_dim);
  const int64_t df = config_.resolved_feature_dim(head_dim);
  feature_q = register_parameter("feature_q", torch::empty({heads, head_dim, df}));
  feature_k = register_parameter("feature_k", torch::empty({heads, head_dim, df}));
  igate_w = register_parameter("igate_w", torch::empty({heads, hidden}));
  igate_b = register_parameter("igate_b", torch::empty({heads}));
  fgate_w = register_parameter("fgate_w", torch::empty({heads, hidden}));
  fgate_b = register_parameter("fgate_b", torch::empty({heads}));
  ogate_w = register_parameter("ogate_w", torch::empty({heads, 3 * head_dim}));
  ogate_b = register_parameter("ogate_b", torch::empty({heads}));
  reset_parameters();
}

void HybridCore::reset_parameters() {
  torch::NoGradGuard no_grad;
  const int64_t df = feature_q.size(2);
  // Identity-like: the first min(Dh, Df) features copy the input, so that at init
  // phi(x) = softmax(x) (a softmax-attention-like kernel); extra features start at 0.
  auto eye = torch::eye(head_dim_, df).unsqueeze(0).expand({heads_, head_dim_, df});
  feature_q.copy_(eye);
  feature_k.copy_(eye);
  igate_w.zero_();
  fgate_w.zero_();
  ogate_w.zero_();
  igate_b.fill_(config_.input_gate_bias);
  ogate_b.fill_(config_.output_gate_bias);
  // sigma(b_f) evenly spread over [min, max] across heads: b_f = logit(p).
  auto p = heads_ > 1 ? torch::linspace(config_.forget_init_min, config_.forget_init_max, heads_, torch::kDouble)
                      : torch::full({1}, config_.forget_init_max, torch::kDouble);
  fgate_b.copy_(torch::log(p) - torch::log1p(-p));
}

at::Tensor HybridCore::feature_map(const at::Tensor& x, const at::Tensor& weight) const {
  // x [B,H,S,Dh] @ W [H,Dh,Df] per head, softmax over features in float32.
  const at::Tensor z = torch::matmul(x, weight.to(x.scalar_type()).unsqueeze(0)).to(torch::kFloat);
  at::Tensor phi = config_.feature_map == "hedgehog_pm"
                       ? torch::cat({torch::softmax(z, -1), torch::softmax(-z, -1)}, -1)
                       : torch::softmax(z, -1);
  return phi.to(x.scalar_type());
}

std::pair<at::Tensor, at::Tensor> HybridCore::gates(const at::Tensor& x) const {
  // [B,S,hidden] -> [B,H,S] in float32, soft-capped (xLSTM-7B): a * tanh(z / a).
  const at::Tensor x32 = x.to(torch::kFloat);
  auto gate = [&](const at::Tensor& w, const at::Tensor& b) {
    at::Tensor z = torch::nn::functional::linear(x32, w.to(torch::kFloat), b.to(torch::kFloat));
    if (config_.gate_softcap > 0) z = torch::tanh(z / config_.gate_softcap) * config_.gate_softcap;
    return z.transpose(1, 2).contiguous();
  };
  return {gate(igate_w, igate_b), gate(fgate_w, fgate_b)};
}

at::Tensor HybridCore::output_gate(const HybridInputs& in) const {
  // o = sigma(u_h . [q, k, v] + c_h) per head and position.
  const auto dtype = in.v.scalar_type();
  const at::Tensor u = ogate_w.to(dtype).unsqueeze(-1);  // [H, 3Dh, 1]
  const at::Tensor uq = u.narrow(1, 0, head_dim_), uk = u.narrow(1, head_dim_, head_dim_),
                   uv = u.narrow(1, 2 * head_dim_, head_dim_);
  at::Tensor z = torch::matmul(in.q_gate, uq) + torch::matmul(in.k_gate, uk) + torch::matmul(in.v, uv);
  z = z.squeeze(-1).to(torch::kFloat) + ogate_b.to(torch::kFloat).view({1, heads_, 1});
  return torch::sigmoid(z);
}

at::Tensor HybridCore::local_branch(const HybridInputs& in) const {
  return ops::window_attention(in.q, in.k, in.v, config_.window, config_.sinks);
}

at::Tensor HybridCore::mix(const at::Tensor& global, const at::Tensor& local, const at::Tensor& gate) const {
  const at::Tensor o = gate.unsqueeze(-1);
  return (o * global.to(torch::kFloat) + (1 - o) * local.to(torch::kFloat)).to(global.scalar_type());
}

at::Tensor HybridCore::forward(const HybridInputs& in, const at::Tensor& local) {
  XD_CHECK(in.q.dim() == 4 && in.q.size(1) == heads_ && in.q.size(3) == head_dim_,
           "hybrid mixer: q must be [B,", heads_, ",S,", head_dim_, "], got ", in.q.sizes());
  const at::Tensor phi_q = feature_map(in.q, feature_q), phi_k = feature_map(in.k, feature_k);
  auto [i, f] = gates(in.x);
  at::Tensor global = ops::mlstm(phi_q, phi_k, in.v, i, f, c10::nullopt, config_.chunk_size).first;
  const at::Tensor loc = local.defined() ? local : local_branch(in);
  return mix(global, loc, output_gate(in));
}

at::Tensor HybridCore::forward_cached(const HybridInputs& in, HybridState& state) {
  const int64_t B = in.q.size(0), S = in.q.size(2);
  const at::Tensor phi_q = feature_map(in.q, feature_q), phi_k = feature_map(in.k, feature_k);
  auto [i, f] = gates(in.x);
  const at::Tensor gate = output_gate(in);
  if (!state.window) {  // prefill from an empty state: parallel forms, then keep the states
    state.window = std::make_shared<ops::WindowCache>(B, heads_, head_dim_, config_.window, config_.sinks,
                                                      in.k.options());
    auto [global, final_state] = ops::mlstm(phi_q, phi_k, in.v, i, f, c10::nullopt, config_.chunk_size);
    state.mlstm = final_state;
    const at::Tensor loc = local_branch(in);
    state.window->append(in.k, in.v);
    return mix(global, loc, gate);
  }
  if (S > 1) {  // a later prompt chunk: chunkwise mLSTM from the state, window over cache + chunk
    auto [global, final_state] = ops::mlstm(phi_q, phi_k, in.v, i, f, state.mlstm, config_.chunk_size);
    state.mlstm = final_state;
    return mix(global, infer::window_attention_continue(in.q, in.k, in.v, *state.window), gate);
  }
  std::vector<at::Tensor> outs;
  for (int64_t t = 0; t < S; ++t) {  // decode: one position at a time, constant memory
    auto sl = [&](const at::Tensor& x) { return x.narrow(2, t, 1); };
    auto [g, next] = ops::mlstm_step(sl(phi_q), sl(phi_k), sl(in.v), sl(i), sl(f), *state.mlstm);
    state.mlstm = next;
    const at::Tensor loc = ops::window_attention_step(sl(in.q), sl(in.k), sl(in.v), *state.window);
    outs.push_back(mix(g, loc, sl(gate)));
  }
  return torch::cat(outs, 2);
}

}  // namespace xd::student
