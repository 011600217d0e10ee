// The per-chunk mLSTM gradients on warpgroup tensor cores (wgmma, sm_90a):
// mlstm_backward_chunk_wgmma, the contract and the arithmetic of mlstm_backward_chunk_mma
// (BackwardChunkParams, bf16, chunk 64), with each product issued once per warpgroup
// instead of once per warp. The phases are in mlstm_wgmma_backward.cuh; two kernels
// drive them:
// - per chunk (p.segment == 0): one block per (chunk, head), C_{k-1} and dC_k read from
//   the scans' fp32 states, each fetched into registers while the phase before it runs;
// - walking (p.segment = G): one block per (G chunks, head), starting from the state
//   checkpoint that the states recompute wrote every G chunks (ChunkScanParams::
//   state_every) and carrying C and n forward through its chunks in registers, in the
//   wgmma scan's arithmetic (bit for bit the states it would have written). The
//   recompute then writes 1/G of the states and this kernel reads none of them: at
//   B=8 H=32 S=4096, 2.1 GB less traffic than the per-chunk path.
#include "mlstm_wgmma_backward.cuh"
#include "mlstm_wgmma_state.cuh"

namespace xd::kernels {
namespace {

using namespace wgmma_backward;

// After dq: dC_k replaces C_{k-1} in the state tiles and q.dq goes out; ends on a barrier.
__device__ __forceinline__ void publish_state_gradient(Smem& sm, const BackwardChunkParams& p,
                                                       const StatePrefetch& dstate, int bh, int c0) {
  const int tid = threadIdx.x;
  __syncthreads();  // C is no longer read
  dstate.store_split(sm.st_hi, sm.st_lo);
  if (tid < kL && c0 + tid < p.S) p.q_dot_dq[(size_t)bh * p.S + c0 + tid] = sm.qdot[0][tid] + sm.qdot[1][tid];
  wgmma::fence_shared_for_async();
  __syncthreads();
}

// k.dk out (after the barrier that follows dk_dv_phase).
__device__ __forceinline__ void write_k_dot(const Smem& sm, const BackwardChunkParams& p, int bh, int c0) {
  const int tid = threadIdx.x;
  if (tid < kL && c0 + tid < p.S) p.k_dot_dk[(size_t)bh * p.S + c0 + tid] = sm.kdot[0][tid] + sm.kdot[1][tid];
}

__global__ void __launch_bounds__(kThreads, 1) per_chunk_kernel(BackwardChunkParams p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  const int tid = threadIdx.x;
  const int chunk = blockIdx.x, bh = blockIdx.y, c0 = chunk * kL;
  const size_t pos = (size_t)bh * p.S_pad + c0;
  const size_t qk_off = (size_t)bh * p.S * p.Dk, v_off = (size_t)bh * p.S * p.Dv;
  const size_t mat = ((size_t)bh * p.NC + chunk) * p.Dk * p.Dv;
  const size_t vec = ((size_t)bh * p.NC + chunk) * p.Dk;

  copy_tiles(sm, p, c0, qk_off, v_off);
  StatePrefetch state;  // C_{k-1} flies during the scores, dC_k during dq
  state.load(p.states + mat, p.Dk, p.Dv);
  if (tid < kD) {
    sm.n[tid] = tid < p.Dk ? p.state_vecs[vec + tid] : 0.f;
    sm.dn[tid] = tid < p.Dk ? p.dstate_vecs[vec + tid] : 0.f;
  }
  copy_tables(sm, p, pos);
  mma::cp_async_wait<0>();
  wgmma::fence_shared_for_async();
  __syncthreads();

  scores_phase(sm, p);
  state.store_split(sm.st_hi, sm.st_lo);
  wgmma::fence_shared_for_async();
  __syncthreads();
  state.load(p.dstates + mat, p.Dk, p.Dv);
  dq_phase(sm, p, c0, qk_off);
  publish_state_gradient(sm, p, state, bh, c0);
  dk_dv_phase(sm, p, c0, qk_off, v_off);
  __syncthreads();
  write_k_dot(sm, p, bh, c0);
}

// The walk's C: this warpgroup's 64 state columns in two 64 x 64 accumulator tiles, element
// i of tile mt at row 64 mt + (i % 4 < 2 ? ra : rb), column 64 wg + 8 (i / 4) + 2 tq + i % 2.
struct WalkState {
  float c[2][32];
  float n_d;  // n's element tid (threads 0..127; zero past Dk)

  __device__ __forceinline__ int col(const Lane& t, int i) const { return 64 * t.wg + 8 * (i / 4) + 2 * t.tq + i % 2; }
  __device__ __forceinline__ int row(const Lane& t, int mt, int i) const { return 64 * mt + (i % 4 < 2 ? t.ra : t.rb); }

