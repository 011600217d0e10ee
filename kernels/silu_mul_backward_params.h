// The backward of the MLP's SiLU(gate) * up for training (no torch headers); the
// forward is decode_norm_mlp.cu's row kernel. All tensors contiguous, one dtype.
#pragma once
#include <cuda_runtime.h>

#include "student_decode_step_params.h"

namespace xd::kernels {

struct SiluMulBackwardParams {
  const void* gate;
  const void* up;
  const void* grad;
  void* d_gate;
  void* d_up;
  DecodeDtype dtype;
  long long n;
};

void silu_mul_backward(const SiluMulBackwardParams& p, cudaStream_t stream);

}  // namespace xd::kernels
