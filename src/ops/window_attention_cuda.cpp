// CUDA sliding window + sinks: ATen's windowed flash attention for the window,
// merged exactly with the sink keys that have left the window through the
// log-sum-exp. The backward hands flash attention the merged output and
// log-sum-exp, so its probabilities are the merged softmax's and its gradients
// exact; the sink keys' share is a small dense product (sinks x S).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <torch/autograd.h>

#include <cmath>
#include <cstdlib>
#include <string>

#include "ops/window_attention_cuda.h"
#include "window_sinks_params.h"
#include "xdistill/util/error.h"

namespace xd::ops::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Logits of the tail queries (positions t >= window) against the sink keys j that
// are outside their window (t - j >= window), masked elsewhere. [B,H,S-window,ns] f32.
at::Tensor sink_logits(const at::Tensor& q, const at::Tensor& k, int64_t window, int64_t ns, double scale) {
  const int64_t tail = q.size(2) - window;
  const auto qt = q.narrow(2, window, tail).to(at::kFloat);
  const auto ks = k.narrow(2, 0, ns).to(at::kFloat);
  auto logits = at::matmul(qt, ks.transpose(-1, -2)) * scale;
  // Tail row r is position window + r; it sees sink j iff r >= j.
  const auto r = at::arange(tail, q.options().dtype(at::kLong)).unsqueeze(-1);
  const auto j = at::arange(ns, q.options().dtype(at::kLong)).unsqueeze(0);
  return logits.masked_fill(r < j, -std::numeric_limits<float>::infinity());
}

namespace xk = xd::kernels;

// The fused sink kernels (kernels/window_sinks.cu) cover up to kMaxSinks sinks and
// head dims up to kMaxSinkHeadDim; XD_WINDOW_SINKS=aten selects the ATen merge.
bool fused_sinks(int64_t ns, const at::Tensor& q, const at::Tensor& lse) {
  const char* env = std::getenv("XD_WINDOW_SINKS");
  if (env && std::string(env) == "aten") return false;
  return ns <= xk::kMaxSinks && q.size(3) <= xk::kMaxSinkHeadDim && lse.is_contiguous() &&
         lse.sizes() == at::IntArrayRef({q.size(0), q.size(1), q.size(2)});
}

// The parameters shared by the forward and backward sink kernels. out: flash
// attention's [B,S,H,D] tensor (any strides with a unit last one).
xk::WindowSinksParams sink_params(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
                                  const at::Tensor& lse, int64_t window, int64_t ns, double scale) {
  XD_CHECK(out.stride(3) == 1, "window_attention: flash attention output with a non-unit last stride");
  xk::WindowSinksParams p{};
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.out = out.data_ptr();
  p.lse = lse.data_ptr<float>();
  p.half = q.scalar_type() == at::kHalf;
  p.scale = static_cast<float>(scale);
  p.B = static_cast<int>(q.size(0));
  p.H = static_cast<int>(q.size(1));
  p.S = static_cast<int>(q.size(2));
  p.D = static_cast<int>(q.size(3));
  p.window = static_cast<int>(window);
  p.sinks = static_cast<int>(ns);
  p.out_sb = out.stride(0);
  p.out_st = out.stride(1);
  p.out_sh = out.stride(2);
  return p;
}

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw Error(std::string("window_attention: CUDA kernel ") + what + " failed: " + cudaGetErrorString(e));
}

