// Internal, CUDA builds: the model dtypes the row and decode-step kernels take, and
// the checks shared by their torch-side launchers.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "student_decode_step_params.h"
#include "xdistill/util/error.h"

namespace xd::ops::kernel_args {

namespace xk = xd::kernels;

inline bool dtype_of(at::ScalarType t, xk::DecodeDtype& out) {
  switch (t) {
    case at::kFloat: out = xk::DecodeDtype::f32; return true;
    case at::kBFloat16: out = xk::DecodeDtype::bf16; return true;
    case at::kHalf: out = xk::DecodeDtype::f16; return true;
    default: return false;
  }
}

inline xk::DecodeDtype dtype_or_throw(const at::Tensor& t) {
  xk::DecodeDtype d{};
  XD_CHECK(dtype_of(t.scalar_type(), d), "CUDA kernels: unsupported dtype ", t.scalar_type());
  return d;
}

// A dtype the kernels take (float32, bfloat16, float16).
inline bool supported_dtype(const at::Tensor& t) {
  xk::DecodeDtype d{};
  return dtype_of(t.scalar_type(), d);
}

// Whether environment variable `name` is set to `value` (the kernels' switches).
inline bool env_is(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, value) == 0;
}

inline bool aligned16(const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

inline void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw Error(std::string("CUDA kernel ") + what + " failed: " + cudaGetErrorString(e));
}


}  // namespace xd::ops::kernel_args
