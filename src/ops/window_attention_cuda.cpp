// CUDA sliding window + sinks: windowed fused attention for the window (cuDNN's for
// training steps, ATen's flash attention for forwards without gradients), merged exactly
// with the sink keys that have left the window through the log-sum-exp. The backward
// hands the attention kernel the merged output and log-sum-exp, so its probabilities are
// the merged softmax's and its gradients exact; the sink keys' share is a small dense
// product (sinks x S).
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <tuple>

#include "ops/cudnn_window.h"
#include "ops/kernel_args.h"
#include "ops/window_attention_cuda.h"
#include "ops/window_heads.h"
#include "window_sinks_params.h"
#include "xdistill/ops/window_attention.h"
#include "xdistill/util/error.h"

namespace xd::ops::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
namespace xk = xd::kernels;

// Rows the kernels (flash attention's and ours) can read with 16-byte loads: unit last
// stride, other strides multiples of 8 elements, 16-byte aligned start.
bool aligned_rows(const at::Tensor& x) {
  return x.stride(3) == 1 && x.stride(0) % 8 == 0 && x.stride(1) % 8 == 0 && x.stride(2) % 8 == 0 &&
         reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0;
}

// [B,H,S,D] (any strides) -> the [B,S,H,D] view flash attention takes; a copy only
// when the rows are not aligned (a [B,H,S,D] view of a [B,S,H,D] projection is free).
at::Tensor flash_layout(const at::Tensor& x) {
  const auto t = x.transpose(1, 2);
  return aligned_rows(t) ? t : t.clone(at::MemoryFormat::Contiguous);  // a fresh, aligned allocation
}

// The fused sink kernels (kernels/window_sinks.cu) cover up to kMaxSinks sinks and
// head dims up to kMaxSinkHeadDim; XD_WINDOW_SINKS=aten selects the ATen merge.
bool fused_sinks(int64_t ns, const at::Tensor& qb, const at::Tensor& kb, const at::Tensor& vb, const at::Tensor& lse) {
  if (kernel_args::env_is("XD_WINDOW_SINKS", "aten")) return false;
  return ns <= xk::kMaxSinks && qb.size(3) <= xk::kMaxSinkHeadDim && qb.size(0) * qb.size(2) <= 65535 &&
         aligned_rows(qb) && aligned_rows(kb) && aligned_rows(vb) &&
         lse.is_contiguous() && lse.sizes() == at::IntArrayRef({qb.size(0), qb.size(2), qb.size(1)});
}

xk::StridedRows rows(const at::Tensor& x) {  // x: [B,S,heads,D] with aligned rows
  XD_CHECK(aligned_rows(x), "window_attention: a [B,S,H,D] tensor ", x.sizes(), " with strides ", x.strides(),
           " is not 16-byte aligned per row");
  return {x.data_ptr(), x.stride(0), x.stride(1), x.stride(2)};
}

// The parameters shared by the forward and backward sink kernels; every tensor in
// flash attention's [B,S,heads,D] layout.
xk::WindowSinksParams sink_params(const at::Tensor& qb, const at::Tensor& kb, const at::Tensor& vb,
                                  const at::Tensor& out, const at::Tensor& lse, int64_t window, int64_t ns,
                                  double scale) {
  xk::WindowSinksParams p{};
  p.q = rows(qb);
  p.k = rows(kb);
  p.v = rows(vb);
  p.out = rows(out);
  p.lse = lse.data_ptr<float>();
  p.half = qb.scalar_type() == at::kHalf;
  p.scale = static_cast<float>(scale);
  p.B = static_cast<int>(qb.size(0));
  p.S = static_cast<int>(qb.size(1));
  p.H = static_cast<int>(qb.size(2));
  p.Hk = static_cast<int>(kb.size(2));
  p.D = static_cast<int>(qb.size(3));
  p.window = static_cast<int>(window);
  p.sinks = static_cast<int>(ns);
  return p;
}

void check_window_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw Error(std::string("window_attention: CUDA kernel ") + what + " failed: " + cudaGetErrorString(e));
}

