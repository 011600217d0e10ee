// The sink keys of sliding-window attention, merged into flash attention's
// windowed result (no torch headers). Tail rows are positions t >= window; row t
// sees sink key j iff j < sinks and t - j >= window (the window covers the rest).
// q, k, v, dout: [BH,S,D] contiguous; out and dq: flash attention's tensors,
// addressed by strides (element (b,t,h,d) at b*sb + t*st + h*sh + d); lse [BH,S] float32.
#pragma once
#include <cuda_runtime.h>

namespace xd::kernels {

constexpr int kMaxSinks = 8;
constexpr int kMaxSinkHeadDim = 128;

struct WindowSinksParams {
  const void* q;
  const void* k;
  const void* v;
  const void* dout;    // backward only
  void* out;           // forward: merged in place; backward: read (the merged output)
  float* lse;          // forward: merged in place; backward: read
  void* dq;            // backward: the sinks' share added in place
  float* dk_sinks;     // backward: [window_sinks_blocks(S, window)][BH][sinks][D] float32 partials (sum over dim 0)
  float* dv_sinks;     // backward: the same for dv
  bool half;           // float16 (else bfloat16)
  float scale;
  int B, H, S, D, window, sinks;
  long long out_sb, out_st, out_sh;  // strides of out (elements)
  long long dq_sb, dq_st, dq_sh;     // strides of dq
};

// Blocks per head along the rows (the backward's number of partials).
int window_sinks_blocks(int S, int window);
void window_sinks_forward(const WindowSinksParams& p, cudaStream_t stream);
void window_sinks_backward(const WindowSinksParams& p, cudaStream_t stream);

}  // namespace xd::kernels
