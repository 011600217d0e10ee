// Causal sliding-window attention with attention sinks, as one autograd operator
// (CPU reference or CUDA). Query position t sees key j iff j <= t and
// (t - j < window or j < sinks); positions are row positions (0-based).
#pragma once
#include <ATen/core/Tensor.h>

namespace xd::ops {

// q: [B,H,S,D]; k, v: [B,Hk,S,D] with Hk dividing H (grouped-query attention: query
// head h reads key/value head h / (H/Hk), as Hugging Face's repeat_kv; Hk = H is plain
// multi-head). Any strides: [B,H,S,D] views of [B,S,H,D] projections (transpose(1,2))
// go to the CUDA kernels without a copy. scale 1/sqrt(D). Returns [B,H,S,D] in q's
// dtype (on CUDA a view of a [B,S,H,D] tensor). Differentiable; k and v get their
// gradients per key/value head (summed over the H/Hk query heads of a group).
at::Tensor window_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window = 512,
                            int64_t sinks = 4);

// On CUDA a training step's window (q, k or v needing a gradient) runs on cuDNN's fused
// attention, a forward without gradients on flash attention. Within this scope (on this
// thread) forwards without gradients take the training path too: activation
// checkpointing's first forward of a block uses it, so that the forward and its
// recompute in the backward run the same kernels and give the same bits.
class TrainingForwardScope {
 public:
  TrainingForwardScope();
  ~TrainingForwardScope();
  TrainingForwardScope(const TrainingForwardScope&) = delete;
  TrainingForwardScope& operator=(const TrainingForwardScope&) = delete;
  static bool active();

 private:
  bool previous_;
};

// Generation cache: the first `sinks` keys/values and a ring buffer of the last
// `window` ones. Memory is constant in the sequence length.
// `heads` is the number of key/value heads (Hk).
struct WindowCache {
  WindowCache(int64_t batch, int64_t heads, int64_t head_dim, int64_t window, int64_t sinks,
              const at::TensorOptions& options);
  // Appends the keys/values of a prompt, k,v [B,H,T,D] (T >= 0), after what the cache holds.
  void append(const at::Tensor& k, const at::Tensor& v);

  int64_t window, sinks;
  int64_t length = 0;        // tokens seen so far (the next token's position)
  at::Tensor sink_k, sink_v;  // [B,H,sinks,D]
  at::Tensor ring_k, ring_v;  // [B,H,window,D]; position p lives in slot p % window
};

// One step: q [B,H,1,D], k,v [B,Hk,1,D] (Hk the cache's heads, dividing H) of the token
// at position cache.length; appends k,v to the cache and returns the attention output
// [B,H,1,D]. Not differentiable.
at::Tensor window_attention_step(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, WindowCache& cache);

namespace reference {
// Both take k, v with Hk heads (repeated to H inside, so autograd sums their gradients).
// Dense S x S masked softmax (the simplest oracle; memory B*H*S*S).
at::Tensor window_attention_dense(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                                  int64_t sinks);
// Blocked over queries (memory B*H*S*(window+block)); the CPU implementation.
at::Tensor window_attention_blocked(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                                    int64_t sinks);
}  // namespace reference

}  // namespace xd::ops
