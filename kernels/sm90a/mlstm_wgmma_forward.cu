// The bf16 mLSTM forward in one kernel on warpgroup tensor cores (wgmma, sm_90a):
// mlstm_fused_forward_wgmma, the contract of mlstm_fused_forward_mma (FusedForwardParams,
// chunk 64) with the products of a chunk issued once per warpgroup instead of once per
// warp, and without the hi + lo operand splits of C and P.
//
// One block = one warpgroup (128 threads) = one head and one slice of 64 value columns,
// walking the chunks in order; two blocks share a multiprocessor (~103 KB of shared
// memory each), so one block's copies and products overlap the other's. Per chunk:
//   hs  = q [C_{k-1} | n_hi n_lo]      64 x 72, K = Dk   (q, C in shared memory)
//   S   = q k^T                        64 x 64, K = Dk   (q, k in shared memory)
//   P   = scale S o exp(row_log_t + col_log_j), causal  (registers)
//   h   = s_t scale hs[:, :64] + P V   64 x 64, K = 64   (P from registers)
//   C  <- decay C + (w o k)^T V        2 x (64 x 64), K = 64 (w o k from registers)
//   n  <- decay n + k^T w              fp32 FMA, thread d owns n_d
//   dn  = s_t scale (hs[:, 64] + hs[:, 65]) + sum_j P_tj (fp32)
// Shared memory holds every tile in core blocks (wgmma.cuh): q and k K-major for S and
// q C; V and C row-major, which is the MN-major b operand. q, k, V and the gate tables
// of the next chunk are copied (cp.async) while this one computes.
//
// Precision: q, k, v are bf16 inputs (exact operands). C_{k-1}, P and w o k are rounded
// once to bf16 where the mma.sync kernels split them hi + lo (their errors enter h
// like a bf16 attention's P). n, q.n and sum_j P stay fp32 (n enters the product as
// hi + lo columns): den compares |q.n + sum P| with exp(-m) and q.n can cancel, where a
// rounded n would be amplified. Accumulation is fp32 throughout.
#include <cuda_bf16.h>

#include "mlstm_mma.cuh"
#include "mlstm_params.h"
#include "wgmma.cuh"

