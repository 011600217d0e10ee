// Internal: the CUDA path of xd::ops::mlstm (src/ops/mlstm_cuda.cpp), compiled
// only when XDISTILL_WITH_CUDA. Inputs are already checked by mlstm.cpp.
#pragma once
#include "xdistill/ops/mlstm.h"

namespace xd::ops::detail {

// Whether the kernels cover this configuration (head dims, chunk size, dtypes).
bool mlstm_cuda_supports(const at::Tensor& q, const at::Tensor& v, const at::Tensor& i, const at::Tensor& f,
                         int64_t chunk_size);

std::pair<at::Tensor, MlstmState> mlstm_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                             const at::Tensor& i, const at::Tensor& f,
                                             const c10::optional<MlstmState>& initial, int64_t chunk_size);

}  // namespace xd::ops::detail
