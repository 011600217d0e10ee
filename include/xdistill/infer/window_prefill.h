// Prefill that continues from a cache: the attention of a prompt chunk over what
// earlier chunks left in the cache (the teacher's KV cache, the student's window +
// sink cache) plus the chunk itself, exactly as the full forward would compute it.
#pragma once
#include <ATen/core/Tensor.h>

#include "xdistill/ops/window_attention.h"

namespace xd::infer {

// Sliding window + sinks for a chunk q [B,H,T,D], k, v [B,Hk,T,D] (the cache's Hk
// key/value heads, Hk dividing H, grouped as HF's repeat_kv) at positions cache.length ..
// cache.length+T-1, over the cached sink and ring keys and the chunk's own keys;
// then appends the chunk's keys/values to the cache. Equals the rows L0.. of
// ops::window_attention over the whole sequence (rounding aside). CUDA bf16/fp16:
// flash attention (bottom-right causal, left window) merged with the sink keys
// through the log-sum-exp; elsewhere a masked softmax in float32.
at::Tensor window_attention_continue(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     ops::WindowCache& cache);

// Causal attention of queries q [B,H,T,D] at the LAST T positions of keys k, v
// [B,Hk,L,D] (L >= T; Hk divides H, grouped as HF's repeat_kv), optionally limited
// to a left window (query p sees key j iff j <= p and (window == 0 or p - j < window)).
// Flash attention on CUDA in bf16/fp16 (no copy of grouped K/V); false otherwise.
bool flash_attention_supported(const at::Tensor& q);
at::Tensor flash_attention_suffix(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                                  at::Tensor* lse = nullptr);

}  // namespace xd::infer
