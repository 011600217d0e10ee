// The torch side of the loss row kernels (fused_losses.h): checks, layouts, the
// autograd functions and their launches on the current stream.
#include "fused_losses.h"

#include <torch/torch.h>

#include "xdistill/util/error.h"

#ifdef XDISTILL_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "loss_rows_params.h"
#include "ops/kernel_args.h"
#endif

namespace xd::train::fused {
namespace {

// [.., cols] as rows `row_stride` apart with a unit column stride: a view where the
// leading dimensions collapse, a contiguous copy otherwise.
at::Tensor rows_of(const at::Tensor& t) {
  const at::Tensor x = t.stride(-1) == 1 ? t : t.contiguous();
  return x.reshape({-1, x.size(-1)});
}

#ifdef XDISTILL_WITH_CUDA
namespace xk = xd::kernels;
using ops::kernel_args::check_launch;
using ops::kernel_args::dtype_or_throw;
using ops::kernel_args::env_is;
using ops::kernel_args::supported_dtype;

at::Tensor launch_logsumexp(const at::Tensor& rows) {
  at::Tensor lse = at::empty({rows.size(0)}, rows.options().dtype(at::kFloat));
  xk::RowLogSumExpParams p{};
  p.x = rows.data_ptr();
  p.dtype = dtype_or_throw(rows);
  p.rows = rows.size(0);
  p.cols = rows.size(1);
  p.row_stride = rows.stride(0);
  p.lse = lse.data_ptr<float>();
  xk::row_logsumexp(p, at::cuda::getCurrentCUDAStream());
  check_launch("row_logsumexp");
  return lse;
}

// a, b: [rows, cols] with unit column stride.
xk::SquaredErrorParams squared_error_params(const at::Tensor& a, const at::Tensor& b) {
  xk::SquaredErrorParams p{};
  p.a = a.data_ptr();
  p.b = b.data_ptr();
  p.dtype = dtype_or_throw(a);
  p.rows = a.size(0);
  p.cols = a.size(1);
  p.a_row_stride = a.stride(0);
  p.b_row_stride = b.stride(0);
  return p;
}
#endif

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct DistillFunction : public torch::autograd::Function<DistillFunction> {
  static variable_list forward(AutogradContext* ctx, at::Tensor logits, at::Tensor targets, at::Tensor weight,
                               at::Tensor count, at::Tensor teacher_ids, at::Tensor teacher_logprobs,
                               double inv_t, bool with_kl) {
    const at::Tensor rows = rows_of(logits);
    const at::Tensor lse = row_logsumexp(rows).view(targets.sizes());
    const at::Tensor target_logit = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1).to(at::kFloat);
    const at::Tensor ce = ((lse - target_logit) * weight).sum() / count;
    at::Tensor kl = at::zeros({}, lse.options()), delta;
    if (with_kl) {
      // Both distributions renormalised over the teacher's k ids (method.md §3).
      const at::Tensor log_p = at::log_softmax(teacher_logprobs.to(at::kFloat) * inv_t, -1);
      const at::Tensor log_q = at::log_softmax(logits.gather(-1, teacher_ids).to(at::kFloat) * inv_t, -1);
      kl = ((log_p.exp() * (log_p - log_q)).sum(-1) * weight).sum() / count;
      delta = (log_q.exp() - log_p.exp()).contiguous();  // d KL / d z_j = (q_j - p_j) / τ
    }
    ctx->save_for_backward({rows, lse, targets, weight, count, teacher_ids, delta});
    ctx->saved_data["inv_t"] = inv_t;
    ctx->saved_data["with_kl"] = with_kl;
    ctx->saved_data["shape"] = logits.sizes().vec();
    return {ce, kl};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &rows = saved[0], &lse = saved[1], &targets = saved[2], &weight = saved[3], &count = saved[4],
                     &ids = saved[5], &delta = saved[6];
    const double inv_t = ctx->saved_data["inv_t"].toDouble();
    const bool with_kl = ctx->saved_data["with_kl"].toBool();
    const at::Tensor w = weight / count;  // [B,T]
    const at::Tensor g_ce = grads[0].defined() ? grads[0] : at::zeros({}, w.options());
    const at::Tensor ce_coef = (w * g_ce).contiguous();
    at::Tensor topk_coef;
    if (with_kl && grads[1].defined()) topk_coef = ((w * (grads[1] * inv_t)).unsqueeze(-1) * delta).contiguous();
    at::Tensor grad = at::empty(rows.sizes(), rows.options().memory_format(at::MemoryFormat::Contiguous));
#ifdef XDISTILL_WITH_CUDA
    const at::Tensor target_rows = targets.reshape({-1}).contiguous();
    const at::Tensor id_rows = topk_coef.defined() ? ids.reshape({rows.size(0), -1}).contiguous() : at::Tensor();
    xk::DistillLogitsBackwardParams p{};
    p.x = rows.data_ptr();
    p.grad = grad.data_ptr();
    p.dtype = dtype_or_throw(rows);
    p.rows = rows.size(0);
    p.cols = rows.size(1);
    p.row_stride = rows.stride(0);
    p.lse = lse.data_ptr<float>();
    p.target = target_rows.data_ptr<int64_t>();
    p.ce_coef = ce_coef.data_ptr<float>();
    if (topk_coef.defined()) {
      p.topk_ids = id_rows.data_ptr<int64_t>();
      p.topk_coef = topk_coef.data_ptr<float>();
      p.k = static_cast<int>(id_rows.size(1));
    }
    xk::distill_logits_backward(p, at::cuda::getCurrentCUDAStream());
    check_launch("distill_logits_backward");
#else
    (void)targets, (void)ids, (void)ce_coef;
    throw Error("distill loss: the CUDA loss kernels are not built");
#endif
    const auto shape = ctx->saved_data["shape"].toIntVector();
    return {grad.view(shape), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

struct AlignmentFunction : public torch::autograd::Function<AlignmentFunction> {
  static at::Tensor forward(AutogradContext* ctx, at::Tensor student_h, at::Tensor teacher_h) {
    const at::Tensor a = rows_of(student_h), b = rows_of(teacher_h);
    at::Tensor sq = at::empty({a.size(0)}, a.options().dtype(at::kFloat));
#ifdef XDISTILL_WITH_CUDA
    xk::SquaredErrorParams p = squared_error_params(a, b);
    p.sq = sq.data_ptr<float>();
    xk::row_squared_error(p, at::cuda::getCurrentCUDAStream());
    check_launch("row_squared_error");
#endif
    const int64_t batch = student_h.size(0), features = a.size(1);
    ctx->save_for_backward({a, b});
    ctx->saved_data["batch"] = batch;
    ctx->saved_data["shape"] = student_h.sizes().vec();
    // mean over features, sum over positions, mean over rows
    return sq.view({batch, -1}).sum(1).mean() / static_cast<double>(features);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &a = saved[0], &b = saved[1];
    const int64_t batch = ctx->saved_data["batch"].toInt();
    at::Tensor grad = at::empty(a.sizes(), a.options().memory_format(at::MemoryFormat::Contiguous));
#ifdef XDISTILL_WITH_CUDA
    const at::Tensor g = grads[0].to(at::kFloat).contiguous();
    xk::SquaredErrorParams p = squared_error_params(a, b);
    p.grad_a = grad.data_ptr();
    p.scale_device = g.data_ptr<float>();
    p.scale = static_cast<float>(2.0 / (static_cast<double>(a.size(1)) * static_cast<double>(batch)));
    xk::squared_error_backward(p, at::cuda::getCurrentCUDAStream());
    check_launch("squared_error_backward");
#else
    (void)batch, (void)grads;
#endif
    return {grad.view(ctx->saved_data["shape"].toIntVector()), at::Tensor()};
  }
};

}  // namespace

bool distill_supported(const at::Tensor& logits) {
#ifdef XDISTILL_WITH_CUDA
  return !env_is("XD_FUSED_LOSSES", "off") && logits.is_cuda() && logits.dim() == 3 && supported_dtype(logits) &&
         logits.numel() > 0;
#else
  (void)logits;
  return false;
#endif
}

std::pair<at::Tensor, at::Tensor> distill_ce_kl(const at::Tensor& logits, const at::Tensor& targets,
                                                const at::Tensor& weight, const at::Tensor& count,
                                                const at::Tensor& teacher_ids, const at::Tensor& teacher_logprobs,
                                                double inv_temperature, bool with_kl) {
  XD_CHECK(distill_supported(logits), "distill loss: the fused CUDA form does not cover logits ", logits.sizes(), " ",
           logits.scalar_type(), " on ", logits.device());
  const int64_t vocab = logits.size(-1);
  // An id outside the vocabulary would be a silent out-of-row read in the kernel (one host sync).
  std::vector<at::Tensor> ends = {targets.min(), targets.max()};
  if (with_kl) ends.insert(ends.end(), {teacher_ids.min(), teacher_ids.max()});
  const at::Tensor bounds = at::stack(ends).cpu();
  const int64_t* e = bounds.data_ptr<int64_t>();
  XD_CHECK(e[0] >= 0 && e[1] < vocab, "distill loss: target ids span [", e[0], ", ", e[1],
           "], outside the vocabulary of ", vocab);
  if (with_kl)
    XD_CHECK(e[2] >= 0 && e[3] < vocab, "distill loss: teacher top-k ids span [", e[2], ", ", e[3],
             "], outside the vocabulary of ", vocab);
  const c10::DeviceGuard guard(logits.device());
  auto out = DistillFunction::apply(logits, targets, weight, count, with_kl ? teacher_ids : at::Tensor(),
                                    with_kl ? teacher_logprobs : at::Tensor(), inv_temperature, with_kl);
  return {out[0], with_kl ? out[1] : at::Tensor()};
}

at::Tensor row_logsumexp(const at::Tensor& x) {
#ifdef XDISTILL_WITH_CUDA
  XD_CHECK(x.is_cuda() && supported_dtype(x) && x.dim() >= 1, "row_logsumexp: needs a CUDA float tensor, got ",
           x.scalar_type(), " on ", x.device());
  const c10::DeviceGuard guard(x.device());
  at::NoGradGuard no_grad;
  const at::Tensor rows = rows_of(x);
  auto sizes = x.sizes().vec();
  sizes.pop_back();
  return launch_logsumexp(rows).view(sizes);
#else
  (void)x;
  throw Error("row_logsumexp: the CUDA loss kernels are not built");
#endif
}

bool alignment_supported(const at::Tensor& student_h, const at::Tensor& teacher_h) {
#ifdef XDISTILL_WITH_CUDA
  return !env_is("XD_FUSED_LOSSES", "off") && student_h.is_cuda() && teacher_h.device() == student_h.device() &&
         supported_dtype(student_h) &&
         teacher_h.scalar_type() == student_h.scalar_type() && student_h.sizes() == teacher_h.sizes() &&
         student_h.dim() >= 2 && student_h.numel() > 0 && !teacher_h.requires_grad();
#else
  (void)student_h, (void)teacher_h;
  return false;
#endif
}

at::Tensor alignment_loss(const at::Tensor& student_h, const at::Tensor& teacher_h) {
  XD_CHECK(alignment_supported(student_h, teacher_h), "alignment loss: the fused CUDA form does not cover ",
           student_h.sizes(), " ", student_h.scalar_type(), " against ", teacher_h.sizes(), " ",
           teacher_h.scalar_type());
  const c10::DeviceGuard guard(student_h.device());
  // [B,T,F] (or [B,T,H,Dh]) as rows of the features: positions summed, rows averaged.
  const at::Tensor s = student_h.flatten(2), t = teacher_h.flatten(2);
  return AlignmentFunction::apply(s, t);
}

}  // namespace xd::train::fused
