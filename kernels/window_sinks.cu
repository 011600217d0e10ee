// Sink keys of sliding-window attention, one warp per tail row (contract in
// window_sinks_params.h). Forward: the sinks' softmax share (log-sum-exp lse_s,
// output o_s) merged exactly into flash attention's windowed output and lse:
//   lse = logaddexp(lse_w, lse_s),  out = out_w e^{lse_w - lse} + o_s e^{lse_s - lse}.
// Backward, with the merged out and lse: p_tj = exp(scale q_t.k_j - lse_t),
// ds_tj = scale p_tj (dout_t.v_j - dout_t.out_t); dq_t += sum_j ds_tj k_j in place,
// and the sums over rows dk_j = sum_t ds_tj q_t, dv_j = sum_t p_tj dout_t are
// reduced per block in shared memory into one float32 partial per block (summed by the caller).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "window_sinks_params.h"

namespace xd::kernels {
namespace {

constexpr int kWarps = 8;
constexpr int kRowsPerWarp = 16;
constexpr int kPairs = kMaxSinkHeadDim / 64;  // bf16 pairs per lane

template <typename T> struct Pair;
template <> struct Pair<__nv_bfloat16> {
  using type = __nv_bfloat162;
  static __device__ float2 load(const type* p) { return __bfloat1622float2(*p); }
  static __device__ type make(float a, float b) { return __floats2bfloat162_rn(a, b); }
};
template <> struct Pair<__half> {
  using type = __half2;
  static __device__ float2 load(const type* p) { return __half22float2(*p); }
  static __device__ type make(float a, float b) { return __floats2half2_rn(a, b); }
};

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// Row vector (D elements) -> this lane's pairs (d = 2 lane + 64 i).
template <typename T>
__device__ __forceinline__ void load_row(float2 (&x)[kPairs], const T* row, int D, int lane) {
  using P = Pair<T>;
#pragma unroll
  for (int i = 0; i < kPairs; ++i) {
    const int d = 2 * lane + 64 * i;
    x[i] = d < D ? P::load(reinterpret_cast<const typename P::type*>(row + d)) : make_float2(0.f, 0.f);
  }
}

template <typename T>
__device__ __forceinline__ float dot_row(const float2 (&x)[kPairs], const T* row, int D, int lane) {
  float2 y[kPairs];
  load_row(y, row, D, lane);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kPairs; ++i) s = fmaf(x[i].x, y[i].x, fmaf(x[i].y, y[i].y, s));
  return warp_sum(s);
}

// Logits of row t against its visible sinks; returns how many are visible.
template <typename T>
__device__ __forceinline__ int sink_logits(float (&logit)[kMaxSinks], const float2 (&qr)[kPairs], const T* k, int t,
                                           const WindowSinksParams& p, int lane) {
  const int visible = min(p.sinks, t - p.window + 1);
#pragma unroll
  for (int j = 0; j < kMaxSinks; ++j)
    logit[j] = j < visible ? p.scale * dot_row(qr, k + (size_t)j * p.D, p.D, lane) : -INFINITY;
  return visible;
}

template <typename T>
__global__ void __launch_bounds__(32 * kWarps) sinks_forward_kernel(WindowSinksParams p) {
  using P = Pair<T>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
  const T* q = static_cast<const T*>(p.q) + (size_t)bh * p.S * p.D;
  const T* k = static_cast<const T*>(p.k) + (size_t)bh * p.S * p.D;
  const T* v = static_cast<const T*>(p.v) + (size_t)bh * p.S * p.D;
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int t = p.window + (blockIdx.x * kWarps + warp) * kRowsPerWarp + r;
    if (t >= p.S) return;
    float2 qr[kPairs];
    load_row(qr, q + (size_t)t * p.D, p.D, lane);
    float logit[kMaxSinks];
    const int visible = sink_logits(logit, qr, k, t, p, lane);
    float mx = logit[0];
#pragma unroll
    for (int j = 1; j < kMaxSinks; ++j) mx = fmaxf(mx, logit[j]);
    float sum = 0.f;
    float2 o[kPairs];
#pragma unroll
    for (int i = 0; i < kPairs; ++i) o[i] = make_float2(0.f, 0.f);
#pragma unroll
    for (int j = 0; j < kMaxSinks; ++j) {
      if (j >= visible) break;
      const float w = expf(logit[j] - mx);
      sum += w;
      float2 vr[kPairs];
      load_row(vr, v + (size_t)j * p.D, p.D, lane);
#pragma unroll
      for (int i = 0; i < kPairs; ++i) {
        o[i].x = fmaf(w, vr[i].x, o[i].x);
        o[i].y = fmaf(w, vr[i].y, o[i].y);
      }
    }
    const float lse_s = mx + logf(sum);
    float* lse_p = p.lse + (size_t)bh * p.S + t;
    const float lse_w = *lse_p;
    const float hi = fmaxf(lse_w, lse_s);
    const float lse = hi + logf(expf(lse_w - hi) + expf(lse_s - hi));
    const float a = expf(lse_w - lse), c = expf(lse_s - lse) / sum;
    T* out = static_cast<T*>(p.out) + b * p.out_sb + t * p.out_st + h * p.out_sh;
#pragma unroll
    for (int i = 0; i < kPairs; ++i) {
      const int d = 2 * lane + 64 * i;
      if (d >= p.D) break;
      auto* cell = reinterpret_cast<typename P::type*>(out + d);
      const float2 w = P::load(cell);
      *cell = P::make(fmaf(a, w.x, c * o[i].x), fmaf(a, w.y, c * o[i].y));
    }
    __syncwarp();
    if (lane == 0) *lse_p = lse;
  }
}

