// The torch side of the row kernels (kernels/decode_norm_mlp.cu): what they cover,
// and their launches on the current stream. CPU builds keep the ATen path.
#include "ops/row_kernels.h"

#include <ATen/ATen.h>

#include "xdistill/util/error.h"

#ifdef XDISTILL_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "decode_norm_mlp_params.h"
#include "ops/kernel_args.h"
#endif

namespace xd::ops {

#ifdef XDISTILL_WITH_CUDA
using namespace kernel_args;

bool fused_norm_supported(const at::Tensor& like, const at::Tensor& weight) {
  xk::DecodeDtype dtype{};
  return like.is_cuda() && dtype_of(like.scalar_type(), dtype) && weight.defined() &&
         weight.scalar_type() == like.scalar_type() && weight.dim() == 1 && weight.is_contiguous() && aligned16(weight) &&
         xk::decode_rmsnorm_supports(dtype, static_cast<int>(weight.size(0)));
}

namespace {

at::Tensor launch_norm(const at::Tensor& x, const at::Tensor* y, at::Tensor* sum, const at::Tensor& weight, double eps,
                       bool weight_in_fp32) {
  XD_CHECK(x.is_contiguous() && x.size(-1) == weight.size(0) && aligned16(x),
           "decode step: RMSNorm input must be contiguous rows of ", weight.size(0));
  // The launch goes to the stream of x's device, whichever device is current.
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty_like(x);
  xk::DecodeRmsNormParams p{};
  p.x = x.data_ptr();
  if (y) {
    XD_CHECK(y->is_contiguous() && y->sizes() == x.sizes() && y->scalar_type() == x.scalar_type() &&
                 y->device() == x.device() && aligned16(*y),
             "decode step: residual ", y->sizes(), " ", y->scalar_type(), " does not match the input ", x.sizes(), " ",
             x.scalar_type());
    *sum = at::empty_like(x);
    p.y = y->data_ptr();
    p.sum = sum->data_ptr();
  }
  p.out = out.data_ptr();
  p.weight = weight.data_ptr();
  p.dtype = dtype_or_throw(x);
  p.rows = static_cast<int>(x.numel() / x.size(-1));
  p.cols = static_cast<int>(x.size(-1));
  p.eps = static_cast<float>(eps);
  p.weight_in_fp32 = weight_in_fp32;
  xk::decode_rmsnorm(p, at::cuda::getCurrentCUDAStream());
  check_launch("decode_rmsnorm");
  return out;
}

}  // namespace

at::Tensor fused_rmsnorm(const at::Tensor& x, const at::Tensor& weight, double eps, bool weight_in_fp32) {
  return launch_norm(x.contiguous(), nullptr, nullptr, weight, eps, weight_in_fp32);
}

std::pair<at::Tensor, at::Tensor> fused_add_rmsnorm(const at::Tensor& x, const at::Tensor& y, const at::Tensor& weight,
                                                    double eps, bool weight_in_fp32) {
  at::Tensor sum;
  const at::Tensor yc = y.contiguous();
  at::Tensor out = launch_norm(x.contiguous(), &yc, &sum, weight, eps, weight_in_fp32);
  return {sum, out};
}

bool fused_silu_mul_supported(const at::Tensor& gate, const at::Tensor& up) {
  xk::DecodeDtype dtype{};
  return gate.is_cuda() && dtype_of(gate.scalar_type(), dtype) && gate.sizes() == up.sizes() &&
         gate.scalar_type() == up.scalar_type() && gate.device() == up.device() && gate.dim() >= 1 &&
         gate.size(-1) > 0 && gate.numel() > 0;
}

at::Tensor fused_silu_mul(const at::Tensor& gate_in, const at::Tensor& up_in) {
  XD_CHECK(fused_silu_mul_supported(gate_in, up_in), "decode step: SiLU * up of gate ", gate_in.sizes(), " ",
           gate_in.scalar_type(), " and up ", up_in.sizes(), " ", up_in.scalar_type(), " is not covered");
  const c10::cuda::CUDAGuard guard(gate_in.device());
  const at::Tensor gate = gate_in.contiguous(), up = up_in.contiguous();
  at::Tensor out = at::empty_like(gate);
  xk::DecodeSiluMulParams p{};
  p.gate = gate.data_ptr();
  p.up = up.data_ptr();
  p.out = out.data_ptr();
  p.dtype = dtype_or_throw(gate);
  p.cols = static_cast<int>(gate.size(-1));
  p.rows = static_cast<int>(gate.numel() / p.cols);
  xk::decode_silu_mul(p, at::cuda::getCurrentCUDAStream());
  check_launch("decode_silu_mul");
  return out;
}

bool fused_rope_supported(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  xk::DecodeDtype dtype{};
  auto table_ok = [&](const at::Tensor& t) {
    return t.dim() == 2 && t.scalar_type() == at::kFloat && t.is_contiguous() && t.size(0) == x.size(2) &&
           t.size(1) == x.size(3) && t.device() == x.device();
  };
  return x.is_cuda() && x.dim() == 4 && dtype_of(x.scalar_type(), dtype) && x.stride(3) == 1 && x.size(3) % 2 == 0 &&
         table_ok(cos) && table_ok(sin);
}

at::Tensor fused_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool in_fp32) {
  XD_CHECK(fused_rope_supported(x, cos, sin), "RoPE kernel: x ", x.sizes(), " with cos ", cos.sizes(), " and sin ",
           sin.sizes(), " is not covered");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty_like(x);  // x's strides when x is dense (a head view of a projection)
  if (x.numel() == 0) return out;
  xk::RopeRowsParams p{};
  p.x = x.data_ptr();
  p.out = out.data_ptr();
  p.x_sb = x.stride(0);
  p.x_sh = x.stride(1);
  p.x_st = x.stride(2);
  p.out_sb = out.stride(0);
  p.out_sh = out.stride(1);
  p.out_st = out.stride(2);
  p.cos = cos.data_ptr<float>();
  p.sin = sin.data_ptr<float>();
  p.dtype = dtype_or_throw(x);
  p.B = static_cast<int>(x.size(0));
  p.H = static_cast<int>(x.size(1));
  p.T = static_cast<int>(x.size(2));
  p.D = static_cast<int>(x.size(3));
  p.in_fp32 = in_fp32;
  xk::rope_rows(p, at::cuda::getCurrentCUDAStream());
  check_launch("rope_rows");
  return out;
}


#else  // no CUDA kernels in this build

bool fused_norm_supported(const at::Tensor&, const at::Tensor&) { return false; }
at::Tensor fused_rmsnorm(const at::Tensor&, const at::Tensor&, double, bool) {
  throw Error("decode step: the fused RMSNorm needs a CUDA build");
}
std::pair<at::Tensor, at::Tensor> fused_add_rmsnorm(const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                                                    bool) {
  throw Error("decode step: the fused RMSNorm needs a CUDA build");
}
bool fused_silu_mul_supported(const at::Tensor&, const at::Tensor&) { return false; }
at::Tensor fused_silu_mul(const at::Tensor&, const at::Tensor&) {
  throw Error("decode step: the fused SiLU * mul needs a CUDA build");
}
bool fused_rope_supported(const at::Tensor&, const at::Tensor&, const at::Tensor&) { return false; }
at::Tensor fused_rope(const at::Tensor&, const at::Tensor&, const at::Tensor&, bool) {
  throw Error("RoPE kernel: needs a CUDA build");
}


#endif

}  // namespace xd::ops
