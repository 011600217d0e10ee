// Internal: the CUDA path of xd::ops::window_attention (window_attention_cuda.cpp).
#pragma once
#include <ATen/core/Tensor.h>

namespace xd::ops::detail {

bool window_attention_cuda_supports(const at::Tensor& q);
at::Tensor window_attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                                 int64_t sinks);

}  // namespace xd::ops::detail
