// The small row kernels around the projections (no torch headers), for decode steps
// and inference prefills: RMSNorm with the residual add in front, SiLU(gate) * up, RoPE. Rounding follows the
// ATen modules (src/models/attention.cpp): the sum x + y, SiLU and the product are
// rounded to the model dtype like the tensors ATen would materialise.
#pragma once
#include <cuda_runtime.h>

#include "student_decode_step_params.h"

namespace xd::kernels {

// h = x (+ y), written to `sum` when y is given; out = RMSNorm(h) * weight:
//   n = h * rsqrt(mean(h^2) + eps) in fp32; out = w * n (weight_in_fp32, OLMo) or
//   w * round(n) (Llama/Qwen). Rows contiguous, `cols` elements each.
struct DecodeRmsNormParams {
  const void* x;
  const void* y;  // may be null
  void* sum;      // written when y is given
  void* out;
  const void* weight;  // [cols], model dtype
  DecodeDtype dtype;
  int rows, cols;
  float eps;
  bool weight_in_fp32;
};

// out[r, j] = round(round(silu(g)) * u) with g = gate[r, j], u = up[r, j].
struct DecodeSiluMulParams {
  const void* gate;  // [rows, cols], contiguous
  const void* up;    // [rows, cols], contiguous
  void* out;         // [rows, cols]
  DecodeDtype dtype;
  int rows, cols;
};

// RoPE of q or k for a run of positions (inference prefill): out = x cos + r sin with
// r = (-x2, x1), rounded as models::apply_rotary's ATen ops (float_cast.cuh rope<T>).
// x and out [B,H,T,D] by element strides (unit last stride); cos, sin [T,D] float32.
struct RopeRowsParams {
  const void* x;
  void* out;
  long long x_sb, x_sh, x_st, out_sb, out_sh, out_st;
  const float* cos;
  const float* sin;
  DecodeDtype dtype;
  int B, H, T, D;
  bool in_fp32;
};

constexpr int kDecodeNormMaxVectorsPerThread = 4;  // cols <= 512 threads x 4 x 16 bytes
bool decode_rmsnorm_supports(DecodeDtype dtype, int cols);
void decode_rmsnorm(const DecodeRmsNormParams& p, cudaStream_t stream);
void decode_silu_mul(const DecodeSiluMulParams& p, cudaStream_t stream);
void rope_rows(const RopeRowsParams& p, cudaStream_t stream);

}  // namespace xd::kernels
