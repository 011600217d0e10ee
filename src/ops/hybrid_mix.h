// Internal: the hybrid block's branch mix on CUDA (kernels/hybrid_mix.cu), used by
// student::HybridCore's autograd function, which keeps its ATen form for the CPU and
// for what these do not cover (XD_FUSED_MIX=off switches them off).
#pragma once
#include <ATen/core/Tensor.h>

#include <tuple>

namespace xd::ops {

// global, local [B,H,S,Dh] of one dtype (any strides, unit last), gate [B,S,H] float32 contiguous.
bool fused_mix_supported(const at::Tensor& global, const at::Tensor& local, const at::Tensor& gate);
// o * global + (1 - o) * local as [B,S,H,Dh] contiguous.
at::Tensor fused_mix_forward(const at::Tensor& global, const at::Tensor& local, const at::Tensor& gate);
// (d global [B,H,S,Dh] contiguous, d local as a [B,H,S,Dh] view of [B,S,H,Dh], d gate [B,S,H]);
// each only when asked for (undefined otherwise). grad: [B,S,H,Dh].
std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_mix_backward(const at::Tensor& grad, const at::Tensor& global,
                                                                  const at::Tensor& local, const at::Tensor& gate,
                                                                  bool want_global, bool want_local, bool want_gate);

}  // namespace xd::ops
