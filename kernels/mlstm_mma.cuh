// Warp-level tensor-core helpers for the bf16 mLSTM kernels (mlstm_mma_*.cu):
// mma.sync m16n8k16 (bf16 operands, fp32 accumulators), ldmatrix fragment loads
// from bf16 shared-memory tiles, cp.async tile loads, and the split of an fp32
// value into two bf16 parts (hi + lo, about 16 significant bits) for operands
// that are fp32 intermediates (chunk states, weighted scores).
//
// Fragment layout of m16n8k16 (g = lane / 4, t = lane % 4):
//   A (16 x 16): a0 = (g, 2t..2t+1), a1 = (g+8, 2t..), a2 = (g, 2t+8..), a3 = (g+8, 2t+8..)
//   B (16 x 8):  b0 = (k 2t..2t+1, n g), b1 = (k 2t+8..2t+9, n g)
//   C (16 x 8):  c0 = (g, 2t), c1 = (g, 2t+1), c2 = (g+8, 2t), c3 = (g+8, 2t+1)
// Tiles are row-major bf16 with a leading dimension that is a multiple of 8
// elements (16-byte rows for ldmatrix) padded by 8 (rows fall on different banks).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace xd::kernels::mma {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ uint32_t pack(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ float2 unpack(uint32_t x) {
  const __nv_bfloat162 v = *reinterpret_cast<const __nv_bfloat162*>(&x);
  return __bfloat1622float2(v);
}

// (x0, x1) = hi + lo, each a bf16 pair.
__device__ __forceinline__ void split2(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
  const float2 hf = __bfloat1622float2(h);
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = pack(x0 - hf.x, x1 - hf.y);
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

// A fragment of rows m0..m0+15, columns k0..k0+15 of a tile stored [m][k].
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16* tile, int ld, int m0, int k0) {
  const int lane = threadIdx.x % 32;
  ldsm_x4(a, tile + (m0 + lane % 16) * ld + k0 + (lane / 16) * 8);
}

// A fragment (rows m0.., columns k0..) of A = X^T, with X stored [k][m].
__device__ __forceinline__ void load_a_trans(uint32_t (&a)[4], const bf16* x, int ld, int m0, int k0) {
  const int lane = threadIdx.x % 32, idx = lane / 8, r = lane % 8;
  ldsm_x4_trans(a, x + (k0 + r + (idx / 2) * 8) * ld + m0 + (idx % 2) * 8);
}

// B fragments of two 8-column tiles (n0.., n0+8..), rows k0..k0+15, with B stored
// transposed, [n][k]: b[0], b[1] for columns n0..n0+7, b[2], b[3] for n0+8..
__device__ __forceinline__ void load_b_nk(uint32_t (&b)[4], const bf16* tile, int ld, int n0, int k0) {
  const int lane = threadIdx.x % 32, idx = lane / 8, r = lane % 8;
  ldsm_x4(b, tile + (n0 + r + (idx / 2) * 8) * ld + k0 + (idx % 2) * 8);
}

// The same with B stored [k][n].
__device__ __forceinline__ void load_b_kn(uint32_t (&b)[4], const bf16* tile, int ld, int n0, int k0) {
  const int lane = threadIdx.x % 32, idx = lane / 8, r = lane % 8;
  ldsm_x4_trans(b, tile + (k0 + r + (idx % 2) * 8) * ld + n0 + (idx / 2) * 8);
}

// A fragment (k-step kk) from accumulators c[2kk], c[2kk+1] of the same warp
// rows (the score-to-operand reuse of flash attention), split into hi + lo.
__device__ __forceinline__ void acc_to_a_split(const float (&c0)[4], const float (&c1)[4], uint32_t (&hi)[4],
                                               uint32_t (&lo)[4]) {
  split2(c0[0], c0[1], hi[0], lo[0]);
  split2(c0[2], c0[3], hi[1], lo[1]);
  split2(c1[0], c1[1], hi[2], lo[2]);
  split2(c1[2], c1[3], hi[3], lo[3]);
}

// 16-byte global -> shared copy, zero-filled when !valid.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// rows x DMAX bf16 tile (leading dimension ld) <- src rows t0.. of a [S][D]
// matrix; zero beyond S or D (D a multiple of 8). All threads of the block call it.
template <int DMAX, int NTHREADS>
__device__ __forceinline__ void tile_async(bf16* dst, int ld, const bf16* src, int t0, int rows, int S, int D) {
  constexpr int kVecs = DMAX / 8;
  for (int idx = threadIdx.x; idx < rows * kVecs; idx += NTHREADS) {
    const int t = idx / kVecs, d = (idx % kVecs) * 8;
    const bool valid = t0 + t < S && d < D;
    cp_async16(dst + t * ld + d, valid ? src + (size_t)(t0 + t) * D + d : src, valid);
  }
}

// DMAX x DMAX fp32 matrix [R][Cn] (row stride Cn) -> hi/lo bf16 tiles [DMAX][ld], zero beyond R, Cn
// (Cn a multiple of 4, rows 16-byte aligned).
template <int DMAX, int NTHREADS>
__device__ __forceinline__ void split_matrix(bf16* hi, bf16* lo, int ld, const float* src, int R, int Cn) {
  constexpr int kVecs = DMAX / 4;
#pragma unroll 4
  for (int idx = threadIdx.x; idx < DMAX * kVecs; idx += NTHREADS) {
    const int r = idx / kVecs, c = (idx % kVecs) * 4;
    float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < R && c < Cn) x = __ldg(reinterpret_cast<const float4*>(src + (size_t)r * Cn + c));
    uint2 h, l;
    split2(x.x, x.y, h.x, l.x);
    split2(x.z, x.w, h.y, l.y);
    *reinterpret_cast<uint2*>(hi + r * ld + c) = h;
    *reinterpret_cast<uint2*>(lo + r * ld + c) = l;
  }
}

// split_matrix in two steps, so that the loads overlap independent work: load()
// issues each thread's share of the DMAX x DMAX fp32 matrix into registers,
// store_split() writes the hi/lo tiles later.
template <int DMAX, int NTHREADS>
struct MatrixPrefetch {
  static constexpr int kVecs = DMAX / 4;
  static constexpr int kPer = DMAX * kVecs / NTHREADS;
  static_assert(DMAX * kVecs % NTHREADS == 0, "prefetch split");
  float4 x[kPer];

  __device__ __forceinline__ void load(const float* src, int R, int Cn) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int idx = threadIdx.x + i * NTHREADS, r = idx / kVecs, c = (idx % kVecs) * 4;
      x[i] = (r < R && c < Cn) ? __ldg(reinterpret_cast<const float4*>(src + (size_t)r * Cn + c))
                               : make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }

  __device__ __forceinline__ void store_split(bf16* hi, bf16* lo, int ld) const {
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int idx = threadIdx.x + i * NTHREADS, r = idx / kVecs, c = (idx % kVecs) * 4;
      uint2 h, l;
      split2(x[i].x, x[i].y, h.x, l.x);
      split2(x[i].z, x[i].w, h.y, l.y);
      *reinterpret_cast<uint2*>(hi + r * ld + c) = h;
      *reinterpret_cast<uint2*>(lo + r * ld + c) = l;
    }
  }
};

}  // namespace xd::kernels::mma
