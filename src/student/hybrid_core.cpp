#include "xdistill/student/hybrid_core.h"

#include <torch/torch.h>

#include <cmath>

#include "ops/hybrid_mix.h"
#include "ops/window_heads.h"
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

namespace {

// Rows of a [B,Hx,S,Dh] tensor per head, [Hx, B*S, Dh]: a strided view (no copy) when
// x is the head-transposed view of a contiguous [B,S,Hx,Dh] projection.
at::Tensor head_rows(const at::Tensor& x) {
  const int64_t B = x.size(0), Hx = x.size(1), S = x.size(2), D = x.size(3);
  return x.transpose(1, 2).reshape({B * S, Hx, D}).transpose(0, 1);
}

// [B,Hx,S,Dh] -> [B*S, Hx*Dh]: the projection's own layout (a view, as above).
at::Tensor position_rows(const at::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0) * x.size(2), x.size(1) * x.size(3)});
}

// Per-head weights u [H, Dh] for an input with Hx heads (Hx dividing H) as one
// block-diagonal matrix [Hx*Dh, H]: U[x*Dh + d, h] = u[h, d] when query head h reads
// input head x (h / (H/Hx) == x), else 0. position_rows(in) @ U is then every head's
// dot product u_h . in_h in one GEMM over the projection's layout.
at::Tensor head_dot_weights(const at::Tensor& u, int64_t Hx) {
  const int64_t H = u.size(0), D = u.size(1), G = H / Hx;
  const at::Tensor blocks = u.view({Hx, G, D}).transpose(1, 2).unsqueeze(2);  // [Hx, Dh, 1, G]
  const at::Tensor diagonal = at::eye(Hx, u.options()).view({Hx, 1, Hx, 1});
  return (blocks * diagonal).reshape({Hx * D, H});
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// out = o * global + (1 - o) * local, computed in float32 and written once, in the
// [B,S,H,Dh] layout that W_o reads: on CUDA one kernel each way (ops/hybrid_mix.h),
// elsewhere ATen ops. The backward writes each gradient
// in the layout its consumer reads: the mLSTM's [B,H,S,Dh] and the window
// attention's [B,S,H,Dh].
struct MixBranches : public torch::autograd::Function<MixBranches> {
  // global, local: [B,H,S,Dh] (any strides); gate: [B,S,H] float32. Returns [B,S,H,Dh].
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& global, const at::Tensor& local,
                            const at::Tensor& gate) {
    ctx->save_for_backward({global, local, gate});
    if (ops::fused_mix_supported(global, local, gate)) return ops::fused_mix_forward(global, local, gate);
    const at::Tensor o = gate.unsqueeze(-1);
    const at::Tensor g = global.transpose(1, 2), l = local.transpose(1, 2);
    at::Tensor out = at::empty(g.sizes(), global.options());
    at::addcmul_out(out, o * g, 1 - o, l);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &global = saved[0], &local = saved[1], &gate = saved[2];
    const at::Tensor& grad = grads[0];  // [B,S,H,Dh]
    if (ops::fused_mix_supported(global, local, gate)) {
      auto [d_global, d_local, d_gate] = ops::fused_mix_backward(
          grad, global, local, gate, ctx->needs_input_grad(0), ctx->needs_input_grad(1), ctx->needs_input_grad(2));
      return {d_global, d_local, d_gate};
    }
    const at::Tensor o = gate.unsqueeze(-1);
    const at::Tensor g = global.transpose(1, 2), l = local.transpose(1, 2);
    at::Tensor grad_global, grad_local, grad_gate;
    if (ctx->needs_input_grad(0)) {
      grad_global = at::empty(global.sizes(), global.options());  // contiguous [B,H,S,Dh]
      at::Tensor view = grad_global.transpose(1, 2);
      at::mul_out(view, grad, o);
    }
    if (ctx->needs_input_grad(1)) {
      at::Tensor out = at::empty(l.sizes(), local.options());  // contiguous [B,S,H,Dh]
      at::mul_out(out, grad, 1 - o);
      grad_local = out.transpose(1, 2);
    }
    if (ctx->needs_input_grad(2)) {
      // sum_d grad * (g - l) in float32: the products of two bfloat16 numbers are
      // exact in float32, so form them there (addcmul onto a float32 zero).
      const at::Tensor zero = at::zeros({1}, gate.options());
      at::Tensor products = at::addcmul(zero, grad, g);
      products.addcmul_(grad, l, -1);
      grad_gate = products.sum(-1);
    }
    return {grad_global, grad_local, grad_gate};
  }
};

}  // namespace

at::Tensor HybridCore::feature_map(const at::Tensor& x, const at::Tensor& weight) const {
  // z = x_h W_h per query head h, in one strided batched GEMM over the input heads:
  // input head x serves query heads x*G .. x*G+G-1, whose maps sit side by side.
  const int64_t B = x.size(0), Hx = x.size(1), S = x.size(2), D = x.size(3);
  const int64_t H = weight.size(0), Df = weight.size(2);
  XD_CHECK(x.dim() == 4 && D == weight.size(1) && Hx >= 1 && H % Hx == 0, "hybrid feature map: input ", x.sizes(),
           " must be [B,Hx,S,", weight.size(1), "] with Hx dividing ", H);
  const int64_t G = H / Hx;
  const at::Tensor w = weight.to(x.scalar_type()).view({Hx, G, D, Df}).permute({0, 2, 1, 3}).reshape({Hx, D, G * Df});
  const at::Tensor z = at::bmm(head_rows(x), w).view({Hx, B, S, G, Df}).permute({1, 0, 3, 2, 4});  // [B,Hx,G,S,Df]
  // Softmax over the features; for bfloat16 ATen accumulates in float32 inside the
  // kernel (the same numbers as a float32 softmax rounded once) and writes a
  // contiguous result, which is the [B,H,S,Df] layout the mLSTM reads.
  const at::Tensor phi = config_.feature_map == "hedgehog_pm" ? at::cat({at::softmax(z, -1), at::softmax(-z, -1)}, -1)
                                                              : at::softmax(z, -1);
  return phi.reshape({B, H, S, -1});
}

