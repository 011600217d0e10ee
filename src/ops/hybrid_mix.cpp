// The torch side of kernels/hybrid_mix.cu: what it covers, and its launches on the
// current stream. CPU builds report it unsupported.
#include "ops/hybrid_mix.h"

#include <ATen/ATen.h>

#include "xdistill/util/error.h"

#ifdef XDISTILL_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "hybrid_mix_params.h"
#include "ops/kernel_args.h"
#endif

namespace xd::ops {

#ifdef XDISTILL_WITH_CUDA
using namespace kernel_args;

bool fused_mix_supported(const at::Tensor& global, const at::Tensor& local, const at::Tensor& gate) {
  static const bool off = env_is("XD_FUSED_MIX", "off");
  return !off && global.is_cuda() && supported_dtype(global) && global.dim() == 4 &&
         local.sizes() == global.sizes() && local.scalar_type() == global.scalar_type() &&
         local.device() == global.device() && global.stride(3) == 1 && local.stride(3) == 1 &&
         gate.scalar_type() == at::kFloat && gate.is_contiguous() && gate.device() == global.device() &&
         gate.dim() == 3 && gate.size(0) == global.size(0) && gate.size(1) == global.size(2) &&
         gate.size(2) == global.size(1);
}

namespace {

xk::HybridMixParams params_of(const at::Tensor& global, const at::Tensor& local, const at::Tensor& gate) {
  xk::HybridMixParams p{};
  p.global = global.data_ptr();
  p.g_sb = global.stride(0), p.g_sh = global.stride(1), p.g_ss = global.stride(2);
  p.local = local.data_ptr();
  p.l_sb = local.stride(0), p.l_sh = local.stride(1), p.l_ss = local.stride(2);
  p.gate = gate.data_ptr<float>();
  p.dtype = dtype_or_throw(global);
  p.B = static_cast<int>(global.size(0));
  p.H = static_cast<int>(global.size(1));
  p.S = static_cast<int>(global.size(2));
  p.D = static_cast<int>(global.size(3));
  return p;
}

}  // namespace

at::Tensor fused_mix_forward(const at::Tensor& global, const at::Tensor& local, const at::Tensor& gate) {
  XD_CHECK(fused_mix_supported(global, local, gate), "hybrid mix: the CUDA kernel does not cover global ",
           global.sizes(), " ", global.scalar_type(), ", local ", local.sizes(), ", gate ", gate.sizes());
  const c10::cuda::CUDAGuard guard(global.device());
  at::Tensor out = at::empty({global.size(0), global.size(2), global.size(1), global.size(3)}, global.options());
  xk::HybridMixParams p = params_of(global, local, gate);
  p.out = out.data_ptr();
  xk::hybrid_mix_forward(p, at::cuda::getCurrentCUDAStream());
  check_launch("hybrid_mix_forward");
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_mix_backward(const at::Tensor& grad, const at::Tensor& global,
                                                                  const at::Tensor& local, const at::Tensor& gate,
                                                                  bool want_global, bool want_local, bool want_gate) {
  XD_CHECK(fused_mix_supported(global, local, gate), "hybrid mix backward: the CUDA kernel does not cover global ",
           global.sizes(), " ", global.scalar_type());
  const c10::cuda::CUDAGuard guard(global.device());
  const at::Tensor g = grad.scalar_type() == global.scalar_type() ? grad.contiguous()
                                                                  : grad.to(global.scalar_type()).contiguous();
  XD_CHECK(g.dim() == 4 && g.size(0) == global.size(0) && g.size(1) == global.size(2) && g.size(2) == global.size(1) &&
               g.size(3) == global.size(3),
           "hybrid mix backward: gradient ", grad.sizes(), " is not [B,S,H,Dh] of global ", global.sizes());
  xk::HybridMixParams p = params_of(global, local, gate);
  p.grad = g.data_ptr();
  at::Tensor d_global, d_local, d_gate;
  if (want_global) {
    d_global = at::empty(global.sizes(), global.options());  // contiguous [B,H,S,Dh]
    p.grad_global = d_global.data_ptr();
  }
  if (want_local) {
    d_local = at::empty(g.sizes(), global.options());  // contiguous [B,S,H,Dh]
    p.grad_local = d_local.data_ptr();
  }
  if (want_gate) {
    d_gate = at::empty(gate.sizes(), gate.options());
    p.grad_gate = d_gate.data_ptr<float>();
  }
  if (want_global || want_local || want_gate) {
    xk::hybrid_mix_backward(p, at::cuda::getCurrentCUDAStream());
    check_launch("hybrid_mix_backward");
  }
  return {d_global, d_local.defined() ? d_local.transpose(1, 2) : d_local, d_gate};
}

#else

bool fused_mix_supported(const at::Tensor&, const at::Tensor&, const at::Tensor&) { return false; }
at::Tensor fused_mix_forward(const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  throw Error("hybrid mix: this build has no CUDA kernels");
}
std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_mix_backward(const at::Tensor&, const at::Tensor&,
                                                                  const at::Tensor&, const at::Tensor&, bool, bool,
                                                                  bool) {
  throw Error("hybrid mix backward: this build has no CUDA kernels");
}

#endif

}  // namespace xd::ops
