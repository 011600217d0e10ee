// AdamW (Loshchilov & Hutter) with fp32 master weights and fp32 gradient
// accumulation, for parameters that compute in bf16 (method.md §3: "bf16 compute
// with fp32 master weights and fp32 gradient reduction").
//
// Per optimizer step the trainer calls, in order:
//   accumulate_gradients()  after each micro-batch's backward (moves .grad into fp32 buffers)
//   gradients()             the one place where data parallelism all-reduces (see grad_reducer.h)
//   clip_grad_norm()        global L2 norm over every trained tensor
//   step(lr)                updates the masters, then copies them into the model's tensors
//                           (skipped when the gradient norm is inf or NaN)
//
// On CUDA the update is one kernel pass per tensor (kernels/adamw_step.cu; XD_FUSED_ADAMW=off
// takes ATen's fused AdamW and a copy instead). Without fp32 gradient buffers (one
// micro-batch per step on one rank) it reads the model's own .grad, in its dtype: 4 bytes
// less memory per parameter (13 GB at 3B), and 28 bytes of traffic per bf16 parameter
// against about 46 for the ATen chain (accumulate, norm, clip, fused AdamW, copy, zero).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace xd::train {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
  // Decay 1-D tensors (norm weights, biases, gate biases) too; the usual choice, and
  // ours, is not to.
  bool decay_vectors = false;
  // fp32 buffers that accumulate micro-batches and that data parallelism reduces.
  // Off: one micro-batch per step (accumulate_gradients() once), no gradients(); CUDA
  // only (elsewhere the buffers are kept whatever this says).
  bool fp32_gradient_buffers = true;
};

class AdamW {
 public:
  // `params` are the model's trained tensors (leaves with requires_grad), by name.
  // A master copy is kept for every tensor whose dtype is not float32.
  AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWOptions options);

  void accumulate_gradients();
  std::vector<at::Tensor>& gradients();  // fp32, one per parameter (needs fp32_gradient_buffers)
  // Returns the norm before clipping; max_norm <= 0 only measures it.
  double clip_grad_norm(double max_norm);
  // Returns false, zeroing the gradients and changing nothing else, when the
  // gradient norm is not finite (measured here if clip_grad_norm was not called).
  bool step(double lr);
  void zero_grad();

  int64_t steps_taken() const { return step_; }
  bool uses_kernel() const { return use_kernel_; }
  bool has_gradient_buffers() const { return buffers_; }
  int64_t num_parameters() const;  // elements trained

  // Everything needed to continue exactly: masters, moments (by parameter name) and the step.
  std::vector<std::pair<std::string, at::Tensor>> state_tensors() const;
  void load_state(const std::map<std::string, at::Tensor>& tensors, int64_t step);

 private:
  std::vector<std::string> names_;
  std::vector<at::Tensor> params_, masters_, grads_, exp_avg_, exp_avg_sq_;
  std::vector<at::Tensor> steps_;  // per tensor, on its device: what the fused kernel reads
  std::vector<bool> decayed_;
  AdamWOptions opt_;
  int64_t step_ = 0;
  double last_norm_ = 0.0;
  double clip_coef_ = 1.0;  // applied by the CUDA kernel at the update (the ATen path scales the buffers)
  bool norm_measured_ = false;
  bool use_kernel_ = false, buffers_ = true;
  int micro_batches_ = 0;  // since the last step, without buffers

  std::vector<at::Tensor> current_gradients() const;  // the buffers, or the .grad that exist
  void release_gradients();
  void kernel_update(double lr);
};

}  // namespace xd::train