std::pair<at::Tensor, at::Tensor> HybridCore::gates(const at::Tensor& x) const {
  // [B,S,hidden] -> [B,H,S] each, in float32, soft-capped (xLSTM-7B): a * tanh(z / a).
  // Both gates in one product: weights [2H, hidden].
  const int64_t B = x.size(0), S = x.size(1);
  const at::Tensor w = at::cat({igate_w, fgate_w}).to(torch::kFloat), b = at::cat({igate_b, fgate_b}).to(torch::kFloat);
  at::Tensor z = at::linear(x.to(torch::kFloat), w, b);  // [B,S,2H]
  if (config_.gate_softcap > 0) z = torch::tanh(z / config_.gate_softcap) * config_.gate_softcap;
  z = z.view({B, S, 2, heads_}).permute({2, 0, 3, 1}).contiguous();  // [2,B,H,S]
  return {z[0], z[1]};
}

at::Tensor HybridCore::output_gate_bsh(const HybridInputs& in) const {
  // o = sigma(u_h . [q, k, v] + c_h) per head and position: block-diagonal GEMMs over
  // the projections' [B*S, heads*Dh] layout, summed in float32.
  const int64_t B = in.q.size(0), S = in.q.size(2);
  const at::Tensor u = ogate_w.to(in.v.scalar_type());
  auto dot = [&](const at::Tensor& x, int64_t offset) {
    return at::mm(position_rows(x), head_dot_weights(u.narrow(1, offset, head_dim_), x.size(1))).to(torch::kFloat);
  };
  const at::Tensor z = dot(in.q_gate, 0) + dot(in.k_gate, head_dim_) + dot(in.v, 2 * head_dim_) +
                       ogate_b.to(torch::kFloat);
  return torch::sigmoid(z).view({B, S, heads_});
}

at::Tensor HybridCore::output_gate(const HybridInputs& in) const {
  return output_gate_bsh(in).transpose(1, 2).contiguous();
}

at::Tensor HybridCore::local_branch(const HybridInputs& in) const {
  return ops::window_attention(in.q, in.k, in.v, config_.window, config_.sinks);
}

at::Tensor HybridCore::mix(const at::Tensor& global, const at::Tensor& local, const at::Tensor& gate) const {
  return MixBranches::apply(global, local, gate).transpose(1, 2);
}

at::Tensor HybridCore::forward(const HybridInputs& in, const at::Tensor& local) {
  XD_CHECK(in.q.dim() == 4 && in.q.size(1) == heads_ && in.q.size(3) == head_dim_,
           "hybrid mixer: q must be [B,", heads_, ",S,", head_dim_, "], got ", in.q.sizes());
  XD_CHECK(in.k.dim() == 4 && in.k.sizes() == in.v.sizes() && heads_ % in.k.size(1) == 0,
           "hybrid mixer: k and v must be [B,Hk,S,", head_dim_, "] with Hk dividing ", heads_, ", got ", in.k.sizes(),
           " and ", in.v.sizes());
  const at::Tensor phi_q = feature_map(in.q, feature_q), phi_k = feature_map(in.k, feature_k);
  auto [i, f] = gates(in.x);
  // The mLSTM reads v per query head (KV head repeated to its group, as HF's repeat_kv).
  const at::Tensor v = ops::repeat_kv(in.v, heads_);
  at::Tensor global = ops::mlstm(phi_q, phi_k, v, i, f, c10::nullopt, config_.chunk_size).first;
  const at::Tensor loc = local.defined() ? local : local_branch(in);
  return mix(global, loc, output_gate_bsh(in));
}

at::Tensor HybridCore::forward_cached(const HybridInputs& in, HybridState& state) {
  // The key/value heads stay as they are (the feature map, the output gate, flash
  // attention and the window cache read Hk heads); only the mLSTM reads v per query head.
  const int64_t B = in.q.size(0), S = in.q.size(2), Hk = in.k.size(1);
  const at::Tensor phi_q = feature_map(in.q, feature_q), phi_k = feature_map(in.k, feature_k);
  const at::Tensor v = ops::repeat_kv(in.v, heads_);
  auto [i, f] = gates(in.x);
  const at::Tensor gate = output_gate_bsh(in);  // [B,S,H]
  if (!state.window) {  // prefill from an empty state: parallel forms, then keep the states
    state.window = std::make_shared<ops::WindowCache>(B, Hk, head_dim_, config_.window, config_.sinks,
                                                      in.k.options());
    auto [global, final_state] = ops::mlstm(phi_q, phi_k, v, i, f, c10::nullopt, config_.chunk_size);
    state.mlstm = final_state;
    const at::Tensor loc = local_branch(in);
    state.window->append(in.k, in.v);
    return mix(global, loc, gate);
  }
  if (S > 1) {  // a later prompt chunk: chunkwise mLSTM from the state, window over cache + chunk
    auto [global, final_state] = ops::mlstm(phi_q, phi_k, v, i, f, state.mlstm, config_.chunk_size);
    state.mlstm = final_state;
    return mix(global, infer::window_attention_continue(in.q, in.k, in.v, *state.window), gate);
  }
  // Decode: one position, constant memory.
  auto [global, next] = ops::mlstm_step(phi_q, phi_k, v, i, f, *state.mlstm);
  state.mlstm = next;
  return mix(global, ops::window_attention_step(in.q, in.k, in.v, *state.window), gate);
}

}  // namespace xd::student
