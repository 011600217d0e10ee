// The inter-chunk recurrence on warpgroup tensor cores (wgmma, sm_90a):
// mlstm_chunk_scan_wgmma, the contract of mlstm_chunk_scan_mma (ChunkScanParams, chunk
// 64, float32 states; not split_states). The backward runs it twice: the forward
// states' recompute (rows = k, cols = v) and the reverse scan of the state gradients
// (rows = q, cols = dh).
//
// One block = one warpgroup = one head and one slice of 64 state columns; up to four
// blocks share a multiprocessor (~49 KB of shared memory each). The slice X[:, 64]
// (Dk x 64, fp32) lives in two 64 x 64 accumulator tiles. Per chunk, in walking order:
//   store X (the state entering the chunk) and x; X <- decay X + (w o rows)^T cols,
//   x <- decay x + rows^T w_vec (fp32 FMA, thread d owns x_d).
// rows^T comes from the staged tile through ldmatrix.trans, is weighted in fp32 and split
// into bf16 hi + lo (two products): the backward's gradients cancel against these
// states where |q.n| does (kernels/README.md), so they keep ~16 bits per term as in
// mlstm_mma_scan.cu (the step itself is mlstm_wgmma_state.cuh, which the walking wgmma
// backward shares). cols is the MN-major b operand. The next chunk's tiles are copied
// (cp.async) while this one computes. With state_every = G the recompute stores only
// the states entering chunks 0, G, 2G, ...: the walking backward's checkpoints.
#include <cuda_bf16.h>

#include "mlstm_mma.cuh"
#include "mlstm_params.h"
#include "mlstm_wgmma_state.cuh"
#include "wgmma.cuh"

namespace xd::kernels {
namespace {

using mma::bf16;
constexpr int kThreads = 128;
constexpr int kL = 64;
constexpr int kD = 128;
constexpr int kSlice = 64;

struct Smem {
  bf16 rows[2][kL * kD];
  bf16 cols[2][kL * kSlice];
  float row_w[2][kL];
  float vec_w[2][kL];
};

using mma::cp_async16;
using mma::cp_async_commit;
__device__ __forceinline__ int blk(int row, int col, int cols) { return wgmma::core_index(row, col, cols); }

// The kernel's argument: ChunkScanParams (every chunk's state stored, [BH,NC,...]), or
// Checkpoints (only the states entering chunks 0, 2^shift, 2 2^shift, ..., packed as
// [BH, ceil(NC / 2^shift), ...]). Two instantiations, so that the every-chunk kernel keeps
// its exact code: it sits at the register limit of three blocks per multiprocessor, and
// one more live value or parameter field made it spill.
struct Checkpoints {
  ChunkScanParams p;
  int shift;
};
__device__ __forceinline__ const ChunkScanParams& params_of(const ChunkScanParams& p) { return p; }
__device__ __forceinline__ const ChunkScanParams& params_of(const Checkpoints& c) { return c.p; }
__device__ __forceinline__ bool stores(const ChunkScanParams&, int) { return true; }
__device__ __forceinline__ bool stores(const Checkpoints& c, int chunk) { return (chunk & ((1 << c.shift) - 1)) == 0; }
// Where the state entering `chunk` of head bh goes, in states (x Dk Dv) and state_vecs (x Dk).
__device__ __forceinline__ size_t state_index(const ChunkScanParams& p, int bh, int chunk) {
  return (size_t)bh * p.NC + chunk;
}
__device__ __forceinline__ size_t state_index(const Checkpoints& c, int bh, int chunk) {
  return (size_t)bh * ((c.p.NC + (1 << c.shift) - 1) >> c.shift) + (chunk >> c.shift);
}

template <typename Args>
__global__ void __launch_bounds__(kThreads, 3) mlstm_wgmma_scan_kernel(Args args) {
  const ChunkScanParams& p = params_of(args);
  extern __shared__ __align__(128) unsigned char smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, tq = lane % 4;
  const int bh = blockIdx.y, col0 = blockIdx.x * kSlice;
  const bool owns_vec = blockIdx.x == 0;
  const bf16* rows = static_cast<const bf16*>(p.rows) + (size_t)bh * p.S * p.Dk;
  const bf16* cols = static_cast<const bf16*>(p.cols) + (size_t)bh * p.S * p.Dv;
  const size_t mat = (size_t)p.Dk * p.Dv;
  const int ra = 16 * warp + g, rb = ra + 8;  // this thread's state rows in each 64-row tile

  // Copies as in mlstm_wgmma_forward.cu: per-thread bases plus constants.
  const int r_row = tid % 8, r_seg = tid / 8, c_row = (tid / 64) * 8 + tid % 8, c_seg = (tid / 8) % 8;
  const int r_dst = blk(r_row, 8 * r_seg, kD), c_dst = blk(c_row, 8 * c_seg, kSlice);
  const bool r_col_ok = 8 * r_seg < p.Dk, c_col_ok = col0 + 8 * c_seg < p.Dv;
  auto issue = [&](int step, int buf) {
    const int t0 = (p.reverse ? p.NC - 1 - step : step) * kL;
#pragma unroll
    for (int i = 0; i < kL / 8; ++i) {
      const int r = t0 + 8 * i + r_row;
      const bool valid = r < p.S && r_col_ok;
      cp_async16(sm.rows[buf] + r_dst + i * (kD / 8) * 64, rows + (valid ? (size_t)r * p.Dk + 8 * r_seg : 0), valid);
    }
#pragma unroll
    for (int i = 0; i < kL / 16; ++i) {
      const int r = t0 + 16 * i + c_row;
      const bool valid = r < p.S && c_col_ok;
      cp_async16(sm.cols[buf] + c_dst + i * 2 * (kSlice / 8) * 64,
                 cols + (valid ? (size_t)r * p.Dv + col0 + 8 * c_seg : 0), valid);
    }
    if (tid < kL / 4) cp_async16(sm.row_w[buf] + 4 * tid, p.row_w + (size_t)bh * p.S_pad + t0 + 4 * tid, true);
    else if (tid < kL / 2)
      cp_async16(sm.vec_w[buf] + 4 * (tid - kL / 4), p.vec_w + (size_t)bh * p.S_pad + t0 + 4 * (tid - kL / 4), true);
    cp_async_commit();
  };

  float acc[2][32];  // X rows 64 mt + ra / rb, slice columns 8 (i / 4) + 2 tq + i % 2
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int d = 64 * mt + (i % 4 < 2 ? ra : rb), col = col0 + 8 * (i / 4) + 2 * tq + i % 2;
      acc[mt][i] = d < p.Dk && col < p.Dv && p.init_mat ? p.init_mat[bh * mat + (size_t)d * p.Dv + col] : 0.f;
    }
  const int xd = tid;  // kThreads == kD
  float x_d = xd < p.Dk && p.init_vec ? p.init_vec[(size_t)bh * p.Dk + xd] : 0.f;

