// Row kernels of the training losses (no torch headers), so that neither stage
// materialises float32 copies of its largest tensors:
//  - Stage II's logits [R, V] (V = 128K at Llama shapes): the log-partition of each row
//    in one read, and the gradient of 0.9 CE + 0.1 top-k KL written once, in the
//    logits' dtype;
//  - Stage I's mixer outputs [R, F]: the squared error of each row, and its gradient.
// Rows are contiguous runs of `cols` elements, `row_stride` elements apart; every
// sum is float32.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "student_decode_step_params.h"

namespace xd::kernels {

// lse[r] = log sum_j exp(x[r, j]).
struct RowLogSumExpParams {
  const void* x;
  DecodeDtype dtype;
  long long rows, cols, row_stride;
  float* lse;  // [rows]
};

// grad[r, j] = ce_coef[r] (exp(x[r, j] - lse[r]) - [j == target[r]])
//            + topk_coef[r, i]   where j = topk_ids[r, i] (ids distinct within a row)
// in x's dtype, each element rounded once.
struct DistillLogitsBackwardParams {
  const void* x;
  void* grad;  // [rows, cols] contiguous
  DecodeDtype dtype;
  long long rows, cols, row_stride;
  const float* lse;        // [rows]
  const int64_t* target;   // [rows]
  const float* ce_coef;    // [rows]
  const int64_t* topk_ids; // [rows, k], may be null when k == 0
  const float* topk_coef;  // [rows, k]
  int k;
};

// Rows of a and b (one dtype):
//   row_squared_error:      sq[r] = sum_j (a[r, j] - b[r, j])^2
//   squared_error_backward: grad_a[r, j] = (*scale_device) * scale * (a[r, j] - b[r, j]) in
//                           a's dtype, grad_a contiguous; the upstream gradient is a device
//                           scalar (no host sync).
struct SquaredErrorParams {
  const void* a;
  const void* b;
  DecodeDtype dtype;
  long long rows, cols, a_row_stride, b_row_stride;
  float* sq;                  // [rows], forward
  void* grad_a;               // backward
  const float* scale_device;  // backward
  float scale;                // backward
};

void row_logsumexp(const RowLogSumExpParams& p, cudaStream_t stream);
void distill_logits_backward(const DistillLogitsBackwardParams& p, cudaStream_t stream);
void row_squared_error(const SquaredErrorParams& p, cudaStream_t stream);
void squared_error_backward(const SquaredErrorParams& p, cudaStream_t stream);

}  // namespace xd::kernels
