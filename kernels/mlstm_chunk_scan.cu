// The inter-chunk recurrence of the chunkwise mLSTM (forward: states C, n entering
// each chunk; reverse: gradients dC, dn at each chunk's end). One block per
// (64-column slice of the state, head): the slice lives in registers (8 x 4 per
// thread), each chunk's rows and weighted columns are staged in shared memory.
#include "mlstm_common.cuh"
#include "mlstm_params.h"
#include "mlstm_tensor_core.cuh"

namespace xd::kernels {
namespace {

constexpr int kCols = 64;            // state columns per block
constexpr int kLdRows = kMaxHeadDim + 1;
constexpr int kLdCols = kCols + 1;

template <typename T, bool TC>
__global__ void __launch_bounds__(kThreads) chunk_scan_kernel(ChunkScanParams p) {
  extern __shared__ float smem[];
  float* rows = smem;                      // [L][kLdRows]
  float* cols = rows + p.L * kLdRows;      // [L][kLdCols], pre-multiplied by row_w
  float* vec = cols + p.L * kLdCols;       // [kMaxHeadDim] the vector state
  float* vec_w = vec + kMaxHeadDim;        // [L]
  float* scratch = vec_w + p.L;            // [128][65] tensor-core results
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int bh = blockIdx.y, c0 = blockIdx.x * kCols;
  const bool owns_vec = blockIdx.x == 0;
  const T* row_src = static_cast<const T*>(p.rows) + (size_t)bh * p.S * p.Dk;
  const T* col_src = static_cast<const T*>(p.cols) + (size_t)bh * p.S * p.Dv;
  const size_t mat = (size_t)p.Dk * p.Dv;

  float acc[8][4];  // state rows ty + 16 r, columns c0 + tx + 16 c
#pragma unroll
  for (int r = 0; r < 8; ++r)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int d = ty + 16 * r, col = c0 + tx + 16 * c;
      acc[r][c] = (p.init_mat && d < p.Dk && col < p.Dv) ? p.init_mat[bh * mat + (size_t)d * p.Dv + col] : 0.f;
    }
  if (tid < kMaxHeadDim) vec[tid] = (p.init_vec && tid < p.Dk) ? p.init_vec[(size_t)bh * p.Dk + tid] : 0.f;

  for (int step = 0; step < p.NC; ++step) {
    const int chunk = p.reverse ? p.NC - 1 - step : step;
    float* out = p.states + ((size_t)bh * p.NC + chunk) * mat;
#pragma unroll
    for (int r = 0; r < 8; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int d = ty + 16 * r, col = c0 + tx + 16 * c;
        if (d < p.Dk && col < p.Dv) out[(size_t)d * p.Dv + col] = acc[r][c];
      }
    __syncthreads();  // vec is final for the previous chunk; buffers are free
    if (owns_vec && tid < p.Dk) p.state_vecs[((size_t)bh * p.NC + chunk) * p.Dk + tid] = vec[tid];
    const int t0 = chunk * p.L;
    const float* rw = p.row_w + (size_t)bh * p.S_pad + t0;
    load_tile<kMaxHeadDim>(rows, kLdRows, row_src, t0, p.L, p.S, p.Dk, p.row_scale);
    for (int idx = tid; idx < p.L * kCols; idx += kThreads) {
      const int t = idx / kCols, c = idx % kCols;
      float x = 0.f;
      if (t0 + t < p.S && c0 + c < p.Dv) x = to_float(col_src[(size_t)(t0 + t) * p.Dv + c0 + c]) * rw[t];
      cols[t * kLdCols + c] = x;
    }
    for (int t = tid; t < p.L; t += kThreads) vec_w[t] = p.vec_w[(size_t)bh * p.S_pad + t0 + t];
    __syncthreads();
    const float decay = p.decay[(size_t)bh * p.NC + chunk];
#pragma unroll
    for (int r = 0; r < 8; ++r)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[r][c] *= decay;
    block_mm_auto<TC, 8, 4, true, false>(acc, rows, kLdRows, cols, kLdCols, p.L, ty, tx, scratch);
    if (tid < kMaxHeadDim) {
      float x = vec[tid] * decay;
      for (int t = 0; t < p.L; ++t) x = fmaf(vec_w[t], rows[t * kLdRows + tid], x);
      vec[tid] = x;
    }
  }
#pragma unroll
  for (int r = 0; r < 8; ++r)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int d = ty + 16 * r, col = c0 + tx + 16 * c;
      if (d < p.Dk && col < p.Dv) p.final_mat[bh * mat + (size_t)d * p.Dv + col] = acc[r][c];
    }
  __syncthreads();
  if (owns_vec && tid < p.Dk) p.final_vec[(size_t)bh * p.Dk + tid] = vec[tid];
}

template <typename T, bool TC>
void launch(const ChunkScanParams& p, cudaStream_t stream) {
  const size_t smem = sizeof(float) * ((size_t)p.L * kLdRows + (size_t)p.L * kLdCols + kMaxHeadDim + p.L +
                                       (TC ? kMaxHeadDim * kLdCols : 0));
  cudaFuncSetAttribute(chunk_scan_kernel<T, TC>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  const dim3 grid((p.Dv + kCols - 1) / kCols, p.BH);
  chunk_scan_kernel<T, TC><<<grid, kThreads, smem, stream>>>(p);
}

}  // namespace

void mlstm_chunk_scan(const ChunkScanParams& p, cudaStream_t stream) {
  switch (p.dtype) {
    case DType::F32: launch<float, false>(p, stream); break;
    case DType::BF16:
      p.tensor_cores ? launch<__nv_bfloat16, true>(p, stream) : launch<__nv_bfloat16, false>(p, stream);
      break;
    case DType::F16: p.tensor_cores ? launch<__half, true>(p, stream) : launch<__half, false>(p, stream); break;
  }
}

const char* last_error_or_null() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace xd::kernels
