// Warpgroup tensor-core helpers (wgmma, sm_90a only): the first building block of the
// mLSTM redesign in kernels/README.md "What comes next" (a B operand read from shared
// memory once per warpgroup of four warps instead of once per warp, as mma.sync does).
//
// Operands in shared memory, K-major ("no swizzle", the interleaved layout): a tile of
// R rows x K columns (bf16) is made of core matrices of 8 rows x 8 columns, each 128
// contiguous bytes (row r at byte 16 r). The core matrix of row block i and column
// block j sits at i * sbo + j * lbo bytes from the tile's start: lbo steps along K
// (the "leading dimension byte offset"), sbo along the rows (the "stride dimension
// byte offset"). core_offset() places them with K blocks adjacent (lbo = 128 bytes).
//
// The accumulator fragment of wgmma m64nNk16 (fp32), warp w of the warpgroup, g =
// lane / 4, t = lane % 4: d[4 j + e] is row 16 w + g + 8 (e / 2), column 8 j + 2 t + e % 2,
// the mma.sync m16n8 layout repeated over the N / 8 column blocks.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace xd::kernels::wgmma {

constexpr int kCoreBytes = 128;  // one 8 x 8 bf16 core matrix

// Byte offset of element (row, col) of a K-major tile of `cols` columns (a multiple of 8).
__host__ __device__ constexpr uint32_t core_offset(int row, int col, int cols) {
  return static_cast<uint32_t>(((row / 8) * (cols / 8) + col / 8) * kCoreBytes + (row % 8) * 16 + (col % 8) * 2);
}

// The 64-bit shared-memory matrix descriptor, no swizzle: start address, lbo and sbo
// in 16-byte units (14 bits each), layout type 0 in bits 62-63.
__device__ __forceinline__ uint64_t descriptor(const void* smem_start, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_start));
  uint64_t d = 0;
  d |= static_cast<uint64_t>((addr >> 4) & 0x3FFF);
  d |= static_cast<uint64_t>((lbo_bytes >> 4) & 0x3FFF) << 16;
  d |= static_cast<uint64_t>((sbo_bytes >> 4) & 0x3FFF) << 32;
  return d;
}

// Shared-memory writes by the threads made visible to the async proxy that wgmma reads
// through (before the barrier that publishes them).
__device__ __forceinline__ void fence_shared_for_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Orders this thread's accumulator registers before the next wgmma reads them.
__device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// d (64 x 64, fp32) = a (64 x 16) b^T (b: 64 x 16, both K-major in shared memory)
// [+ d when accumulate]. Asynchronous: commit() and wait<0>() before reading d.
__device__ __forceinline__ void mma_m64n64k16(float (&d)[32], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "%32, %33, p, 1, 1, 0, 0;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(accumulate)));
}

}  // namespace xd::kernels::wgmma
