#include "xdistill/train/losses.h"

#include <ATen/ATen.h>

#include <tuple>

#include "fused_losses.h"
#include "xdistill/util/error.h"

namespace xd::train {

DistillLossParts distill_loss(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& mask,
                              const at::Tensor& teacher_ids, const at::Tensor& teacher_logprobs,
                              const DistillWeights& w) {
  XD_CHECK(logits.dim() == 3, "distill_loss: logits must be [B,T,V], got ", logits.sizes());
  XD_CHECK(targets.sizes() == logits.sizes().slice(0, 2), "distill_loss: targets ", targets.sizes(),
           " do not match logits ", logits.sizes());
  const bool with_kl = w.kl != 0.0;
  if (with_kl) {
    XD_CHECK(teacher_ids.defined() && teacher_logprobs.defined(),
             "distill_loss: the KL term needs the teacher's top-k ids and log-probs");
    XD_CHECK(teacher_ids.sizes() == teacher_logprobs.sizes() && teacher_ids.dim() == 3 &&
                 teacher_ids.size(0) == logits.size(0) && teacher_ids.size(1) == logits.size(1),
             "distill_loss: teacher top-k ", teacher_ids.sizes(), " / ", teacher_logprobs.sizes(),
             " do not match logits ", logits.sizes());
  }
  const at::Tensor weight = mask.to(at::kFloat);
  const at::Tensor count = weight.sum().clamp_min(1.0);
  DistillLossParts out;
  out.positions = static_cast<int64_t>(weight.sum().item<double>());
  const double inv_t = 1.0 / w.temperature;

  if (fused::distill_supported(logits)) {
    // CUDA: the log-partition and the gradient in one pass each over the logits, no float32 copy.
    std::tie(out.ce, out.kl) =
        fused::distill_ce_kl(logits, targets, weight, count, teacher_ids, teacher_logprobs, inv_t, with_kl);
  } else {
    const at::Tensor logits32 = logits.to(at::kFloat);
    // CE at temperature 1 always: the next-token objective does not change with τ.
    const at::Tensor log_z = at::logsumexp(logits32, -1);  // [B,T]
    const at::Tensor target_logit = logits32.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
    out.ce = ((log_z - target_logit) * weight).sum() / count;
    if (with_kl) {
      // Both distributions renormalised over the teacher's k ids (method.md §3).
      const at::Tensor log_p = at::log_softmax(teacher_logprobs.to(at::kFloat) * inv_t, -1);
      const at::Tensor log_q = at::log_softmax(logits32.gather(-1, teacher_ids) * inv_t, -1);
      const at::Tensor kl_pos = (log_p.exp() * (log_p - log_q)).sum(-1);  // [B,T]
      out.kl = (kl_pos * weight).sum() / count;
    }
  }
  if (!with_kl) out.kl = at::zeros({}, out.ce.options());
  out.total = out.ce * w.ce + out.kl * w.kl;
  return out;
}

std::pair<at::Tensor, at::Tensor> teacher_top_k(const at::Tensor& teacher_logits, int64_t k) {
  XD_CHECK(k >= 1 && k <= teacher_logits.size(-1), "loss.top_k: k = ", k, " must be in [1, vocab = ",
           teacher_logits.size(-1), "]");
  if (fused::distill_supported(teacher_logits) && !teacher_logits.requires_grad()) {
    // The top-k values are exact in the logits' dtype; only the log-partition needs float32.
    auto [values, ids] = teacher_logits.topk(k, -1, /*largest=*/true, /*sorted=*/true);
    return {ids, values.to(at::kFloat) - fused::row_logsumexp(teacher_logits).unsqueeze(-1)};
  }
  const at::Tensor logits32 = teacher_logits.to(at::kFloat);
  auto [values, ids] = logits32.topk(k, -1, /*largest=*/true, /*sorted=*/true);
  const at::Tensor log_z = at::logsumexp(logits32, -1, /*keepdim=*/true);
  return {ids, values - log_z};
}

at::Tensor alignment_loss(const at::Tensor& student_h, const at::Tensor& teacher_h) {
  XD_CHECK(student_h.sizes() == teacher_h.sizes(), "alignment_loss: student ", student_h.sizes(),
           " and teacher ", teacher_h.sizes(), " outputs differ in shape");
  if (fused::alignment_supported(student_h, teacher_h)) return fused::alignment_loss(student_h, teacher_h);
  const at::Tensor diff = student_h.to(at::kFloat) - teacher_h.to(at::kFloat);
  const at::Tensor per_pos = diff.square().flatten(2).mean(-1);  // [B,T]
  return per_pos.sum(1).mean();
}

}  // namespace xd::train
