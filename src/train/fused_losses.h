// Internal: the CUDA forms of the losses in losses.cpp (kernels/loss_rows.cu), as
// autograd functions whose backward writes the input's gradient once, in its dtype.
// losses.cpp dispatches: these where *_supported() says so, its ATen form otherwise
// (CPU, other layouts, XD_FUSED_LOSSES=off). The math is the same; the fused forms
// only never materialise float32 copies of the logits or of the mixer outputs.
#pragma once
#include <ATen/core/Tensor.h>

#include <utility>

namespace xd::train::fused {

// logits [B,T,V] on CUDA in float32/bfloat16/float16 with a unit last stride.
bool distill_supported(const at::Tensor& logits);
// ce and kl of distill_loss (kl undefined without with_kl). weight [B,T] float32,
// count a float32 scalar (the weights' sum, at least 1); inv_temperature = 1/τ.
std::pair<at::Tensor, at::Tensor> distill_ce_kl(const at::Tensor& logits, const at::Tensor& targets,
                                                const at::Tensor& weight, const at::Tensor& count,
                                                const at::Tensor& teacher_ids, const at::Tensor& teacher_logprobs,
                                                double inv_temperature, bool with_kl);
// log Σ_j exp(x[.., j]) in float32, no autograd (the teacher's log-partition).
at::Tensor row_logsumexp(const at::Tensor& x);

// student_h and teacher_h of one shape and dtype on CUDA, student_h the one with a gradient.
bool alignment_supported(const at::Tensor& student_h, const at::Tensor& teacher_h);
at::Tensor alignment_loss(const at::Tensor& student_h, const at::Tensor& teacher_h);

}  // namespace xd::train::fused