// Logits of the tail queries (positions t >= window) against the sink keys j that
// are outside their window (t - j >= window), masked elsewhere. q [B,H,S,D], k
// [B,Hk,S,D] (views); returns [B,H,S-window,ns] float32.
at::Tensor sink_logits(const at::Tensor& q, const at::Tensor& k, int64_t window, int64_t ns, double scale) {
  const int64_t tail = q.size(2) - window;
  const auto qt = q.narrow(2, window, tail).to(at::kFloat);
  const auto ks = repeat_kv(k.narrow(2, 0, ns).to(at::kFloat), q.size(1));
  auto logits = at::matmul(qt, ks.transpose(-1, -2)) * scale;
  // Tail row r is position window + r; it sees sink j iff r >= j.
  const auto r = at::arange(tail, q.options().dtype(at::kLong)).unsqueeze(-1);
  const auto j = at::arange(ns, q.options().dtype(at::kLong)).unsqueeze(0);
  return logits.masked_fill(r < j, -std::numeric_limits<float>::infinity());
}

// The sink merge with ATen operations (fallback and XD_WINDOW_SINKS=aten); q, k, v
// [B,H|Hk,S,D] views, out [B,S,H,D], lse [B,H,S], both merged in place.
void aten_sinks_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& out,
                        at::Tensor& lse, int64_t window, int64_t ns, double scale) {
  const int64_t tail = q.size(2) - window;
  const auto logits = sink_logits(q, k, window, ns, scale);
  const auto lse_s = at::logsumexp(logits, -1);  // finite: sink 0 is always visible
  const auto vs = repeat_kv(v.narrow(2, 0, ns).to(at::kFloat), q.size(1));
  const auto o_s = at::matmul(at::exp(logits - lse_s.unsqueeze(-1)), vs);
  auto lse_w = lse.narrow(2, window, tail);
  const auto lse_all = at::logaddexp(lse_w, lse_s);
  auto out_w = out.narrow(1, window, tail).transpose(1, 2);  // [B,H,tail,D] view into out
  const auto merged =
      out_w.to(at::kFloat) * at::exp(lse_w - lse_all).unsqueeze(-1) + o_s * at::exp(lse_s - lse_all).unsqueeze(-1);
  out_w.copy_(merged);
  lse_w.copy_(lse_all);
}

// The sinks' share of the gradients with ATen operations; every tensor a [B,heads,S,D]
// view, dq/dk/dv updated in place.
void aten_sinks_backward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& out,
                         const at::Tensor& lse, const at::Tensor& dout, at::Tensor& dq, at::Tensor& dk, at::Tensor& dv,
                         int64_t window, int64_t ns, double scale) {
  const int64_t tail = q.size(2) - window, Hk = k.size(1);
  const auto logits = sink_logits(q, k, window, ns, scale);
  const auto p = at::exp(logits - lse.narrow(2, window, tail).unsqueeze(-1));  // merged softmax
  const auto go = dout.narrow(2, window, tail).to(at::kFloat);
  const auto o = out.narrow(2, window, tail).to(at::kFloat);
  const auto delta = (go * o).sum(-1, /*keepdim=*/true);
  const auto vs = repeat_kv(v.narrow(2, 0, ns).to(at::kFloat), q.size(1));
  const auto ks = repeat_kv(k.narrow(2, 0, ns).to(at::kFloat), q.size(1));
  const auto ds = p * (at::matmul(go, vs.transpose(-1, -2)) - delta) * scale;
  auto dq_tail = dq.narrow(2, window, tail);
  dq_tail.copy_(dq_tail.to(at::kFloat) + at::matmul(ds, ks));
  auto dk_s = dk.narrow(2, 0, ns), dv_s = dv.narrow(2, 0, ns);
  const auto qt = q.narrow(2, window, tail).to(at::kFloat);
  dk_s.copy_(dk_s.to(at::kFloat) + sum_groups(at::matmul(ds.transpose(-1, -2), qt), Hk));
  dv_s.copy_(dv_s.to(at::kFloat) + sum_groups(at::matmul(p.transpose(-1, -2), go), Hk));
}

namespace cw = xd::ops::cudnn_window;

// A [B,S,heads,D] tensor (flash attention's layout, any strides) as cuDNN's [B,heads,S,D].
cw::Layout cudnn_layout(const at::Tensor& xb) {
  return {xb.size(2), {xb.stride(0), xb.stride(2), xb.stride(1), xb.stride(3)}};
}

