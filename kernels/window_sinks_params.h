// The sink keys of sliding-window attention, merged into flash attention's
// windowed result (no torch headers). Tail rows are positions t >= window; row t
// sees sink key j iff j < sinks and t - j >= window (the window covers the rest).
// Grouped-query attention: query head h reads key/value head h / (H / Hk).
// Every [B,S,heads,D] tensor is addressed by strides (element (b,t,h,d) at
// b*sb + t*st + h*sh + d, unit last stride); the launchers need 16-byte aligned rows
// (strides multiples of 8 elements, 16-byte aligned base pointers). lse: [B,H,S] float32.
#pragma once
#include <cuda_runtime.h>

namespace xd::kernels {

constexpr int kMaxSinks = 8;
constexpr int kMaxSinkHeadDim = 128;

struct StridedRows {
  void* ptr;
  long long sb, st, sh;  // strides of batch, position, head (elements)
};

struct WindowSinksParams {
  StridedRows q, k, v;  // q [B,S,H,D]; k, v [B,S,Hk,D]
  StridedRows out;      // forward: merged in place; backward: read (the merged output)
  StridedRows dout;     // backward only
  StridedRows dq;       // backward: the sinks' share added in place
  StridedRows dk, dv;   // backward: the sinks' share added in place to rows 0..sinks-1 ([B,S,Hk,D])
  float* lse;           // forward: merged in place; backward: read
  float* dk_part;       // backward scratch: [window_sinks_chunks(...)][B*H][sinks][D] float32
  float* dv_part;       // backward scratch: the same for dv
  // Forward only: a prompt chunk that continues a cached row. Row i of q/out/lse is
  // position position0 + i; the sink keys/values are sink_k/sink_v rows 0..sinks-1
  // ([B,sinks,Hk,D] by strides) when their pointers are set, else rows 0.. of k/v.
  int position0;
  StridedRows sink_k, sink_v;
  bool half;            // float16 (else bfloat16)
  float scale;
  int B, H, Hk, S, D, window, sinks;
};

// Row chunks per query head: the grid's x extent and the backward's number of
// dk/dv partial slices (the scratch buffers hold chunks * B * H * sinks * D floats).
int window_sinks_chunks(int B, int H, int S, int window);
void window_sinks_forward(const WindowSinksParams& p, cudaStream_t stream);
// The row kernel (dq in place, dk/dv partials per block), then a reduction that sums
// the partials over chunks and over the query heads of each group into dk, dv.
void window_sinks_backward(const WindowSinksParams& p, cudaStream_t stream);

}  // namespace xd::kernels