class WindowAttentionFunction : public torch::autograd::Function<WindowAttentionFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               int64_t window, int64_t sinks) {
    const int64_t S = q.size(2);
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
    // Flash attention takes [B,S,H,D] with a unit last stride: a transposed view.
    const auto qb = q.transpose(1, 2), kb = k.transpose(1, 2), vb = v.transpose(1, 2);
    auto [out, lse, rng, unused, debug] = at::_flash_attention_forward(
        qb, kb, vb, c10::nullopt, c10::nullopt, S, S, 0.0, /*is_causal=*/true, /*return_debug_mask=*/false, scale,
        /*window_size_left=*/window - 1, /*window_size_right=*/0);
    const int64_t ns = std::min(sinks, S);
    if (ns > 0 && S > window && fused_sinks(ns, q, lse)) {
      xk::window_sinks_forward(sink_params(q, k, v, out, lse, window, ns, scale), at::cuda::getCurrentCUDAStream());
      check_launch("window_sinks_forward");
    } else if (ns > 0 && S > window) {
      const int64_t tail = S - window;
      const auto logits = sink_logits(q, k, window, ns, scale);
      const auto lse_s = at::logsumexp(logits, -1);  // finite: sink 0 is always visible
      const auto o_s = at::matmul(at::exp(logits - lse_s.unsqueeze(-1)), v.narrow(2, 0, ns).to(at::kFloat));
      auto lse_w = lse.narrow(2, window, tail);
      const auto lse_all = at::logaddexp(lse_w, lse_s);
      auto out_w = out.narrow(1, window, tail).transpose(1, 2);  // [B,H,tail,D] view into out
      const auto merged = out_w.to(at::kFloat) * at::exp(lse_w - lse_all).unsqueeze(-1) +
                          o_s * at::exp(lse_s - lse_all).unsqueeze(-1);
      out_w.copy_(merged);
      lse_w.copy_(lse_all);
    }
    ctx->save_for_backward({q, k, v, out, lse, rng, unused});
    ctx->saved_data["window"] = window;
    ctx->saved_data["sinks"] = ns;
    return {out.transpose(1, 2)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &lse = saved[4];
    const int64_t window = ctx->saved_data["window"].toInt(), ns = ctx->saved_data["sinks"].toInt();
    const int64_t S = q.size(2);
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
    const auto dout = grads[0].transpose(1, 2).contiguous();
    auto [dq, dk, dv] = at::_flash_attention_backward(dout, q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                      out, lse, at::Tensor(), at::Tensor(), S, S, 0.0, true,
                                                      saved[5], saved[6], scale, window - 1, 0);
    dq = dq.transpose(1, 2);  // [B,H,S,D] views
    dk = dk.transpose(1, 2);
    dv = dv.transpose(1, 2);
    if (ns > 0 && S > window && fused_sinks(ns, q, lse)) {
      const auto go = grads[0].contiguous();
      // One float32 partial per block of rows; every block writes its whole slice.
      const int64_t blocks = xk::window_sinks_blocks(static_cast<int>(S), static_cast<int>(window));
      auto dk_s = at::empty({blocks, q.size(0) * q.size(1), ns, q.size(3)}, q.options().dtype(at::kFloat));
      auto dv_s = at::empty_like(dk_s);
      auto p = sink_params(q, k, v, out, lse, window, ns, scale);
      XD_CHECK(dq.stride(3) == 1, "window_attention: flash attention dq with a non-unit last stride");
      p.dout = go.data_ptr();
      p.dq = dq.data_ptr();
      p.dq_sb = dq.stride(0);  // dq is the [B,H,S,D] view here
      p.dq_st = dq.stride(2);
      p.dq_sh = dq.stride(1);
      p.dk_sinks = dk_s.data_ptr<float>();
      p.dv_sinks = dv_s.data_ptr<float>();
      xk::window_sinks_backward(p, at::cuda::getCurrentCUDAStream());
      check_launch("window_sinks_backward");
      const auto shape = std::vector<int64_t>{q.size(0), q.size(1), ns, q.size(3)};
      auto dk_head = dk.narrow(2, 0, ns), dv_head = dv.narrow(2, 0, ns);
      dk_head.copy_(dk_head.to(at::kFloat) + dk_s.sum(0).view(shape));
      dv_head.copy_(dv_head.to(at::kFloat) + dv_s.sum(0).view(shape));
    } else if (ns > 0 && S > window) {
      const int64_t tail = S - window;
      const auto logits = sink_logits(q, k, window, ns, scale);
      const auto p = at::exp(logits - lse.narrow(2, window, tail).unsqueeze(-1));  // merged softmax
      const auto go = grads[0].narrow(2, window, tail).to(at::kFloat);
      const auto o = out.narrow(1, window, tail).transpose(1, 2).to(at::kFloat);
      const auto delta = (go * o).sum(-1, /*keepdim=*/true);
      const auto vs = v.narrow(2, 0, ns).to(at::kFloat), ks = k.narrow(2, 0, ns).to(at::kFloat);
      const auto ds = p * (at::matmul(go, vs.transpose(-1, -2)) - delta) * scale;
      auto dq_tail = dq.narrow(2, window, tail);
      dq_tail.copy_(dq_tail.to(at::kFloat) + at::matmul(ds, ks));
      auto dk_s = dk.narrow(2, 0, ns), dv_s = dv.narrow(2, 0, ns);
      dk_s.copy_(dk_s.to(at::kFloat) + at::matmul(ds.transpose(-1, -2), q.narrow(2, window, tail).to(at::kFloat)));
      dv_s.copy_(dv_s.to(at::kFloat) + at::matmul(p.transpose(-1, -2), go));
    }
    return {dq, dk, dv, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

bool window_attention_cuda_supports(const at::Tensor& q) {
  const auto t = q.scalar_type();
  const int64_t D = q.size(3);
  return q.is_cuda() && (t == at::kBFloat16 || t == at::kHalf) && D % 8 == 0 && D <= 256;
}

at::Tensor window_attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                                 int64_t sinks) {
  return WindowAttentionFunction::apply(q.contiguous(), k.contiguous(), v.contiguous(), window, sinks)[0];
}

}  // namespace xd::ops::detail