// A fresh contiguous [B,S,heads,D] tensor's layout (the output; dout without one given).
cw::Layout contiguous_layout(int64_t S, int64_t heads, int64_t D) { return {heads, {S * heads * D, D, heads * D, 1}}; }

// The strides of the gradient of xb ([B,S,heads,D], flash attention's layout): xb's own
// where it is dense (a [B,H,S,D] tensor's gradient stays [B,H,S,D] in memory, so autograd
// need not copy it into its leaf's layout, as flash attention's backward does too), else
// contiguous [B,S,heads,D].
std::vector<int64_t> gradient_strides(const at::Tensor& xb) {
  if (xb.is_non_overlapping_and_dense()) return xb.strides().vec();
  return {xb.size(1) * xb.size(2) * xb.size(3), xb.size(2) * xb.size(3), xb.size(3), 1};
}
at::Tensor gradient_like(const at::Tensor& xb) { return at::empty_strided(xb.sizes(), gradient_strides(xb), xb.options()); }
cw::Layout gradient_layout(const at::Tensor& xb) {
  const auto st = gradient_strides(xb);
  return {xb.size(2), {st[0], st[2], st[1], st[3]}};
}

// cuDNN's fused attention runs the window of training steps by default: forward +
// backward 3.96 ms against flash attention's 6.44 and FlexAttention's 4.56 at B=8
// S=4096 on an H100 (BENCHMARKS.md). Training shapes are fixed, so its graphs (about a
// second to build per new shape, cached per process) are built once. A forward without
// gradients (inference, evaluation: lengths vary from call to call) keeps flash
// attention, except inside TrainingForwardScope (activation checkpointing's first
// forward, whose recompute is a training step). XD_WINDOW_ATTENTION=cudnn or =flash
// decides for both.
bool cudnn_asked(bool training) {
  if (!cw::compiled_in() || kernel_args::env_is("XD_WINDOW_ATTENTION", "flash")) return false;
  return training || kernel_args::env_is("XD_WINDOW_ATTENTION", "cudnn");
}

// The cuDNN problem of q, k, v in flash attention's layout, with the output contiguous,
// the gradients as gradient_strides() makes them and dout as given (contiguous without
// one); nullopt unless cuDNN builds both the forward and the backward graph (flash
// attention runs then).
std::optional<cw::Problem> cudnn_problem(const at::Tensor& qb, const at::Tensor& kb, const at::Tensor& vb,
                                         int64_t window, double scale, std::string* why = nullptr,
                                         const at::Tensor* dout = nullptr) {
  cw::Problem p;
  p.dtype = qb.scalar_type() == at::kHalf ? cw::Dtype::f16 : cw::Dtype::bf16;
  p.device = qb.get_device();
  p.batch = qb.size(0);
  p.seq = qb.size(1);
  p.head_dim = qb.size(3);
  p.window = window;
  p.scale = static_cast<float>(scale);
  p.q = cudnn_layout(qb);
  p.k = cudnn_layout(kb);
  p.v = cudnn_layout(vb);
  p.o = p.dout = contiguous_layout(p.seq, qb.size(2), p.head_dim);
  p.dq = gradient_layout(qb);
  p.dk = gradient_layout(kb);
  p.dv = gradient_layout(vb);
  if (dout) p.dout = cudnn_layout(*dout);
  if (!cw::supports_forward(p, why) || !cw::supports_backward(p, why)) return std::nullopt;
  return p;
}

at::Tensor workspace(int64_t bytes, const at::Tensor& like) {
  return at::empty({std::max<int64_t>(bytes, 1)}, like.options().dtype(at::kByte));
}

