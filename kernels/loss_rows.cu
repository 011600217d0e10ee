// The training losses' row kernels (loss_rows_params.h). One block per row (grid-
// stride over rows), 16-byte loads and stores where the rows allow them, float32
// sums reduced over the block in a fixed order (deterministic).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "float_cast.cuh"
#include "loss_rows_params.h"

namespace xd::kernels {
namespace {

constexpr int kThreads = 512;
constexpr int kMaxGrid = 65535;

template <typename T> __device__ __forceinline__ float f32(T x) { return FloatCast<T>::to_float(x); }

// (m, s) stands for s * exp(m): the running maximum and the sum scaled to it.
struct MaxSum {
  float m, s;
};

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b) {
  if (a.m == -INFINITY) return b;
  if (b.m == -INFINITY) return a;
  const float m = fmaxf(a.m, b.m);
  return {m, a.s * __expf(a.m - m) + b.s * __expf(b.m - m)};
}

__device__ __forceinline__ void add(MaxSum& acc, float x) {
  if (x > acc.m) {
    acc.s = (acc.m == -INFINITY ? 0.f : acc.s * __expf(acc.m - x)) + 1.f;
    acc.m = x;
  } else if (acc.m != -INFINITY) {
    acc.s += __expf(x - acc.m);
  } else if (x != x) {
    acc = {x, x};  // NaN propagates
  }
}

// Block-wide reductions (blockDim.x == kThreads), result valid in every thread.
__device__ MaxSum block_reduce(MaxSum v) {
  __shared__ MaxSum warp_part[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) {
    MaxSum other{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
    v = combine(v, other);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_part[warp] = v;
  __syncthreads();
  MaxSum total = warp_part[0];
  for (int w = 1; w < kThreads / 32; ++w) total = combine(total, warp_part[w]);
  __syncthreads();  // warp_part is reused by the next row
  return total;
}

__device__ float block_sum(float v) {
  __shared__ float warp_part[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_part[warp] = v;
  __syncthreads();
  float total = 0.f;
  for (int w = 0; w < kThreads / 32; ++w) total += warp_part[w];
  __syncthreads();
  return total;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) logsumexp_kernel(RowLogSumExpParams p, bool vec) {
  constexpr int n = Pack16<T>::n;
  for (long long r = blockIdx.x; r < p.rows; r += gridDim.x) {
    const T* row = static_cast<const T*>(p.x) + r * p.row_stride;
    MaxSum acc{-INFINITY, 0.f};
    long long done = 0;
    if (vec) {
      const long long nv = p.cols / n;
      for (long long v = threadIdx.x; v < nv; v += kThreads) {
        Pack16<T> pk;
        pk.raw = reinterpret_cast<const uint4*>(row)[v];
#pragma unroll
        for (int i = 0; i < n; ++i) add(acc, f32(pk.e[i]));
      }
      done = nv * n;
    }
    for (long long j = done + threadIdx.x; j < p.cols; j += kThreads) add(acc, f32(row[j]));
    const MaxSum total = block_reduce(acc);
    if (threadIdx.x == 0) p.lse[r] = total.m == -INFINITY ? -INFINITY : total.m + logf(total.s);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) distill_backward_kernel(DistillLogitsBackwardParams p, bool vec) {
  constexpr int n = Pack16<T>::n;
  for (long long r = blockIdx.x; r < p.rows; r += gridDim.x) {
    const T* row = static_cast<const T*>(p.x) + r * p.row_stride;
    T* out = static_cast<T*>(p.grad) + r * p.cols;
    const float lse = p.lse[r], c = p.ce_coef[r];
    const long long target = p.target[r];
    auto value = [&](long long j, float x) { return c * (__expf(x - lse) - (j == target ? 1.f : 0.f)); };
    long long done = 0;
    if (vec) {
      const long long nv = p.cols / n;
      for (long long v = threadIdx.x; v < nv; v += kThreads) {
        Pack16<T> in, o;
        in.raw = reinterpret_cast<const uint4*>(row)[v];
#pragma unroll
        for (int i = 0; i < n; ++i) o.e[i] = FloatCast<T>::from_float(value(v * n + i, f32(in.e[i])));
        reinterpret_cast<uint4*>(out)[v] = o.raw;
      }
      done = nv * n;
    }
    for (long long j = done + threadIdx.x; j < p.cols; j += kThreads) out[j] = FloatCast<T>::from_float(value(j, f32(row[j])));
    if (p.k > 0) {
      __syncthreads();  // the dense writes above land before the top-k ids' overwrite
      for (int i = threadIdx.x; i < p.k; i += kThreads) {
        const long long j = p.topk_ids[r * p.k + i];
        if (j < 0 || j >= p.cols) continue;  // checked on the host; never write outside the row
        out[j] = FloatCast<T>::from_float(value(j, f32(row[j])) + p.topk_coef[r * p.k + i]);
      }
      __syncthreads();
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) squared_error_kernel(SquaredErrorParams p, bool vec) {
  constexpr int n = Pack16<T>::n;
  for (long long r = blockIdx.x; r < p.rows; r += gridDim.x) {
    const T* a = static_cast<const T*>(p.a) + r * p.a_row_stride;
    const T* b = static_cast<const T*>(p.b) + r * p.b_row_stride;
    float acc = 0.f;
    long long done = 0;
    if (vec) {
      const long long nv = p.cols / n;
      for (long long v = threadIdx.x; v < nv; v += kThreads) {
        Pack16<T> x, y;
        x.raw = reinterpret_cast<const uint4*>(a)[v];
        y.raw = reinterpret_cast<const uint4*>(b)[v];
#pragma unroll
        for (int i = 0; i < n; ++i) {
          const float d = f32(x.e[i]) - f32(y.e[i]);
          acc = fmaf(d, d, acc);
        }
      }
      done = nv * n;
    }
    for (long long j = done + threadIdx.x; j < p.cols; j += kThreads) {
      const float d = f32(a[j]) - f32(b[j]);
      acc = fmaf(d, d, acc);
    }
    const float total = block_sum(acc);
    if (threadIdx.x == 0) p.sq[r] = total;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) squared_error_backward_kernel(SquaredErrorParams p, bool vec) {
  constexpr int n = Pack16<T>::n;
  const float scale = *p.scale_device * p.scale;
  for (long long r = blockIdx.x; r < p.rows; r += gridDim.x) {
    const T* a = static_cast<const T*>(p.a) + r * p.a_row_stride;
    const T* b = static_cast<const T*>(p.b) + r * p.b_row_stride;
    T* out = static_cast<T*>(p.grad_a) + r * p.cols;
    long long done = 0;
    if (vec) {
      const long long nv = p.cols / n;
      for (long long v = threadIdx.x; v < nv; v += kThreads) {
        Pack16<T> x, y, o;
        x.raw = reinterpret_cast<const uint4*>(a)[v];
        y.raw = reinterpret_cast<const uint4*>(b)[v];
#pragma unroll
        for (int i = 0; i < n; ++i) o.e[i] = FloatCast<T>::from_float(scale * (f32(x.e[i]) - f32(y.e[i])));
        reinterpret_cast<uint4*>(out)[v] = o.raw;
      }
      done = nv * n;
    }
    for (long long j = done + threadIdx.x; j < p.cols; j += kThreads)
      out[j] = FloatCast<T>::from_float(scale * (f32(a[j]) - f32(b[j])));
  }
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }
int elem_bytes(DecodeDtype d) { return d == DecodeDtype::f32 ? 4 : 2; }
// Every row of `base` starts on 16 bytes.
bool rows_aligned(const void* base, long long row_stride, DecodeDtype d) {
  return aligned16(base) && (row_stride * elem_bytes(d)) % 16 == 0;
}
int grid(long long rows) { return static_cast<int>(rows < kMaxGrid ? rows : kMaxGrid); }

template <template <typename> class Launch, typename P>
void by_dtype(DecodeDtype d, const P& p, cudaStream_t stream) {
  switch (d) {
    case DecodeDtype::f32: Launch<float>::run(p, stream); break;
    case DecodeDtype::bf16: Launch<__nv_bfloat16>::run(p, stream); break;
    case DecodeDtype::f16: Launch<__half>::run(p, stream); break;
  }
}

template <typename T> struct LaunchLse {
  static void run(const RowLogSumExpParams& p, cudaStream_t s) {
    logsumexp_kernel<T><<<grid(p.rows), kThreads, 0, s>>>(p, rows_aligned(p.x, p.row_stride, p.dtype));
  }
};
template <typename T> struct LaunchDistill {
  static void run(const DistillLogitsBackwardParams& p, cudaStream_t s) {
    const bool vec = rows_aligned(p.x, p.row_stride, p.dtype) && rows_aligned(p.grad, p.cols, p.dtype);
    distill_backward_kernel<T><<<grid(p.rows), kThreads, 0, s>>>(p, vec);
  }
};
template <typename T> struct LaunchSq {
  static void run(const SquaredErrorParams& p, cudaStream_t s) {
    const bool vec = rows_aligned(p.a, p.a_row_stride, p.dtype) && rows_aligned(p.b, p.b_row_stride, p.dtype);
    squared_error_kernel<T><<<grid(p.rows), kThreads, 0, s>>>(p, vec);
  }
};
template <typename T> struct LaunchSqBack {
  static void run(const SquaredErrorParams& p, cudaStream_t s) {
    const bool vec = rows_aligned(p.a, p.a_row_stride, p.dtype) && rows_aligned(p.b, p.b_row_stride, p.dtype) &&
                     rows_aligned(p.grad_a, p.cols, p.dtype);
    squared_error_backward_kernel<T><<<grid(p.rows), kThreads, 0, s>>>(p, vec);
  }
};

}  // namespace

void row_logsumexp(const RowLogSumExpParams& p, cudaStream_t stream) {
  if (p.rows > 0) by_dtype<LaunchLse>(p.dtype, p, stream);
}
void distill_logits_backward(const DistillLogitsBackwardParams& p, cudaStream_t stream) {
  if (p.rows > 0) by_dtype<LaunchDistill>(p.dtype, p, stream);
}
void row_squared_error(const SquaredErrorParams& p, cudaStream_t stream) {
  if (p.rows > 0) by_dtype<LaunchSq>(p.dtype, p, stream);
}
void squared_error_backward(const SquaredErrorParams& p, cudaStream_t stream) {
  if (p.rows > 0) by_dtype<LaunchSqBack>(p.dtype, p, stream);
}

}  // namespace xd::kernels
