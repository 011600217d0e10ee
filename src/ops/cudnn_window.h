// Sliding-window causal attention through cuDNN's fused attention (the cudnn_frontend
// graph API), forward with its log-sum-exp and backward. No torch headers: this file
// and cudnn_window.cpp are the only ones that see cuDNN, so the frontend's headers (and
// the nlohmann copy they bundle) stay out of every other translation unit. The torch side
// (window_attention_cuda.cpp) allocates, merges the sinks and dispatches.
//
// Tensors are described as [batch, heads, seq, head_dim] with strides in elements, so
// the [B,S,H,D] projections go in without a copy. A key j is visible to the query at t
// when t - window < j <= t (flash attention's window_size_left = window - 1).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace xd::ops::cudnn_window {

enum class Dtype { bf16, f16 };

struct Layout {
  int64_t heads = 0;
  int64_t stride[4] = {0, 0, 0, 0};  // batch, head, position, feature
};

// One problem: its shapes and strides decide the cuDNN graph (built once, then cached).
struct Problem {
  Dtype dtype = Dtype::bf16;
  int device = 0;
  int64_t batch = 0, seq = 0, head_dim = 0;
  int64_t window = 0;
  float scale = 1.0f;
  Layout q, k, v, o;        // k and v: the key/value heads (grouped-query attention)
  Layout dout, dq, dk, dv;  // backward only
};

// Whether this build has cuDNN's graph API at all (the frontend headers were found).
bool compiled_in();

// Whether cuDNN takes this problem (built and cached on first use; false with the reason
// in *why when the graph does not validate or no engine supports it on this GPU).
bool supports_forward(const Problem& p, std::string* why);
bool supports_backward(const Problem& p, std::string* why);

// Bytes of workspace the problem's graph needs (call after supports_*).
int64_t forward_workspace(const Problem& p);
int64_t backward_workspace(const Problem& p);

// Runs on `stream` (a cudaStream_t). lse: float32 [B,H,S] contiguous, natural log of the
// softmax denominator of the scaled scores (what flash attention returns). Throws
// xd::Error with cuDNN's message on failure.
void forward(const Problem& p, const void* q, const void* k, const void* v, void* o, float* lse, void* workspace,
             void* stream);
// The gradients of the softmax whose output and log-sum-exp are `o` and `lse`: passed the
// merged output and lse of window + sinks, they are exact for the window's keys.
void backward(const Problem& p, const void* q, const void* k, const void* v, const void* o, const void* dout,
              const float* lse, void* dq, void* dk, void* dv, void* workspace, void* stream);

}  // namespace xd::ops::cudnn_window