  // X's float32 slice to base (a [Dk, Dv] matrix): two floats a lane, one 32-byte
  // sector per row of a quad.
  const size_t out_a = (size_t)ra * p.Dv + col0 + 2 * tq;
  auto store_state = [&](float* base) {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int jj = 0; jj < kSlice / 8; ++jj) {
        if (col0 + 8 * jj + 2 * tq >= p.Dv) break;
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          if (64 * mt + (h ? rb : ra) >= p.Dk) continue;
          *reinterpret_cast<float2*>(base + out_a + (size_t)(64 * mt + 8 * h) * p.Dv + 8 * jj) =
              make_float2(acc[mt][4 * jj + 2 * h], acc[mt][4 * jj + 2 * h + 1]);
        }
      }
  };

  const int a_base = wgmma_state::transposed_base(warp, lane);
  issue(0, 0);
  for (int step = 0; step < p.NC; ++step) {
    const int chunk = p.reverse ? p.NC - 1 - step : step, buf = step & 1;
    if (step + 1 < p.NC) issue(step + 1, buf ^ 1);
    else cp_async_commit();
    if (stores(args, chunk)) {  // the state entering the chunk
      const size_t at = state_index(args, bh, chunk);
      store_state(p.states + at * mat);
      if (owns_vec && xd < p.Dk) p.state_vecs[at * p.Dk + xd] = x_d;
    }
    const float decay = p.decay[(size_t)bh * p.NC + chunk];
    mma::cp_async_wait<1>();
    wgmma::fence_shared_for_async();
    __syncthreads();  // this chunk's tiles visible to every thread and to wgmma
    const bf16 *sr = sm.rows[buf], *sc = sm.cols[buf];
    const float* w = sm.row_w[buf];

#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int i = 0; i < 32; ++i) acc[mt][i] *= decay;
    // Tile mt: (row_scale w o rows)^T as hi + lo A fragments, both products in one group.
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
      uint32_t hi[4][4], lo[4][4];
      wgmma_state::weighted_rows(hi, lo, sr, a_base, mt, w, p.row_scale, tq);
      float(&tile)[32] = mt == 0 ? acc[0] : acc[1];
      wgmma_state::add_products(tile, hi, lo, [&](int kk) {
        return wgmma::mn_major_desc(sc + blk(16 * kk, 0, kSlice), kSlice);
      });
      // x_d while the first tile's products run
      if (mt == 0) x_d = wgmma_state::vector_step(x_d, decay, p.row_scale, sm.vec_w[buf], sr, xd);
      wgmma::wait<0>();
      wgmma::fence_operands(tile);
    }
    __syncthreads();  // every warp is done with this chunk's buffer (reloaded two steps on)
  }
  store_state(p.final_mat + bh * mat);
  if (owns_vec && xd < p.Dk) p.final_vec[(size_t)bh * p.Dk + xd] = x_d;
}

}  // namespace

void mlstm_chunk_scan_wgmma(const ChunkScanParams& p, cudaStream_t stream, int state_every) {
  const int smem = static_cast<int>(sizeof(Smem));
  const dim3 grid((p.Dv + kSlice - 1) / kSlice, p.BH);
  if (state_every > 1) {
    cudaFuncSetAttribute(mlstm_wgmma_scan_kernel<Checkpoints>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    int shift = 0;
    while ((1 << shift) < state_every) ++shift;
    mlstm_wgmma_scan_kernel<Checkpoints><<<grid, kThreads, smem, stream>>>(Checkpoints{p, shift});
  } else {
    cudaFuncSetAttribute(mlstm_wgmma_scan_kernel<ChunkScanParams>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    mlstm_wgmma_scan_kernel<ChunkScanParams><<<grid, kThreads, smem, stream>>>(p);
  }
}

}  // namespace xd::kernels