// Each warp accumulates its rows' dk_j, dv_j in its own shared-memory slice (lane-owned
// columns, no atomics); the block sums the slices and writes one partial per block.
template <typename T>
__global__ void __launch_bounds__(32 * kWarps, 3) sinks_backward_kernel(WindowSinksParams p) {
  using P = Pair<T>;
  extern __shared__ float acc_smem[];  // [kWarps][2][sinks][D]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int bh = blockIdx.y, b = bh / p.H, h = bh % p.H;
  const int slice = p.sinks * p.D;
  float* acc_k = acc_smem + (size_t)warp * 2 * slice;
  float* acc_v = acc_k + slice;
  const T* q = static_cast<const T*>(p.q) + (size_t)bh * p.S * p.D;
  const T* k = static_cast<const T*>(p.k) + (size_t)bh * p.S * p.D;
  const T* v = static_cast<const T*>(p.v) + (size_t)bh * p.S * p.D;
  const T* dout = static_cast<const T*>(p.dout) + (size_t)bh * p.S * p.D;
  for (int idx = lane; idx < 2 * slice; idx += 32) acc_k[idx] = 0.f;
  __syncwarp();
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int t = p.window + (blockIdx.x * kWarps + warp) * kRowsPerWarp + r;
    if (t >= p.S) break;
    float2 qr[kPairs], gr[kPairs];
    load_row(qr, q + (size_t)t * p.D, p.D, lane);
    load_row(gr, dout + (size_t)t * p.D, p.D, lane);
    const T* out_row = static_cast<const T*>(p.out) + b * p.out_sb + t * p.out_st + h * p.out_sh;
    const float delta = dot_row(gr, out_row, p.D, lane);
    float logit[kMaxSinks];
    const int visible = sink_logits(logit, qr, k, t, p, lane);
    const float lse = p.lse[(size_t)bh * p.S + t];
    float2 dq[kPairs];
#pragma unroll
    for (int i = 0; i < kPairs; ++i) dq[i] = make_float2(0.f, 0.f);
#pragma unroll
    for (int j = 0; j < kMaxSinks; ++j) {
      if (j >= visible) break;
      const float pr = expf(logit[j] - lse);
      const float ds = p.scale * pr * (dot_row(gr, v + (size_t)j * p.D, p.D, lane) - delta);
      float2 kr[kPairs];
      load_row(kr, k + (size_t)j * p.D, p.D, lane);
#pragma unroll
      for (int i = 0; i < kPairs; ++i) {
        const int d = 2 * lane + 64 * i;
        dq[i].x = fmaf(ds, kr[i].x, dq[i].x);
        dq[i].y = fmaf(ds, kr[i].y, dq[i].y);
        if (d < p.D) {
          float2* ck = reinterpret_cast<float2*>(acc_k + j * p.D + d);
          float2* cv = reinterpret_cast<float2*>(acc_v + j * p.D + d);
          const float2 a = *ck, c = *cv;
          *ck = make_float2(fmaf(ds, qr[i].x, a.x), fmaf(ds, qr[i].y, a.y));
          *cv = make_float2(fmaf(pr, gr[i].x, c.x), fmaf(pr, gr[i].y, c.y));
        }
      }
    }
    T* dq_row = static_cast<T*>(p.dq) + b * p.dq_sb + t * p.dq_st + h * p.dq_sh;
#pragma unroll
    for (int i = 0; i < kPairs; ++i) {
      const int d = 2 * lane + 64 * i;
      if (d >= p.D) break;
      auto* cell = reinterpret_cast<typename P::type*>(dq_row + d);
      const float2 w = P::load(cell);
      *cell = P::make(w.x + dq[i].x, w.y + dq[i].y);
    }
  }
  __syncthreads();
  // partial [blockIdx.x][bh][sinks][D] for dk, then for dv
  const size_t part = ((size_t)blockIdx.x * gridDim.y + bh) * slice;
  for (int idx = threadIdx.x; idx < slice; idx += 32 * kWarps) {
    float sk = 0.f, sv = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      sk += acc_smem[(size_t)w * 2 * slice + idx];
      sv += acc_smem[(size_t)w * 2 * slice + slice + idx];
    }
    p.dk_sinks[part + idx] = sk;
    p.dv_sinks[part + idx] = sv;
  }
}

template <typename T>
void launch(const WindowSinksParams& p, bool backward, cudaStream_t stream) {
  const int blocks = window_sinks_blocks(p.S, p.window);
  if (blocks == 0 || p.sinks <= 0) return;
  const dim3 grid(blocks, p.B * p.H);
  if (backward) {
    const size_t smem = sizeof(float) * kWarps * 2 * p.sinks * p.D;
    sinks_backward_kernel<T><<<grid, 32 * kWarps, smem, stream>>>(p);
  }
  else sinks_forward_kernel<T><<<grid, 32 * kWarps, 0, stream>>>(p);
}

}  // namespace

void window_sinks_forward(const WindowSinksParams& p, cudaStream_t stream) {
  p.half ? launch<__half>(p, false, stream) : launch<__nv_bfloat16>(p, false, stream);
}

int window_sinks_blocks(int S, int window) {
  const int rows_per_block = kWarps * kRowsPerWarp;
  return S > window ? (S - window + rows_per_block - 1) / rows_per_block : 0;
}

void window_sinks_backward(const WindowSinksParams& p, cudaStream_t stream) {
  p.half ? launch<__half>(p, true, stream) : launch<__nv_bfloat16>(p, true, stream);
}

}  // namespace xd::kernels
