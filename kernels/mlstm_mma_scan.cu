// The inter-chunk recurrence on tensor cores, for bf16 inputs (same contract as
// mlstm_chunk_scan.cu: ChunkScanParams). One block per head and slice of state
// columns (all Dv columns unless the heads are too few to fill the GPU, e.g. a long
// prompt at batch 1), 8 warps; warp w holds state rows 16w..16w+15 of the slice in
// mma accumulators (fp32). Per chunk: X <- decay X + rows^T (w o cols), with
// rows exact bf16 (ldmatrix.trans from the staged chunk) and w o cols an fp32
// product split into bf16 hi + lo (two mma), so the state keeps ~16 bits per
// term and fp32 accumulation. Chunks are double-buffered with cp.async.
#include <cstdlib>
#include <cstring>

#include "mlstm_mma.cuh"
#include "mlstm_mma_chunk.cuh"
#include "mlstm_params.h"

namespace xd::kernels {
namespace {

using mma::bf16;
constexpr int kThreadsScan = 256;
constexpr int kL = 64;
constexpr int kCols = kMaxHeadDim;  // the whole state width: BH blocks, one wave at two per SM
constexpr int kLdRows = kMaxHeadDim + 8;
constexpr int kLdCols = kCols + 8;

struct ScanSmem {
  bf16 rows[2][kL * kLdRows];
  bf16 cols[2][kL * kLdCols];
  float row_w[2][kL];
  float vec_w[2][kL];
  float vec[kMaxHeadDim];
};

// kWidth: columns of this block's slice (kCols, or 64 / 32 with column slices), a
// compile-time constant so the guards below fold away and the accumulators stay in
// registers (a runtime width made the kernel spill).
template <int kWidth>
__global__ void __launch_bounds__(kThreadsScan, 2) mma_scan_kernel(ChunkScanParams p) {
  static_assert(kWidth % 16 == 0 && kWidth <= kCols, "a slice is whole 16-column mma tiles");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  ScanSmem& sm = *reinterpret_cast<ScanSmem*>(smem_raw);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, tq = lane % 4;
  constexpr int width = kWidth;
  const int bh = blockIdx.y, c0 = blockIdx.x * width;
  const bool owns_vec = blockIdx.x == 0;
  const bf16* row_src = static_cast<const bf16*>(p.rows) + (size_t)bh * p.S * p.Dk;
  const bf16* col_src = static_cast<const bf16*>(p.cols) + (size_t)bh * p.S * p.Dv;
  const size_t mat = (size_t)p.Dk * p.Dv;
  const int r0 = warp * 16;                 // state rows of this warp
  const bool active = r0 < p.Dk;            // Dk a multiple of 8: rows past Dk stay zero

  auto issue = [&](int step, int buf) {
    const int chunk = p.reverse ? p.NC - 1 - step : step;
    const int t0 = chunk * kL;
    mma::tile_async<kMaxHeadDim, kThreadsScan>(sm.rows[buf], kLdRows, row_src, t0, kL, p.S, p.Dk);
    // this block's slice of cols
    for (int idx = tid; idx < kL * (width / 8); idx += kThreadsScan) {
      const int t = idx / (width / 8), c = (idx % (width / 8)) * 8;
      const bool valid = t0 + t < p.S && c0 + c < p.Dv;
      mma::cp_async16(sm.cols[buf] + t * kLdCols + c, valid ? col_src + (size_t)(t0 + t) * p.Dv + c0 + c : col_src,
                      valid);
    }
    if (tid < kL / 4) {
      mma::cp_async16(sm.row_w[buf] + 4 * tid, p.row_w + (size_t)bh * p.S_pad + t0 + 4 * tid, true);
    } else if (tid < kL / 2) {
      const int u = tid - kL / 4;
      mma::cp_async16(sm.vec_w[buf] + 4 * u, p.vec_w + (size_t)bh * p.S_pad + t0 + 4 * u, true);
    }
    mma::cp_async_commit();
  };

  float acc[16][4];  // rows r0 + g (+8), columns c0 + 8n + 2tq (+1)
#pragma unroll
  for (int n = 0; n < 16; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int d = r0 + g + (e / 2) * 8, col = c0 + 8 * n + 2 * tq + (e % 2);
      acc[n][e] = (p.init_mat && d < p.Dk && col < p.Dv && 8 * n < width)
                      ? p.init_mat[bh * mat + (size_t)d * p.Dv + col] : 0.f;
    }
  if (tid < kMaxHeadDim) sm.vec[tid] = (p.init_vec && tid < p.Dk) ? p.init_vec[(size_t)bh * p.Dk + tid] : 0.f;

  auto store_split = [&](int chunk) {  // hi and lo bf16 planes of the state entering the chunk
    if (!active) return;
    mma::bf16* hi = reinterpret_cast<mma::bf16*>(p.states) + ((size_t)bh * p.NC + chunk) * 2 * mat;
    mma::bf16* lo = hi + mat;
#pragma unroll
    for (int n = 0; n < 16; ++n)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int d = r0 + g + 8 * h, col = c0 + 8 * n + 2 * tq;
        if (d < p.Dk && col < p.Dv && 8 * n < width) {
          uint32_t xh, xl;
          mma::split2(acc[n][2 * h], acc[n][2 * h + 1], xh, xl);
          *reinterpret_cast<uint32_t*>(hi + (size_t)d * p.Dv + col) = xh;
          *reinterpret_cast<uint32_t*>(lo + (size_t)d * p.Dv + col) = xl;
        }
      }
  };
  auto store_state = [&](float* base) {
    if (!active) return;
#pragma unroll
    for (int n = 0; n < 16; ++n)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int d = r0 + g + 8 * h, col = c0 + 8 * n + 2 * tq;
        if (d < p.Dk && col < p.Dv && 8 * n < width)
          *reinterpret_cast<float2*>(base + (size_t)d * p.Dv + col) = make_float2(acc[n][2 * h], acc[n][2 * h + 1]);
      }
  };

