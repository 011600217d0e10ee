// Sink keys of sliding-window attention (contract in window_sinks_params.h).
// Forward: the sinks' softmax share (log-sum-exp lse_s, output o_s) merged exactly
// into flash attention's windowed output and lse:
//   lse = logaddexp(lse_w, lse_s),  out = out_w e^{lse_w - lse} + o_s e^{lse_s - lse}.
// Backward, with the merged out and lse: p_tj = exp(scale q_t.k_j - lse_t),
// ds_tj = scale p_tj (dout_t.v_j - dout_t.out_t); dq_t += sum_j ds_tj k_j in place,
// and the sums over rows dk_j = sum_t ds_tj q_t, dv_j = sum_t p_tj dout_t.
//
// Layout of the work: a block owns one query head and a contiguous range of tail
// rows; 16 threads share a row, each holding 8 columns from one 16-byte load, so a
// block of 256 threads has 16 rows in flight and row dot products take 4 shuffles.
// The block's sink keys/values (its key/value head) sit in shared memory as float32.
// dk/dv accumulate in registers over the block's rows and leave as one float32
// partial per block; a second kernel sums the partials over the blocks and over the
// query heads of each group into dk, dv (fixed order: deterministic, no atomics).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

#include "window_sinks_params.h"

namespace xd::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kRowThreads = 16;                 // threads sharing a row
constexpr int kElems = 8;                       // columns per thread: one 16-byte load
constexpr int kSlots = kThreads / kRowThreads;  // rows in flight per block
constexpr int kWarps = kThreads / 32;
static_assert(kRowThreads * kElems == kMaxSinkHeadDim, "one 16-byte load per thread covers the widest row");

template <typename T> struct Conv;
template <> struct Conv<__nv_bfloat16> {
  using pair = __nv_bfloat162;
  static __device__ float2 to_float2(pair x) { return __bfloat1622float2(x); }
  static __device__ pair from_float2(float a, float b) { return __floats2bfloat162_rn(a, b); }
  static __device__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
};
template <> struct Conv<__half> {
  using pair = __half2;
  static __device__ float2 to_float2(pair x) { return __half22float2(x); }
  static __device__ pair from_float2(float a, float b) { return __floats2half2_rn(a, b); }
  static __device__ float to_float(__half x) { return __half2float(x); }
  static __device__ __half from_float(float x) { return __float2half_rn(x); }
};

template <typename T>
__device__ __forceinline__ T* row_ptr(const StridedRows& r, int b, int t, int h) {
  return static_cast<T*>(r.ptr) + b * r.sb + t * r.st + h * r.sh;
}

template <typename T>
__device__ __forceinline__ void load8(float (&x)[kElems], const T* p, bool ok) {
  uint4 u = make_uint4(0u, 0u, 0u, 0u);
  if (ok) u = *reinterpret_cast<const uint4*>(p);
  const auto* h = reinterpret_cast<const typename Conv<T>::pair*>(&u);
#pragma unroll
  for (int i = 0; i < kElems / 2; ++i) {
    const float2 f = Conv<T>::to_float2(h[i]);
    x[2 * i] = f.x;
    x[2 * i + 1] = f.y;
  }
}