  __device__ __forceinline__ void load(const float* mat, const float* vec, const Lane& t, int Dk, int Dv) {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        const int d = row(t, mt, i), e = col(t, i);
        c[mt][i] = d < Dk && e < Dv ? mat[(size_t)d * Dv + e] : 0.f;
      }
    n_d = t.tid < Dk ? vec[t.tid] : 0.f;
  }

  // C hi + lo into the state tiles, n into sm.n.
  __device__ __forceinline__ void store(Smem& sm, const Lane& t) const {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int i = 0; i < 32; i += 2) {
        uint32_t h, l;
        mma::split2(c[mt][i], c[mt][i + 1], h, l);
        const int at = blk(row(t, mt, i), col(t, i), kD);
        *reinterpret_cast<uint32_t*>(sm.st_hi + at) = h;
        *reinterpret_cast<uint32_t*>(sm.st_lo + at) = l;
      }
    if (t.tid < kD) sm.n[t.tid] = n_d;
  }

  // C <- decay C + (w o k)^T V and n <- decay n + k^T w with this chunk's k, V and key
  // weights: the wgmma scan's step (mlstm_wgmma_state.cuh) on this warpgroup's slice.
  __device__ __forceinline__ void advance(const Smem& sm, const Lane& t, float decay) {
    const int base = wgmma_state::transposed_base(t.warp % 4, t.lane);
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int i = 0; i < 32; ++i) c[mt][i] *= decay;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
      uint32_t hi[4][4], lo[4][4];
      wgmma_state::weighted_rows(hi, lo, sm.k, base, mt, sm.key_w, 1.f, t.tq);
      wgmma_state::add_products(c[mt], hi, lo, [&](int kk) { return mn_major<kD>(sm.v, kk, 64 * t.wg); });
      // n while the first tile's products run (every thread takes column tid % 128, so that
      // no branch sits between the warpgroups' products; threads 0..127 keep theirs)
      if (mt == 0) n_d = wgmma_state::vector_step(n_d, decay, 1.f, sm.key_w, sm.k, t.tid % kD);
      wgmma::wait<0>();
      wgmma::fence_operands(c[mt]);
    }
  }
};

__global__ void __launch_bounds__(kThreads, 1) walk_kernel(BackwardChunkParams p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  const Lane t;
  const int tid = t.tid, bh = blockIdx.y;
  const int first = blockIdx.x * p.segment, last = min(p.NC, first + p.segment);
  const size_t qk_off = (size_t)bh * p.S * p.Dk, v_off = (size_t)bh * p.S * p.Dv;
  const size_t checkpoint = (size_t)bh * gridDim.x + blockIdx.x;  // [BH, ceil(NC/G)]
  WalkState state;
  state.load(p.states + checkpoint * p.Dk * p.Dv, p.state_vecs + checkpoint * p.Dk, t, p.Dk, p.Dv);

  for (int chunk = first; chunk < last; ++chunk) {
    const int c0 = chunk * kL;
    const size_t mat = ((size_t)bh * p.NC + chunk) * p.Dk * p.Dv;
    const size_t vec = ((size_t)bh * p.NC + chunk) * p.Dk;
    copy_tiles(sm, p, c0, qk_off, v_off);
    if (tid < kD) sm.dn[tid] = tid < p.Dk ? p.dstate_vecs[vec + tid] : 0.f;
    copy_tables(sm, p, (size_t)bh * p.S_pad + c0);
    state.store(sm, t);  // C_{k-1}, n_{k-1}
    mma::cp_async_wait<0>();
    wgmma::fence_shared_for_async();
    __syncthreads();

    scores_phase(sm, p);
    StatePrefetch dstate;  // dC_k flies during dq
    dstate.load(p.dstates + mat, p.Dk, p.Dv);
    __syncthreads();  // A, B in place
    dq_phase(sm, p, c0, qk_off);
    publish_state_gradient(sm, p, dstate, bh, c0);
    dk_dv_phase(sm, p, c0, qk_off, v_off);
    state.advance(sm, t, p.decay[(size_t)bh * p.NC + chunk]);
    __syncthreads();  // every read of this chunk's tiles done before the next chunk's copies
    write_k_dot(sm, p, bh, c0);
  }
}

}  // namespace

void mlstm_backward_chunk_wgmma(const BackwardChunkParams& p, cudaStream_t stream) {
  const int smem = static_cast<int>(sizeof(Smem));
  if (p.segment > 0) {
    cudaFuncSetAttribute(walk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    walk_kernel<<<dim3((p.NC + p.segment - 1) / p.segment, p.BH), kThreads, smem, stream>>>(p);
  } else {
    cudaFuncSetAttribute(per_chunk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    per_chunk_kernel<<<dim3(p.NC, p.BH), kThreads, smem, stream>>>(p);
  }
}

}  // namespace xd::kernels