namespace xd::kernels {
namespace {

using mma::bf16;
constexpr int kThreads = 128;
constexpr int kL = 64;       // chunk
constexpr int kD = 128;      // Dk held (zero-padded)
constexpr int kSlice = 64;   // value columns of a block
constexpr int kWide = 72;    // C's tile: the slice plus n_hi, n_lo (and six zero columns)
constexpr int kTables = 5;   // row_log, col_log, carry, m_pos, key_w

struct Smem {
  bf16 q[2][kL * kD];
  bf16 k[2][kL * kD];
  bf16 v[2][kL * kSlice];
  bf16 c[kD * kWide];
  float tab[2][kTables][kL];
};

using mma::cp_async16;
using mma::cp_async_commit;
using mma::ldsm_x4_trans;
using mma::pack;
using mma::unpack;
__device__ __forceinline__ int blk(int row, int col, int cols) { return wgmma::core_index(row, col, cols); }

// Descriptors: a K-major tile of kD columns (q, k) starting at k-step s, and a row-major
// tile of `cols` columns (C, V) as the MN-major b operand starting at row 16 s.
__device__ __forceinline__ uint64_t desc_k_major(const bf16* tile, int s) {
  return wgmma::k_major_desc(tile + blk(0, 16 * s, kD), kD);
}
template <int cols>
__device__ __forceinline__ uint64_t desc_mn_major(const bf16* tile, int s) {
  return wgmma::mn_major_desc(tile + blk(16 * s, 0, cols), cols);
}

__global__ void __launch_bounds__(kThreads, 1) mlstm_wgmma_forward_kernel(FusedForwardParams p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, tq = lane % 4;
  const int bh = blockIdx.y, col0 = blockIdx.x * kSlice;
  const bool first_slice = blockIdx.x == 0;
  const bf16* q = static_cast<const bf16*>(p.q) + (size_t)bh * p.S * p.Dk;
  const bf16* k = static_cast<const bf16*>(p.k) + (size_t)bh * p.S * p.Dk;
  const bf16* v = static_cast<const bf16*>(p.v) + (size_t)bh * p.S * p.Dv;
  const size_t mat = (size_t)p.Dk * p.Dv;
  // This thread's accumulator rows: the query rows ra, rb of the chunk; state rows
  // 64 mt + ra, 64 mt + rb of the two state tiles.
  const int ra = 16 * warp + g, rb = ra + 8;

  // Chunk c's q, k, V slice and tables into buffer buf. Eight consecutive threads fill
  // one core matrix (128 contiguous bytes) from eight rows.
  // With idx = tid + 128 i, copy i of q and k is row 8 i + tid % 8, segment tid / 8, and
  // copy i of V row 8 (2 i + tid / 64) + tid % 8, segment (tid / 8) % 8: the addresses
  // are a per-thread base plus constants (kept that way, the kernel does not spill).
  const int qk_row = tid % 8, qk_seg = tid / 8, v_row = (tid / 64) * 8 + tid % 8, v_seg = (tid / 8) % 8;
  const int qk_dst = blk(qk_row, 8 * qk_seg, kD), v_dst = blk(v_row, 8 * v_seg, kSlice);
  const bool qk_col_ok = 8 * qk_seg < p.Dk, v_col_ok = col0 + 8 * v_seg < p.Dv;
  auto issue = [&](int c, int buf) {
    const int t0 = c * kL;
#pragma unroll
    for (int i = 0; i < kL / 8; ++i) {
      const int r = t0 + 8 * i + qk_row;
      const bool valid = r < p.S && qk_col_ok;
      const size_t src = valid ? (size_t)r * p.Dk + 8 * qk_seg : 0;
      cp_async16(sm.q[buf] + qk_dst + i * (kD / 8) * 64, q + src, valid);
      cp_async16(sm.k[buf] + qk_dst + i * (kD / 8) * 64, k + src, valid);
    }
#pragma unroll
    for (int i = 0; i < kL / 16; ++i) {
      const int r = t0 + 16 * i + v_row;
      const bool valid = r < p.S && v_col_ok;
      cp_async16(sm.v[buf] + v_dst + i * 2 * (kSlice / 8) * 64,
                 v + (valid ? (size_t)r * p.Dv + col0 + 8 * v_seg : 0), valid);
    }
    if (tid < kTables * kL / 4) {  // S_pad rows: always in bounds
      const int tb = tid / (kL / 4), s = tid % (kL / 4);
      const float* table = tb == 0 ? p.row_log : tb == 1 ? p.col_log : tb == 2 ? p.carry_w : tb == 3 ? p.m_pos : p.key_w;
      cp_async16(&sm.tab[buf][tb][4 * s], table + (size_t)bh * p.S_pad + t0 + 4 * s, true);
    }
    cp_async_commit();
  };

  issue(0, 0);
  // C's columns 66..71 stay zero (write_state never touches them).
  for (int d = tid; d < kD; d += kThreads)
#pragma unroll
    for (int c = kSlice + 2; c < kWide; ++c) sm.c[blk(d, c, kWide)] = __float2bfloat16(0.f);

  // C in two 64 x 64 accumulator tiles (state rows 0..63, 64..127); n_d in thread d.
  float cacc[2][32];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int d = 64 * mt + (i % 4 < 2 ? ra : rb), col = 8 * (i / 4) + 2 * tq + i % 2;
      cacc[mt][i] = d < p.Dk && col0 + col < p.Dv && p.init_mat ? p.init_mat[bh * mat + (size_t)d * p.Dv + col0 + col]
                                                                : 0.f;
    }
  const int nd = tid;  // kThreads == kD
  float n_d = nd < p.Dk && p.init_vec ? p.init_vec[(size_t)bh * p.Dk + nd] : 0.f;
  // [C | n_hi n_lo] as the bf16 b operand of the next chunk's q [C | n].
  const int c_base = blk(ra, 2 * tq, kWide);  // row ra = 16 warp + g: row block 2 warp, row g
  auto write_state = [&]() {
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int jj = 0; jj < kSlice / 8; ++jj)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          *reinterpret_cast<uint32_t*>(sm.c + c_base + (8 * mt + h) * (kWide / 8) * 64 + jj * 64) =
              pack(cacc[mt][4 * jj + 2 * h], cacc[mt][4 * jj + 2 * h + 1]);
    const float hi = __bfloat162float(__float2bfloat16(n_d));
    *reinterpret_cast<uint32_t*>(sm.c + blk(nd, kSlice, kWide)) = pack(hi, n_d - hi);
  };
  write_state();

