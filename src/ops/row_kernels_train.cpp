// RMSNorm and SiLU(gate) * up as autograd functions on CUDA (row_kernels.h): the
// forward row kernels, and backward kernels (RMSNorm: dx plus per-block weight-gradient
// sums reduced here; SiLU * up: both input gradients in one pass). The ATen ops of
// models::RMSNorm and GatedMlp stay for the CPU and for what the kernels do not cover.
#include <torch/torch.h>

#include "ops/row_kernels.h"
#include "xdistill/util/error.h"

#ifdef XDISTILL_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "ops/kernel_args.h"
#include "rmsnorm_backward_params.h"
#include "silu_mul_backward_params.h"
#endif

namespace xd::ops {

#ifdef XDISTILL_WITH_CUDA
using namespace kernel_args;

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, double eps,
                            bool weight_in_fp32) {
    const at::Tensor xc = x.contiguous();
    ctx->save_for_backward({xc, weight});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["weight_in_fp32"] = weight_in_fp32;
    return fused_rmsnorm(xc, weight, eps, weight_in_fp32);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1];
    const c10::cuda::CUDAGuard guard(x.device());
    const at::Tensor grad = grads[0].to(x.scalar_type()).contiguous();
    const int rows = static_cast<int>(x.numel() / x.size(-1)), cols = static_cast<int>(x.size(-1));
    // About four blocks per SM, each walking its rows with its weight-gradient sums in registers.
    const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
    const int rows_per_block = std::max(1, (rows + 4 * sms - 1) / (4 * sms));
    const int blocks = xk::rmsnorm_backward_blocks(rows, rows_per_block);
    at::Tensor grad_x = at::empty_like(x);
    at::Tensor partial = at::empty({std::max(blocks, 1), cols}, x.options().dtype(at::kFloat));
    xk::RmsNormBackwardParams p{};
    p.x = x.data_ptr();
    p.grad = grad.data_ptr();
    p.weight = weight.data_ptr();
    p.grad_x = grad_x.data_ptr();
    p.grad_w_partial = partial.data_ptr<float>();
    p.dtype = dtype_or_throw(x);
    p.rows = rows;
    p.cols = cols;
    p.rows_per_block = rows_per_block;
    p.eps = static_cast<float>(ctx->saved_data["eps"].toDouble());
    p.weight_in_fp32 = ctx->saved_data["weight_in_fp32"].toBool();
    at::Tensor grad_w;
    if (rows > 0) {
      xk::rmsnorm_backward(p, at::cuda::getCurrentCUDAStream());
      check_launch("rmsnorm_backward");
      grad_w = partial.sum(0).to(weight.scalar_type());  // a fixed order: deterministic
    } else {
      grad_w = at::zeros_like(weight);
    }
    return {grad_x, grad_w, at::Tensor(), at::Tensor()};
  }
};

struct SiluMulFunction : public torch::autograd::Function<SiluMulFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    const at::Tensor g = gate.contiguous(), u = up.contiguous();
    ctx->save_for_backward({g, u});
    return fused_silu_mul(g, u);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &gate = saved[0], &up = saved[1];
    const c10::cuda::CUDAGuard guard(gate.device());
    const at::Tensor grad = grads[0].to(gate.scalar_type()).contiguous();
    at::Tensor d_gate = at::empty_like(gate), d_up = at::empty_like(up);
    xk::SiluMulBackwardParams p{};
    p.gate = gate.data_ptr();
    p.up = up.data_ptr();
    p.grad = grad.data_ptr();
    p.d_gate = d_gate.data_ptr();
    p.d_up = d_up.data_ptr();
    p.dtype = dtype_or_throw(gate);
    p.n = gate.numel();
    xk::silu_mul_backward(p, at::cuda::getCurrentCUDAStream());
    check_launch("silu_mul_backward");
    return {d_gate, d_up};
  }
};

// On by default since RmsNormGradGpu and SiluMulGradGpu passed on an H200 (2026-12-07);
// XD_TRAINING_ROW_KERNELS=off keeps ATen's ops. Read at each call (a getenv beside a
// kernel launch), so that tests and benchmarks can switch them.
bool training_kernels_off() { return env_is("XD_TRAINING_ROW_KERNELS", "off"); }

}  // namespace

bool fused_silu_mul_grad_supported(const at::Tensor& gate, const at::Tensor& up) {
  return !training_kernels_off() && fused_silu_mul_supported(gate, up);
}

at::Tensor silu_mul_with_grad(const at::Tensor& gate, const at::Tensor& up) {
  XD_CHECK(fused_silu_mul_grad_supported(gate, up), "SiLU * up kernels: gate ", gate.sizes(), " ",
           gate.scalar_type(), " and up ", up.sizes(), " ", up.scalar_type(), " are not covered");
  return SiluMulFunction::apply(gate, up);
}

bool fused_norm_grad_supported(const at::Tensor& x, const at::Tensor& weight) {
  xk::DecodeDtype dtype{};
  return !training_kernels_off() && fused_norm_supported(x, weight) && dtype_of(x.scalar_type(), dtype) &&
         xk::rmsnorm_backward_supports(dtype, static_cast<int>(x.size(-1))) && x.numel() > 0 &&
         x.numel() / x.size(-1) <= std::numeric_limits<int>::max();
}

at::Tensor rmsnorm_with_grad(const at::Tensor& x, const at::Tensor& weight, double eps, bool weight_in_fp32) {
  XD_CHECK(fused_norm_grad_supported(x, weight), "RMSNorm kernels: input ", x.sizes(), " ", x.scalar_type(),
           " with weight ", weight.sizes(), " ", weight.scalar_type(), " is not covered");
  return RmsNormFunction::apply(x, weight, eps, weight_in_fp32);
}

#else

bool fused_norm_grad_supported(const at::Tensor&, const at::Tensor&) { return false; }
bool fused_silu_mul_grad_supported(const at::Tensor&, const at::Tensor&) { return false; }
at::Tensor silu_mul_with_grad(const at::Tensor&, const at::Tensor&) {
  throw Error("SiLU * up kernels: this build has no CUDA kernels");
}
at::Tensor rmsnorm_with_grad(const at::Tensor&, const at::Tensor&, double, bool) {
  throw Error("RMSNorm kernels: this build has no CUDA kernels");
}

#endif

}  // namespace xd::ops