template <typename T>
__device__ __forceinline__ void store8(T* p, const float (&x)[kElems]) {
  uint4 u;
  auto* h = reinterpret_cast<typename Conv<T>::pair*>(&u);
#pragma unroll
  for (int i = 0; i < kElems / 2; ++i) h[i] = Conv<T>::from_float2(x[2 * i], x[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}

// This thread's 8 columns of a shared-memory row.
__device__ __forceinline__ void smem8(float (&x)[kElems], const float* row) {
  const float4 a = *reinterpret_cast<const float4*>(row), b = *reinterpret_cast<const float4*>(row + 4);
  x[0] = a.x; x[1] = a.y; x[2] = a.z; x[3] = a.w;
  x[4] = b.x; x[5] = b.y; x[6] = b.z; x[7] = b.w;
}

__device__ __forceinline__ float dot8(const float (&a)[kElems], const float (&b)[kElems]) {
  float s = 0.f;
#pragma unroll
  for (int e = 0; e < kElems; ++e) s = fmaf(a[e], b[e], s);
  return s;
}

// Sum over the 16 threads of a row (xor offsets below 16 stay inside the half-warp).
__device__ __forceinline__ float row_sum(float x) {
#pragma unroll
  for (int off = kRowThreads / 2; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// The first row whose position (position0 + row) has left the window of sink 0.
__host__ __device__ __forceinline__ int first_tail_row(const WindowSinksParams& p) {
  return p.position0 >= p.window ? 0 : p.window - p.position0;
}

// The common geometry: query head, its key/value head, this thread's row slot and
// columns, and the block's tail rows [begin, end) (tail row r is position window + r).
struct Geometry {
  int b, h, hk, bh, slot, col, begin, end;
  bool active;  // this thread's columns exist (col < D)
};

__device__ __forceinline__ Geometry geometry(const WindowSinksParams& p) {
  Geometry g;
  g.bh = blockIdx.y;
  g.b = g.bh / p.H;
  g.h = g.bh % p.H;
  g.hk = g.h / (p.H / p.Hk);
  g.slot = threadIdx.x / kRowThreads;
  g.col = (threadIdx.x % kRowThreads) * kElems;
  g.active = g.col < p.D;
  const int tail = p.S - first_tail_row(p), per = (tail + gridDim.x - 1) / gridDim.x;
  g.begin = blockIdx.x * per;
  g.end = min(tail, g.begin + per);
  return g;
}

// The sink keys and values of the block's key/value head, float32, in shared memory.
template <typename T, int NS>
__device__ void load_sinks(float (&ks)[NS][kMaxSinkHeadDim], float (&vs)[NS][kMaxSinkHeadDim],
                           const WindowSinksParams& p, const Geometry& g) {
  for (int idx = threadIdx.x; idx < NS * p.D; idx += kThreads) {
    const int j = idx / p.D, d = idx % p.D;
    const StridedRows& kr = p.sink_k.ptr ? p.sink_k : p.k;
    const StridedRows& vr = p.sink_v.ptr ? p.sink_v : p.v;
    ks[j][d] = Conv<T>::to_float(row_ptr<const T>(kr, g.b, j, g.hk)[d]);
    vs[j][d] = Conv<T>::to_float(row_ptr<const T>(vr, g.b, j, g.hk)[d]);
  }
  __syncthreads();
}

template <typename T, int NS>
__global__ void __launch_bounds__(kThreads) sinks_forward_kernel(WindowSinksParams p) {
  __shared__ __align__(16) float ks[NS][kMaxSinkHeadDim];
  __shared__ __align__(16) float vs[NS][kMaxSinkHeadDim];
  const Geometry g = geometry(p);
  load_sinks<T, NS>(ks, vs, p, g);
  // Every slot runs the same number of iterations so the row shuffles see full warps.
  for (int base = g.begin; base < g.end; base += kSlots) {
    const int row0 = first_tail_row(p), r = base + g.slot, t = row0 + r;
    const bool row_ok = r < g.end, io = row_ok && g.active;
    float qv[kElems], ov[kElems];
    load8(qv, row_ptr<const T>(p.q, g.b, t, g.h) + g.col, io);
    load8(ov, row_ptr<const T>(p.out, g.b, t, g.h) + g.col, io);
    float* lse_p = p.lse + (size_t)g.bh * p.S + t;
    const float lse_w = row_ok ? *lse_p : 0.f;
    // Sink j has left the window of position position0 + t iff that minus j >= window.
    const int visible = min(NS, p.position0 + t - p.window + 1);
    float logit[NS];
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      float kj[kElems];
      smem8(kj, ks[j] + (g.active ? g.col : 0));
      logit[j] = p.scale * row_sum(g.active ? dot8(qv, kj) : 0.f);
    }
    float mx = logit[0];
#pragma unroll
    for (int j = 1; j < NS; ++j) mx = j < visible ? fmaxf(mx, logit[j]) : mx;
    float sum = 0.f, os[kElems] = {};
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      const float w = j < visible ? expf(logit[j] - mx) : 0.f;
      sum += w;
      float vj[kElems];
      smem8(vj, vs[j] + (g.active ? g.col : 0));
#pragma unroll
      for (int e = 0; e < kElems; ++e) os[e] = fmaf(w, vj[e], os[e]);
    }
    const float lse_s = mx + logf(sum);
    const float hi = fmaxf(lse_w, lse_s);
    const float lse = hi + logf(expf(lse_w - hi) + expf(lse_s - hi));
    const float a = expf(lse_w - lse), c = expf(lse_s - lse) / sum;
    if (io) {
#pragma unroll
      for (int e = 0; e < kElems; ++e) ov[e] = fmaf(a, ov[e], c * os[e]);
      store8(row_ptr<T>(p.out, g.b, t, g.h) + g.col, ov);
    }
    __syncwarp();  // every lane of the row has read lse_w before it is overwritten
    if (row_ok && g.col == 0) *lse_p = lse;
  }
}

// The block's sum of acc (every thread's [NS][8] columns) into part [NS][D]: the two
// row slots of a warp fold by one shuffle, the warps meet in shared memory.
template <int NS>
__device__ void write_partial(float (&acc)[NS][kElems], float (&red)[kWarps][NS][kMaxSinkHeadDim], float* part,
                              const Geometry& g, int D) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int j = 0; j < NS; ++j)
#pragma unroll
    for (int e = 0; e < kElems; ++e) acc[j][e] += __shfl_xor_sync(0xffffffffu, acc[j][e], 16);
  if (lane < 16 && g.active) {
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      float4* dst = reinterpret_cast<float4*>(red[warp][j] + g.col);
      dst[0] = make_float4(acc[j][0], acc[j][1], acc[j][2], acc[j][3]);
      dst[1] = make_float4(acc[j][4], acc[j][5], acc[j][6], acc[j][7]);
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < NS * D; idx += kThreads) {
    const int j = idx / D, d = idx % D;
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s += red[w][j][d];
    part[idx] = s;
  }
  __syncthreads();  // red is reused by the next call
}