  issue(0, 0);
  // the chunk decays are read one step ahead, off the loop's critical path
  float decay_next = p.decay[(size_t)bh * p.NC + (p.reverse ? p.NC - 1 : 0)];
  for (int step = 0; step < p.NC; ++step) {
    const int chunk = p.reverse ? p.NC - 1 - step : step;
    const int buf = step & 1;
    if (step + 1 < p.NC) {
      issue(step + 1, buf ^ 1);
      mma::cp_async_wait<1>();
    } else {
      mma::cp_async_wait<0>();
    }
    const float decay = decay_next;
    if (step + 1 < p.NC) decay_next = p.decay[(size_t)bh * p.NC + (p.reverse ? p.NC - 2 - step : step + 1)];
    if (p.split_states) store_split(chunk);
    else store_state(p.states + ((size_t)bh * p.NC + chunk) * mat);
    __syncthreads();  // this chunk's tiles are in; vec is final for the previous chunk
    if (owns_vec && tid < p.Dk) p.state_vecs[((size_t)bh * p.NC + chunk) * p.Dk + tid] = sm.vec[tid];
    if (active) {
#pragma unroll
      for (int n = 0; n < 16; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[n][e] *= decay;
      mma::chunk_state_update(acc, sm.rows[buf], kLdRows, sm.cols[buf], kLdCols, sm.row_w[buf], p.row_scale, r0,
                              min(width, p.Dv - c0));
    }
    if (tid < p.Dk) mma::chunk_vec_update(sm.vec, tid, sm.rows[buf], kLdRows, sm.vec_w[buf], decay, p.row_scale);
    __syncthreads();  // buffers free for the load two steps ahead
  }
  store_state(p.final_mat + bh * mat);
  if (owns_vec && tid < p.Dk) p.final_vec[(size_t)bh * p.Dk + tid] = sm.vec[tid];
}

}  // namespace

bool mlstm_mma_supported(int Dk, int Dv) { return Dk % 8 == 0 && Dv % 8 == 0 && Dk <= kMaxHeadDim && Dv <= kMaxHeadDim; }

void mlstm_chunk_scan_mma(const ChunkScanParams& p, cudaStream_t stream) {
  const size_t smem = sizeof(ScanSmem);
  // A block walks every chunk of its head in order, so the scan's time is one block's:
  // with fewer heads than multiprocessors, slices of the state's columns go to
  // separate blocks (each reloads the chunk's keys, from L2) until the GPU is full.
  static const int sms = [] {
    int dev = 0, n = 132;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n;
  }();
  int cols = kCols;  // state columns per block
  // On by default since MlstmCuda.ScanColumnSlices* passed on an H100 (2026-12-07);
  // XD_MLSTM_SCAN_SLICES=off keeps one block per head. Read per launch so that a test
  // can switch it.
  const char* slices_env = std::getenv("XD_MLSTM_SCAN_SLICES");
  const bool slices = slices_env == nullptr || std::strcmp(slices_env, "off") != 0;
  while (slices && cols > 32 && (long long)p.BH * ((p.Dv + cols - 1) / cols) < sms) cols /= 2;
  const dim3 grid((p.Dv + cols - 1) / cols, p.BH);
  auto launch = [&](auto kernel) {
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    kernel<<<grid, kThreadsScan, smem, stream>>>(p);
  };
  switch (cols) {
    case 32: launch(mma_scan_kernel<32>); break;
    case 64: launch(mma_scan_kernel<64>); break;
    default: launch(mma_scan_kernel<kCols>); break;
  }
}

}  // namespace xd::kernels
