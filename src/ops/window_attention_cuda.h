// Internal: the CUDA path of xd::ops::window_attention (window_attention_cuda.cpp).
#pragma once
#include <ATen/core/Tensor.h>

#include <string>

namespace xd::ops::detail {

bool window_attention_cuda_supports(const at::Tensor& q);
at::Tensor window_attention_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                                 int64_t sinks);
// Whether cuDNN's fused attention takes q, k, v ([B,H,S,D] views as window_attention takes
// them) where it is asked for (training steps, or XD_WINDOW_ATTENTION=cudnn); false with
// cuDNN's reason in *why.
bool window_attention_cudnn_takes(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                                  std::string* why);

// Inference, a prompt chunk continuing a cached row: merges the sink keys that have
// left each row's window into flash attention's windowed result, in place. q, out
// [B,T,H,D] (flash attention's layout) at positions position0 .. position0+T-1;
// lse [B,H,T] contiguous float32 (merged in place); sink_k, sink_v [B,Hk,sinks,D],
// every sink already cached (position0 >= sinks). False, with nothing done, where
// the kernel does not cover the inputs or XD_CACHED_SINKS=kernel is not set (the
// caller merges with ATen operations).
bool merge_cached_sinks(const at::Tensor& q, at::Tensor& out, at::Tensor& lse, const at::Tensor& sink_k,
                        const at::Tensor& sink_v, int64_t position0, int64_t window);

}  // namespace xd::ops::detail
