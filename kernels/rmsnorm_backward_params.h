// The backward of RMSNorm for training (no torch headers); the forward is the row
// kernel of decode_norm_mlp.cu. With n = x * r, r = rsqrt(mean(x^2) + eps) per row:
//   Llama/Qwen  y = w * round(n):  g_n = grad * w
//   OLMo        y = round(w * n):  g_n = grad * w
//   dx = r * g_n - x * r^3 / cols * sum_j g_n[j] x[j]   (float32, rounded once)
//   dw partial sums over each block's rows: sum_rows grad * n (round(n) for Llama/Qwen)
// One block per run of rows; a row sits in registers between its sums and dx.
#pragma once
#include <cuda_runtime.h>

#include "student_decode_step_params.h"

namespace xd::kernels {

struct RmsNormBackwardParams {
  const void* x;       // [rows, cols] contiguous
  const void* grad;    // [rows, cols] contiguous
  const void* weight;  // [cols]
  void* grad_x;        // [rows, cols] contiguous
  float* grad_w_partial;  // [blocks, cols] float32: one row of sums per block (summed by the caller)
  DecodeDtype dtype;
  int rows, cols, rows_per_block;
  float eps;
  bool weight_in_fp32;
};

// Whether the kernel covers rows of `cols` (a multiple of 16 bytes, at most 8,192 bf16 elements).
bool rmsnorm_backward_supports(DecodeDtype dtype, int cols);
// Blocks the launch uses for `rows` rows of rows_per_block (the partial sums' first dimension).
int rmsnorm_backward_blocks(int rows, int rows_per_block);
void rmsnorm_backward(const RmsNormBackwardParams& p, cudaStream_t stream);

}  // namespace xd::kernels