class WindowAttentionFunction : public torch::autograd::Function<WindowAttentionFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               int64_t window, int64_t sinks, bool training) {
    const int64_t S = q.size(2);
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
    const auto qb = flash_layout(q), kb = flash_layout(k), vb = flash_layout(v);
    at::Tensor out, lse, rng, unused;
    const auto cudnn = cudnn_asked(training) ? cudnn_problem(qb, kb, vb, window, scale) : std::nullopt;
    if (cudnn) {
      out = at::empty({qb.size(0), S, qb.size(2), qb.size(3)}, qb.options());
      lse = at::empty({qb.size(0), qb.size(2), S}, qb.options().dtype(at::kFloat));
      const auto ws = workspace(cw::forward_workspace(*cudnn), qb);
      cw::forward(*cudnn, qb.data_ptr(), kb.data_ptr(), vb.data_ptr(), out.data_ptr(), lse.data_ptr<float>(),
                  ws.data_ptr(), at::cuda::getCurrentCUDAStream().stream());
    } else {
      std::tie(out, lse, rng, unused, std::ignore) = at::_flash_attention_forward(
          qb, kb, vb, c10::nullopt, c10::nullopt, S, S, 0.0, /*is_causal=*/true, /*return_debug_mask=*/false, scale,
          /*window_size_left=*/window - 1, /*window_size_right=*/0);
    }
    const int64_t ns = std::min(sinks, S);
    if (ns > 0 && S > window && fused_sinks(ns, qb, kb, vb, lse)) {
      xk::window_sinks_forward(sink_params(qb, kb, vb, out, lse, window, ns, scale), at::cuda::getCurrentCUDAStream());
      check_window_launch("window_sinks_forward");
    } else if (ns > 0 && S > window) {
      aten_sinks_forward(qb.transpose(1, 2), kb.transpose(1, 2), vb.transpose(1, 2), out, lse, window, ns, scale);
    }
    ctx->save_for_backward({qb, kb, vb, out, lse, rng, unused});
    ctx->saved_data["window"] = window;
    ctx->saved_data["sinks"] = ns;
    ctx->saved_data["cudnn"] = cudnn.has_value();
    return {out.transpose(1, 2)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &qb = saved[0], &kb = saved[1], &vb = saved[2], &out = saved[3], &lse = saved[4];
    const int64_t window = ctx->saved_data["window"].toInt(), ns = ctx->saved_data["sinks"].toInt();
    const int64_t S = qb.size(1);
    const double scale = 1.0 / std::sqrt(static_cast<double>(qb.size(3)));
    // Flash attention's backward copies dout and out unless they are contiguous in
    // [B,S,H,D]: free when the caller's layout is that of the projections. cuDNN takes
    // dout's strides as they are (a [B,H,S,D] gradient needs no copy either).
    auto dout = grads[0].transpose(1, 2);
    const bool on_cudnn = ctx->saved_data["cudnn"].toBool();
    std::optional<cw::Problem> cudnn;
    const bool no_broadcast = dout.stride(0) != 0 && dout.stride(1) != 0 && dout.stride(2) != 0;
    if (on_cudnn && aligned_rows(dout) && no_broadcast) cudnn = cudnn_problem(qb, kb, vb, window, scale, nullptr, &dout);
    if (!cudnn && (!dout.is_contiguous() || !aligned_rows(dout))) dout = dout.clone(at::MemoryFormat::Contiguous);
    if (on_cudnn && !cudnn) cudnn = cudnn_problem(qb, kb, vb, window, scale);  // contiguous dout, as the forward checked
    at::Tensor dq, dk, dv;
    if (cudnn) {
      dq = gradient_like(qb);
      dk = gradient_like(kb);
      dv = gradient_like(vb);
      const auto ws = workspace(cw::backward_workspace(*cudnn), qb);
      cw::backward(*cudnn, qb.data_ptr(), kb.data_ptr(), vb.data_ptr(), out.data_ptr(), dout.data_ptr(),
                   lse.data_ptr<float>(), dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), ws.data_ptr(),
                   at::cuda::getCurrentCUDAStream().stream());
    } else {
      XD_CHECK(!on_cudnn, "window_attention: the forward ran on cuDNN but its backward "
               "graph did not build for these tensors");
      std::tie(dq, dk, dv) = at::_flash_attention_backward(dout, qb, kb, vb, out, lse, at::Tensor(), at::Tensor(), S,
                                                           S, 0.0, true, saved[5], saved[6], scale, window - 1, 0);
    }
    if (ns > 0 && S > window && fused_sinks(ns, qb, kb, vb, lse) && aligned_rows(dq) && aligned_rows(dk) &&
        aligned_rows(dv) && aligned_rows(out) && aligned_rows(dout)) {
      const int64_t chunks = xk::window_sinks_chunks(static_cast<int>(qb.size(0)), static_cast<int>(qb.size(2)),
                                                     static_cast<int>(S), static_cast<int>(window));
      auto part = at::empty({2, chunks, qb.size(0) * qb.size(2), ns, qb.size(3)}, qb.options().dtype(at::kFloat));
      auto p = sink_params(qb, kb, vb, out, lse, window, ns, scale);
      p.dout = rows(dout);
      p.dq = rows(dq);
      p.dk = rows(dk);
      p.dv = rows(dv);
      p.dk_part = part[0].data_ptr<float>();
      p.dv_part = part[1].data_ptr<float>();
      xk::window_sinks_backward(p, at::cuda::getCurrentCUDAStream());
      check_window_launch("window_sinks_backward");
    } else if (ns > 0 && S > window) {
      auto dq4 = dq.transpose(1, 2), dk4 = dk.transpose(1, 2), dv4 = dv.transpose(1, 2);
      aten_sinks_backward(qb.transpose(1, 2), kb.transpose(1, 2), vb.transpose(1, 2), out.transpose(1, 2),
                          lse, dout.transpose(1, 2), dq4, dk4, dv4, window, ns, scale);
    }
    return {dq.transpose(1, 2), dk.transpose(1, 2), dv.transpose(1, 2), at::Tensor(), at::Tensor(), at::Tensor()};
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
  // Launches go to the stream of q's device, whichever device is current (the backward
  // runs on the autograd engine's thread for that device, which sets it).
  const c10::cuda::CUDAGuard guard(q.device());
  // Decided here: inside the function's forward grad mode is off, and a context made
  // without gradients has no inputs to ask needs_input_grad about.
  const bool training = TrainingForwardScope::active() ||
                        (at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad()));
  return WindowAttentionFunction::apply(q, k, v, window, sinks, training)[0];
}