template <typename T, int NS>
__global__ void __launch_bounds__(kThreads, NS <= 4 ? 2 : 1) sinks_backward_kernel(WindowSinksParams p) {
  __shared__ __align__(16) float ks[NS][kMaxSinkHeadDim];
  __shared__ __align__(16) float vs[NS][kMaxSinkHeadDim];
  __shared__ __align__(16) float red[kWarps][NS][kMaxSinkHeadDim];
  const Geometry g = geometry(p);
  load_sinks<T, NS>(ks, vs, p, g);
  float acc_k[NS][kElems] = {}, acc_v[NS][kElems] = {};
  for (int base = g.begin; base < g.end; base += kSlots) {
    const int r = base + g.slot, t = p.window + r;
    const bool row_ok = r < g.end, io = row_ok && g.active;
    float qv[kElems], gv[kElems], ov[kElems], dqv[kElems];
    T* dq_row = row_ptr<T>(p.dq, g.b, t, g.h) + g.col;
    load8(qv, row_ptr<const T>(p.q, g.b, t, g.h) + g.col, io);
    load8(gv, row_ptr<const T>(p.dout, g.b, t, g.h) + g.col, io);
    load8(ov, row_ptr<const T>(p.out, g.b, t, g.h) + g.col, io);
    load8(dqv, dq_row, io);
    const float lse = row_ok ? p.lse[(size_t)g.bh * p.S + t] : 0.f;
    const int visible = row_ok ? min(NS, r + 1) : 0;
    const float delta = row_sum(dot8(gv, ov));
#pragma unroll
    for (int j = 0; j < NS; ++j) {
      float kj[kElems], vj[kElems];
      smem8(kj, ks[j] + (g.active ? g.col : 0));
      smem8(vj, vs[j] + (g.active ? g.col : 0));
      const float s = row_sum(g.active ? dot8(qv, kj) : 0.f);
      const float dpv = row_sum(g.active ? dot8(gv, vj) : 0.f);
      const float pr = j < visible ? expf(p.scale * s - lse) : 0.f;
      const float ds = p.scale * pr * (dpv - delta);
#pragma unroll
      for (int e = 0; e < kElems; ++e) {
        dqv[e] = fmaf(ds, kj[e], dqv[e]);
        acc_k[j][e] = fmaf(ds, qv[e], acc_k[j][e]);
        acc_v[j][e] = fmaf(pr, gv[e], acc_v[j][e]);
      }
    }
    if (io) store8(dq_row, dqv);
  }
  const size_t part = ((size_t)blockIdx.x * gridDim.y + g.bh) * NS * p.D;
  write_partial<NS>(acc_k, red, p.dk_part + part, g, p.D);
  write_partial<NS>(acc_v, red, p.dv_part + part, g, p.D);
}

