// The small building blocks of a decoder: linear projections, RMSNorm, the gated MLP
// and rotary position tables. Parameters are created uninitialised on the target
// device and dtype (a checkpoint fills them), so that building an 8B model costs no
// random initialisation and no host copy.
#pragma once
#include <torch/torch.h>

#include <mutex>

#include "xdistill/models/model_config.h"

namespace xd::models {

// y = x W^T (+ b). Names its tensors "weight" and "bias" like torch.nn.Linear.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, bool bias, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const { return at::linear(x, weight, bias); }
  at::Tensor weight, bias;  // bias undefined when absent
};
TORCH_MODULE(Linear);

// Whether an inference forward (no autograd) on x's device takes the fused row
// kernels of src/ops/row_kernels.h (RMSNorm with the residual add, SiLU * up, RoPE):
// CUDA tensors only; XDISTILL_FUSED_STEP=0 switches them off.
bool use_row_kernels(const at::Tensor& x);

// RMSNorm over the last dimension, computed in fp32 as in HF. `weight_in_fp32`
// picks where the weight multiplies: OLMo multiplies before casting back to the
// input dtype, Llama/Qwen after (the results differ in bf16).
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t size, double eps, bool weight_in_fp32, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight;
  double eps;
  bool weight_in_fp32;
};
TORCH_MODULE(RMSNorm);

// down(silu(gate(x)) * up(x)).
class GatedMlpImpl : public torch::nn::Module {
 public:
  GatedMlpImpl(int64_t hidden, int64_t intermediate, bool bias, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x) const;
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(GatedMlp);

// RoPE's inverse frequencies for one RopeConfig, and the cos/sin tables of a run of
// positions. Not a module: HF does not save these buffers either. Shared by every
// layer that uses the same RopeConfig; remembers its last table, because all layers
// of one forward ask for the same positions.
class Rotary {
 public:
  Rotary(const RopeConfig& rope, int64_t head_dim, const at::Device& device);
  // cos, sin: float32 [T, head_dim] for positions start .. start+T-1 (HF's
  // attention_scaling already applied).
  std::pair<at::Tensor, at::Tensor> cos_sin(int64_t start, int64_t length) const;
  const at::Tensor& inv_freq() const { return inv_freq_; }
  double attention_scaling() const { return attention_scaling_; }

 private:
  at::Tensor inv_freq_;  // float32 [head_dim / 2] on the model's device
  double attention_scaling_ = 1.0;
  mutable std::mutex mutex_;
  mutable int64_t cached_start_ = -1, cached_length_ = -1;
  mutable at::Tensor cached_cos_, cached_sin_;
};

// HF's inverse frequencies for a RopeConfig (float32, on the CPU), with its attention
// scaling (yarn's mscale; 1 otherwise).
std::pair<at::Tensor, double> rope_inverse_frequencies(const RopeConfig& rope, int64_t head_dim);

// Rotates x [B, H, T, D] by cos/sin [T, D] (float32) as HF's apply_rotary_pos_emb:
// in x's dtype (cos/sin cast down) or, with `in_fp32`, in fp32 and cast back (OLMo).
at::Tensor apply_rotary(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool in_fp32);

}  // namespace xd::models
