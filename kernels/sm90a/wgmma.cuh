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
// The same row-major core-block storage of a K x N matrix (rows along K) is the
// MN-major ("transposed") b operand of the m64n72 products below: lbo then steps 8 rows
// (N / 8 core matrices), sbo one core matrix (128 bytes).
//
// The accumulator fragment of wgmma m64nNk16 (fp32), warp w of the warpgroup, g =
// lane / 4, t = lane % 4: d[4 j + e] is row 16 w + g + 8 (e / 2), column 8 j + 2 t + e % 2,
// the mma.sync m16n8 layout repeated over the N / 8 column blocks.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace xd::kernels::wgmma {

constexpr int kCoreBytes = 128;  // one 8 x 8 bf16 core matrix

// Whether the current device runs sm_90a code (compute capability 9.0 exactly), asked
// of the driver once per device: the launchers' callers ask on every call.
inline bool current_device_is_sm90() {
  constexpr int kDevices = 64;
  static int known[kDevices] = {};  // 0 unknown, 1 yes, 2 no
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (dev < kDevices && known[dev] != 0) return known[dev] == 1;
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  const bool yes = major == 9 && minor == 0;
  if (dev < kDevices) known[dev] = yes ? 1 : 2;
  return yes;
}

// Byte offset of element (row, col) of a K-major tile of `cols` columns (a multiple of 8).
__host__ __device__ constexpr uint32_t core_offset(int row, int col, int cols) {
  return static_cast<uint32_t>(((row / 8) * (cols / 8) + col / 8) * kCoreBytes + (row % 8) * 16 + (col % 8) * 2);
}

// The same position in bf16 elements.
__host__ __device__ constexpr int core_index(int row, int col, int cols) {
  return static_cast<int>(core_offset(row, col, cols) / 2);
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

// The two readings of a tile of `cols` columns stored in core blocks (core_offset), from
// the element at `start`: K-major, for a product that contracts the tile's columns (lbo
// one core matrix along K, sbo a block of 8 rows), and MN-major, for one that contracts
// its rows (lbo a block of 8 K rows, sbo one core matrix along N). Every kernel builds its
// descriptors here; WgmmaCuda.* holds both readings to float64 products, and `swapped`
// (the probe's diagnostic only) exchanges the two offsets.
__device__ __forceinline__ uint64_t k_major_desc(const void* start, int cols, bool swapped = false) {
  const uint32_t along_k = kCoreBytes, along_rows = (cols / 8) * kCoreBytes;
  return swapped ? descriptor(start, along_rows, along_k) : descriptor(start, along_k, along_rows);
}
__device__ __forceinline__ uint64_t mn_major_desc(const void* start, int cols, bool swapped = false) {
  const uint32_t along_k = (cols / 8) * kCoreBytes, along_n = kCoreBytes;
  return swapped ? descriptor(start, along_n, along_k) : descriptor(start, along_k, along_n);
}

// Shared-memory writes by the threads made visible to the async proxy that wgmma reads
// through (before the barrier that publishes them).
__device__ __forceinline__ void fence_shared_for_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Orders this thread's accumulator registers before the next wgmma reads them.
__device__ __forceinline__ void fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
// Pins accumulator registers in place around a pipeline stage: without it the compiler
// may move their definitions (zeroing, scaling) in between the products, and ptxas then
// serialises every wgmma of the kernel.
template <int N>
__device__ __forceinline__ void fence_operands(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
__device__ __forceinline__ void commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// d (64 x 64, fp32) = a (64 x 16, K-major in shared memory) b, with b K-major (kTransB = 0:
// b^T is a 64 x 16 tile) or MN-major (1: b is the 16 x 64 matrix itself, stored row-major in
// core blocks, see below) [+ d when accumulate]. Asynchronous: commit() and wait<0>()
// before reading d.
template <int kTransB = 0>
__device__ __forceinline__ void mma_m64n64k16(float (&d)[32], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "%32, %33, p, 1, 1, 0, %35;\n"
      "}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(accumulate)), "n"(kTransB));
}

// The same 64 x 72 accumulator tile (a 64-column slice plus one 8-column block; the mLSTM
// forward keeps its normaliser there) with b MN-major ("transposed": core matrices of
// 8 K rows x 8 N columns, N contiguous; lbo steps 8 rows along K, sbo 8 columns along N):
// b is the K x 72 matrix itself, stored row-major in core blocks.
#define XD_WGMMA_D8(i)                                                                                     \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), \
      "+f"(d[i + 7])
#define XD_WGMMA_D36 \
  XD_WGMMA_D8(0), XD_WGMMA_D8(8), XD_WGMMA_D8(16), XD_WGMMA_D8(24), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35])
#define XD_WGMMA_D36_LIST                                                                                          \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
  "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35}, "

// d (64 x 72) [+]= a (64 x 16, K-major in shared memory) b (16 x 72, MN-major).
__device__ __forceinline__ void mma_m64n72k16_ss(float (&d)[36], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %38, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n72k16.f32.bf16.bf16 " XD_WGMMA_D36_LIST "%36, %37, p, 1, 1, 0, 1;\n"
      "}\n"
      : XD_WGMMA_D36
      : "l"(desc_a), "l"(desc_b), "r"(static_cast<int>(accumulate)));
}

// d (64 x 72) [+]= a (64 x 16 from registers: warp w holds rows 16 w.. in the mma.sync
// m16n8k16 A fragment, a[0..3] = (g, 2t), (g+8, 2t), (g, 2t+8), (g+8, 2t+8), bf16 pairs)
// b (16 x 72, MN-major). a must stay unchanged until the product is waited for.
__device__ __forceinline__ void mma_m64n72k16_rs(float (&d)[36], const uint32_t (&a)[4], uint64_t desc_b,
                                                 bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %41, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n72k16.f32.bf16.bf16 " XD_WGMMA_D36_LIST "{%36, %37, %38, %39}, %40, p, 1, 1, 1;\n"
      "}\n"
      : XD_WGMMA_D36
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(static_cast<int>(accumulate)));
}

// d (64 x 64) [+]= a (64 x 16 from registers, as above) b (16 x 64, MN-major).
__device__ __forceinline__ void mma_m64n64k16_rs(float (&d)[32], const uint32_t (&a)[4], uint64_t desc_b,
                                                 bool accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "setp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
      "{%32, %33, %34, %35}, %36, p, 1, 1, 1;\n"
      "}\n"
      : XD_WGMMA_D8(0), XD_WGMMA_D8(8), XD_WGMMA_D8(16), XD_WGMMA_D8(24)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(static_cast<int>(accumulate)));
}

#undef XD_WGMMA_D36_LIST
#undef XD_WGMMA_D36
#undef XD_WGMMA_D8

}  // namespace xd::kernels::wgmma