bool window_attention_cudnn_takes(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                                  std::string* why) {
  if (!cw::compiled_in()) {
    if (why) *why = "this build has no cudnn_frontend";
    return false;
  }
  const c10::cuda::CUDAGuard guard(q.device());
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  return cudnn_problem(flash_layout(q), flash_layout(k), flash_layout(v), window, scale, why).has_value();
}

bool merge_cached_sinks(const at::Tensor& q, at::Tensor& out, at::Tensor& lse, const at::Tensor& sink_k,
                        const at::Tensor& sink_v, int64_t position0, int64_t window) {
  const int64_t ns = sink_k.size(2);
  // The sink kernel by default since InferenceGpu.WindowContinueMatchesTheDenseReference
  // (both ways) passed on an H100 (2026-12-07); XD_CACHED_SINKS=aten merges with ATen.
  if (kernel_args::env_is("XD_CACHED_SINKS", "aten")) return false;
  if (ns < 1 || ns > xk::kMaxSinks || position0 < ns || q.size(3) > xk::kMaxSinkHeadDim ||
      q.size(0) * q.size(2) > 65535 || !window_attention_cuda_supports(q.transpose(1, 2)))
    return false;
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), Hk = sink_k.size(1);
  if (Hk < 1 || H % Hk != 0 || lse.sizes() != at::IntArrayRef({B, H, T}) || out.sizes() != q.sizes() ||
      sink_v.sizes() != sink_k.sizes() || sink_k.size(0) != B || sink_k.size(3) != q.size(3))
    return false;
  const auto sk = sink_k.transpose(1, 2), sv = sink_v.transpose(1, 2);  // [B,sinks,Hk,D] views
  if (!aligned_rows(q) || !aligned_rows(out) || !aligned_rows(sk) || !aligned_rows(sv) || !lse.is_contiguous() ||
      lse.scalar_type() != at::kFloat || sk.scalar_type() != q.scalar_type() || sv.scalar_type() != q.scalar_type() ||
      out.scalar_type() != q.scalar_type())
    return false;
  const c10::cuda::CUDAGuard guard(q.device());
  xk::WindowSinksParams p = sink_params(q, sk, sv, out, lse, window, ns, 1.0 / std::sqrt(static_cast<double>(q.size(3))));
  p.position0 = static_cast<int>(position0);
  p.sink_k = rows(sk);
  p.sink_v = rows(sv);
  xk::window_sinks_forward(p, at::cuda::getCurrentCUDAStream());
  check_window_launch("window_sinks_forward (cached sinks)");
  return true;
}

}  // namespace xd::ops::detail
