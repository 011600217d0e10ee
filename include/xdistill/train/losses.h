// The training losses of method.md §3.
//   Stage I:  alignment_loss  = Σ_layers Σ_positions mean_features (h_teacher − h_student)²  (per row, averaged over rows)
//   Stage II: distill_loss    = γ·CE(next token) + β·KL(p_T^(k) ‖ p_S^(k)) over the teacher's top-k ids,
//             both distributions renormalised over those k ids, at a temperature τ.
//   pretrain: distill_loss with γ = 1, β = 0 (plain CE).
#pragma once
#include <ATen/core/Tensor.h>

#include <utility>

namespace xd::train {

struct DistillLossParts {
  at::Tensor total;  // scalar, differentiable: γ·ce + β·kl
  at::Tensor ce;     // scalar, mean over the masked positions
  at::Tensor kl;     // scalar, mean over the masked positions (0 when there is no teacher)
  int64_t positions = 0;  // masked positions counted
};

struct DistillWeights {
  double ce = 0.9, kl = 0.1, temperature = 1.0;
};

// logits [B,T,V] (any float dtype; computed in float32); targets [B,T] int64;
// mask [B,T] (bool or 0/1); teacher_ids [B,T,k] int64 and teacher_logprobs [B,T,k]
// (log-probabilities over the full vocabulary; only their differences matter) may be
// undefined when weights.kl == 0.
DistillLossParts distill_loss(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& mask,
                              const at::Tensor& teacher_ids, const at::Tensor& teacher_logprobs,
                              const DistillWeights& weights);

// The teacher's top-k of its next-token distribution: ids [B,T,k] int64 and
// log_softmax(logits) at those ids [B,T,k] float32, sorted by descending probability.
std::pair<at::Tensor, at::Tensor> teacher_top_k(const at::Tensor& teacher_logits, int64_t k);

// One layer's Stage-I term: squared error averaged over the feature dimension,
// summed over positions, averaged over rows. h: [B,T,D] (or [B,T,H,Dh]).
at::Tensor alignment_loss(const at::Tensor& student_h, const at::Tensor& teacher_h);

}  // namespace xd::train