  // ldmatrix rows of (w o k)^T: lanes 8 m.. address matrix m = (positions 8 (m / 2)..,
  // state rows 16 warp + 8 (m % 2)..)
  const int ka_base = blk(lane % 8 + 8 * (lane / 16), 16 * warp + 8 * ((lane / 8) % 2), kD);
  for (int chunk = 0; chunk < p.NC; ++chunk) {
    const int buf = chunk & 1, t0 = chunk * kL;
    if (chunk + 1 < p.NC) issue(chunk + 1, buf ^ 1);
    else cp_async_commit();  // an empty group keeps the count
    mma::cp_async_wait<1>();
    wgmma::fence_shared_for_async();
    __syncthreads();  // this chunk's tiles and C_{k-1} visible to every thread and to wgmma
    const bf16 *sq = sm.q[buf], *sk = sm.k[buf], *sv = sm.v[buf];
    const float* row_log = sm.tab[buf][0];
    const float* col_log = sm.tab[buf][1];
    const float* carry = sm.tab[buf][2];
    const float* m_pos = sm.tab[buf][3];
    const float* key_w = sm.tab[buf][4];
    const float decay = p.decay[(size_t)bh * p.NC + chunk];

    float hacc[36], sacc[32];
#pragma unroll
    for (int i = 0; i < 36; ++i) hacc[i] = 0.f;
#pragma unroll
    for (int i = 0; i < 32; ++i) sacc[i] = 0.f;
    wgmma::fence();
#pragma unroll
    for (int s = 0; s < kD / 16; ++s)
      wgmma::mma_m64n72k16_ss(hacc, desc_k_major(sq, s), desc_mn_major<kWide>(sm.c, s), s > 0);
#pragma unroll
    for (int s = 0; s < kD / 16; ++s) wgmma::mma_m64n64k16(sacc, desc_k_major(sq, s), desc_k_major(sk, s), s > 0);
    wgmma::commit();
    {  // n_d <- decay n_d + sum_j w_j k_jd while the products run (four chains)
      float x[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll 4
      for (int j = 0; j < kL; j += 4)
#pragma unroll
        for (int u = 0; u < 4; ++u) x[u] = fmaf(key_w[j + u], __bfloat162float(sk[blk(j + u, nd, kD)]), x[u]);
      n_d = fmaf(n_d, decay, (x[0] + x[1]) + (x[2] + x[3]));
    }
    wgmma::wait<0>();

    // P in place of S (causal) with its fp32 row sums, and hs scaled by s_t scale.
    const float la = row_log[ra], lb = row_log[rb];
    float psum_a = 0.f, psum_b = 0.f;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int j = 8 * (i / 4) + 2 * tq + i % 2, row = i % 4 < 2 ? ra : rb;
      sacc[i] = j <= row ? sacc[i] * p.scale * expf((i % 4 < 2 ? la : lb) + col_log[j]) : 0.f;
      if (i % 4 < 2) psum_a += sacc[i];
      else psum_b += sacc[i];
    }
    const float sa = carry[ra] * p.scale, sb = carry[rb] * p.scale;
#pragma unroll
    for (int i = 0; i < 36; ++i) hacc[i] *= i % 4 < 2 ? sa : sb;
    uint32_t pa[4][4];  // P as the A fragments of k-steps 0..3 (the accumulator layout is the A layout)
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      pa[kk][0] = pack(sacc[8 * kk + 0], sacc[8 * kk + 1]);
      pa[kk][1] = pack(sacc[8 * kk + 2], sacc[8 * kk + 3]);
      pa[kk][2] = pack(sacc[8 * kk + 4], sacc[8 * kk + 5]);
      pa[kk][3] = pack(sacc[8 * kk + 6], sacc[8 * kk + 7]);
    }
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int i = 0; i < 32; ++i) cacc[mt][i] *= decay;
    // (w o k)^T for state rows 64 mt + 16 warp.., positions 16 kk..: k's tile transposed
    // by ldmatrix, each position's key weight applied in fp32, rounded once. One state
    // tile at a time (registers): tile 0 with P V, tile 1 while h is stored.
    uint32_t ka[4][4];
    auto weighted_keys = [&](int mt) {
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        ldsm_x4_trans(ka[kk], sk + ka_base + kk * 2 * (kD / 8) * 64 + mt * 8 * 64);
        const int j0 = 16 * kk + 2 * tq;
        const float w0 = key_w[j0], w1 = key_w[j0 + 1], w8 = key_w[j0 + 8], w9 = key_w[j0 + 9];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 x = unpack(ka[kk][e]);
          ka[kk][e] = e < 2 ? pack(x.x * w0, x.y * w1) : pack(x.x * w8, x.y * w9);
        }
      }
    };
    weighted_keys(0);
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
      wgmma::mma_m64n64k16_rs(reinterpret_cast<float(&)[32]>(hacc), pa[kk], desc_mn_major<kSlice>(sv, kk), true);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) wgmma::mma_m64n64k16_rs(cacc[0], ka[kk], desc_mn_major<kSlice>(sv, kk), true);
    wgmma::commit();
    wgmma::wait<0>();
    weighted_keys(1);
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) wgmma::mma_m64n64k16_rs(cacc[1], ka[kk], desc_mn_major<kSlice>(sv, kk), true);
    wgmma::commit();

    // dn = s_t scale q.(n_hi + n_lo) (columns 64, 65: the quad's first lane) + sum_j P_tj.