// dk[b, j, hk] += sum over chunks c and the group's query heads h of part[c][b, h][j];
// the same for dv. One thread per element of the sink rows.
template <typename T>
__global__ void sinks_reduce_kernel(WindowSinksParams p, int chunks) {
  const int n = p.B * p.Hk * p.sinks * p.D;
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= n) return;
  const int d = idx % p.D, j = (idx / p.D) % p.sinks, hk = (idx / (p.D * p.sinks)) % p.Hk;
  const int b = idx / (p.D * p.sinks * p.Hk), G = p.H / p.Hk;
  float sk = 0.f, sv = 0.f;
  for (int c = 0; c < chunks; ++c)
    for (int h = hk * G; h < (hk + 1) * G; ++h) {
      const size_t off = ((((size_t)c * p.B + b) * p.H + h) * p.sinks + j) * p.D + d;
      sk += p.dk_part[off];
      sv += p.dv_part[off];
    }
  T* dk = row_ptr<T>(p.dk, b, j, hk) + d;
  T* dv = row_ptr<T>(p.dv, b, j, hk) + d;
  *dk = Conv<T>::from_float(Conv<T>::to_float(*dk) + sk);
  *dv = Conv<T>::from_float(Conv<T>::to_float(*dv) + sv);
}

int multiprocessors();

// The forward's row chunks per query head. Every row is the same work, so the grid is
// many waves of resident blocks: with about one wave and a bit (what the backward's
// count gives: 1,280 blocks where 1,056 fit at B=8, H=32), the last partial wave left
// most multiprocessors idle for as long as the first.
template <typename T, int NS>
int forward_chunks(const WindowSinksParams& p) {
  static const int resident = [] {
    int n = 0;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, sinks_forward_kernel<T, NS>, kThreads, 0);
    return std::max(n, 1);
  }();
  const long long bh = static_cast<long long>(p.B) * p.H, tail = p.S - first_tail_row(p);
  const long long want = (16LL * resident * multiprocessors() + bh - 1) / bh;
  return static_cast<int>(std::max(1LL, std::min(want, (tail + kSlots - 1) / kSlots)));
}

template <typename T, int NS>
void launch_rows(const WindowSinksParams& p, bool backward, cudaStream_t stream) {
  if (backward) {
    const dim3 grid(window_sinks_chunks(p.B, p.H, p.S, p.window), p.B * p.H);
    sinks_backward_kernel<T, NS><<<grid, kThreads, 0, stream>>>(p);
  } else {
    const dim3 grid(forward_chunks<T, NS>(p), p.B * p.H);
    sinks_forward_kernel<T, NS><<<grid, kThreads, 0, stream>>>(p);
  }
}

template <typename T>
void launch(const WindowSinksParams& p, bool backward, cudaStream_t stream) {
  if (p.S <= first_tail_row(p) || p.sinks <= 0 || p.sinks > kMaxSinks) return;
  if (backward && (p.position0 != 0 || p.sink_k.ptr != nullptr)) return;  // the backward has no offset rows
  switch (p.sinks) {
    case 1: launch_rows<T, 1>(p, backward, stream); break;
    case 2: launch_rows<T, 2>(p, backward, stream); break;
    case 3: launch_rows<T, 3>(p, backward, stream); break;
    case 4: launch_rows<T, 4>(p, backward, stream); break;
    case 5: launch_rows<T, 5>(p, backward, stream); break;
    case 6: launch_rows<T, 6>(p, backward, stream); break;
    case 7: launch_rows<T, 7>(p, backward, stream); break;
    default: launch_rows<T, 8>(p, backward, stream); break;
  }
  if (backward) {
    const int n = p.B * p.Hk * p.sinks * p.D;
    sinks_reduce_kernel<T><<<(n + 255) / 256, 256, 0, stream>>>(p, window_sinks_chunks(p.B, p.H, p.S, p.window));
  }
}

int multiprocessors() {
  static const int count = [] {
    int dev = 0, n = 132;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n;
  }();
  return count;
}

}  // namespace

int window_sinks_chunks(int B, int H, int S, int window) {
  const int tail = S - window;
  if (tail <= 0) return 0;
  // About eight blocks per multiprocessor in all, each with at least a row per slot.
  const long long bh = static_cast<long long>(B) * H;
  const long long want = (8LL * multiprocessors() + bh - 1) / bh;
  const long long most = (tail + kSlots - 1) / kSlots;
  return static_cast<int>(std::max(1LL, std::min(want, most)));
}

void window_sinks_forward(const WindowSinksParams& p, cudaStream_t stream) {
  p.half ? launch<__half>(p, false, stream) : launch<__nv_bfloat16>(p, false, stream);
}

void window_sinks_backward(const WindowSinksParams& p, cudaStream_t stream) {
  p.half ? launch<__half>(p, true, stream) : launch<__nv_bfloat16>(p, true, stream);
}

}  // namespace xd::kernels
