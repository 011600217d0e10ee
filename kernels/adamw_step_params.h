// One AdamW update of one trained tensor with fp32 master weights (no torch headers),
// in a single pass over memory: the gradient (float32, bfloat16 or float16, scaled by
// the clipping coefficient), the master and both moments are read once, and the
// master, the moments and the model's low-precision copy are written once.
// The arithmetic is that of ATen's fused AdamW (decoupled weight decay first):
//   w -= lr * wd * w
//   m  = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
//   w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),   bc_i = 1 - b_i^step
#pragma once
#include <cuda_runtime.h>

#include "student_decode_step_params.h"

namespace xd::kernels {

struct AdamWStepParams {
  float* master;      // [n] the parameter itself when it is float32
  float* exp_avg;     // [n]
  float* exp_avg_sq;  // [n]
  const void* grad;   // [n] in grad_dtype; null: a zero gradient (the loss did not reach it)
  DecodeDtype grad_dtype;
  void* param;  // [n] in param_dtype, written from the master; null when master is the parameter
  DecodeDtype param_dtype;
  long long n;
  float lr, beta1, beta2, eps, weight_decay;
  float grad_scale;            // the clipping coefficient (1 without clipping)
  float bias_correction1;      // 1 - beta1^step
  float bias_correction2_sqrt; // sqrt(1 - beta2^step)
};

void adamw_step(const AdamWStepParams& p, cudaStream_t stream);

}  // namespace xd::kernels