#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
      psum_a += __shfl_xor_sync(0xffffffffu, psum_a, off);
      psum_b += __shfl_xor_sync(0xffffffffu, psum_b, off);
    }
    const int quad0 = lane & ~3;
    const float dn_a = __shfl_sync(0xffffffffu, hacc[32] + hacc[33], quad0) + psum_a;
    const float dn_b = __shfl_sync(0xffffffffu, hacc[34] + hacc[35], quad0) + psum_b;
    const float inv_a = 1.f / (fmaxf(fabsf(dn_a), expf(-m_pos[ra])) + p.eps);
    const float inv_b = 1.f / (fmaxf(fabsf(dn_b), expf(-m_pos[rb])) + p.eps);
    // Rows ra and rb of h from one base each (64-bit offsets per element would be hoisted
    // out of the chunk loop and spill).
    const size_t out_a = ((size_t)bh * p.S + t0 + ra) * p.Dv + col0 + 2 * tq, out_b = out_a + 8 * (size_t)p.Dv;
    const bool row_a = t0 + ra < p.S, row_b = t0 + rb < p.S;
#pragma unroll
    for (int jj = 0; jj < kSlice / 8; ++jj) {
      if (col0 + 8 * jj + 2 * tq >= p.Dv) break;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        if (!(half ? row_b : row_a)) continue;
        const float inv = half ? inv_b : inv_a;
        const float x0 = hacc[4 * jj + 2 * half] * inv, x1 = hacc[4 * jj + 2 * half + 1] * inv;
        const uint32_t word = pack(x0, x1);
        const size_t at = (half ? out_b : out_a) + 8 * jj;
        *reinterpret_cast<uint32_t*>(static_cast<bf16*>(p.h) + at) = word;
        if (p.h_lo) {
          const float2 r = unpack(word);
          *reinterpret_cast<uint32_t*>(static_cast<bf16*>(p.h_lo) + at) = pack(x0 - r.x, x1 - r.y);
        }
      }
    }
    if (first_slice && tq == 0) {
      if (t0 + ra < p.S) p.dn[(size_t)bh * p.S + t0 + ra] = dn_a;
      if (t0 + rb < p.S) p.dn[(size_t)bh * p.S + t0 + rb] = dn_b;
    }
    wgmma::wait<0>();
    // Each warp issues its own share of a product that reads all of C_{k-1}: every warp
    // is past this chunk's products before C_k overwrites it.
    __syncthreads();
    write_state();
    wgmma::fence_shared_for_async();
    __syncthreads();  // C_k published; this chunk's buffer free for chunk + 2
  }

#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int d = 64 * mt + (i % 4 < 2 ? ra : rb), col = 8 * (i / 4) + 2 * tq + i % 2;
      if (d < p.Dk && col0 + col < p.Dv) p.final_mat[bh * mat + (size_t)d * p.Dv + col0 + col] = cacc[mt][i];
    }
  if (first_slice && nd < p.Dk) p.final_vec[(size_t)bh * p.Dk + nd] = n_d;
}

}  // namespace

bool mlstm_wgmma_supported(int Dk, int Dv) {
  return Dk % 8 == 0 && Dv % 8 == 0 && Dk >= 8 && Dv >= 8 && Dk <= kD && Dv <= kD &&
         wgmma::current_device_is_sm90();
}

void mlstm_fused_forward_wgmma(const FusedForwardParams& p, cudaStream_t stream) {
  const int smem = static_cast<int>(sizeof(Smem));
  cudaFuncSetAttribute(mlstm_wgmma_forward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  mlstm_wgmma_forward_kernel<<<dim3((p.Dv + kSlice - 1) / kSlice, p.BH), kThreads, smem, stream>>>(p);
}

}  // namespace xd::kernels
