// Internal: the row kernels around the projections (kernels/decode_norm_mlp.cu) from
// the torch side: RMSNorm with the residual add, SiLU * up, RoPE. Used by inference
// forwards (models::use_row_kernels) and the decode step. In builds without CUDA
// nothing is supported and the launchers are never reached.
#pragma once
#include <ATen/core/Tensor.h>

#include <utility>

namespace xd::ops {

// RMSNorm kernels on rows of `hidden`: whether they cover `like` (CUDA, dtype, size,
// weight in the same dtype); out = norm(x) or, with y, (sum = x + y, norm(sum)).
bool fused_norm_supported(const at::Tensor& like, const at::Tensor& weight);
at::Tensor fused_rmsnorm(const at::Tensor& x, const at::Tensor& weight, double eps, bool weight_in_fp32);
std::pair<at::Tensor, at::Tensor> fused_add_rmsnorm(const at::Tensor& x, const at::Tensor& y, const at::Tensor& weight,
                                                    double eps, bool weight_in_fp32);
// RMSNorm with autograd on CUDA (training): the forward above, the backward of
// kernels/rmsnorm_backward.cu (dx and dweight in one pass over x and grad).
// On by default; XD_TRAINING_ROW_KERNELS=off keeps ATen's ops.
bool fused_norm_grad_supported(const at::Tensor& x, const at::Tensor& weight);
at::Tensor rmsnorm_with_grad(const at::Tensor& x, const at::Tensor& weight, double eps, bool weight_in_fp32);
// silu(gate) * up, both [.., I] of one shape and dtype, rounded as ATen's two ops.
bool fused_silu_mul_supported(const at::Tensor& gate, const at::Tensor& up);
at::Tensor fused_silu_mul(const at::Tensor& gate, const at::Tensor& up);
// silu(gate) * up with autograd on CUDA (training): the forward above, the backward of
// kernels/silu_mul_backward.cu. Switched as above (XD_TRAINING_ROW_KERNELS=off).
bool fused_silu_mul_grad_supported(const at::Tensor& gate, const at::Tensor& up);
at::Tensor silu_mul_with_grad(const at::Tensor& gate, const at::Tensor& up);
// RoPE of x [B,H,T,D] (any strides, unit last) with cos, sin [T,D] float32, rounded as
// models::apply_rotary; the result has x's memory layout.
bool fused_rope_supported(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
at::Tensor fused_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool in_fp32);

}  // namespace xd::ops
