// Plain-ATen forms of the mLSTM cell (spec: shared/spec/mlstm.md): the oracles for
// the kernels and the CPU implementation. Each is differentiable by ATen autograd
// and computes in the dtype of its inputs (float32 or float64; 16-bit inputs are
// computed in float32). All three use the same stabiliser m as the recurrent
// definition (m_0 = 0 without an initial state), so they agree to rounding.
#pragma once
#include "xdistill/ops/mlstm.h"

namespace xd::ops::reference {

std::pair<at::Tensor, MlstmState> mlstm_recurrent(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                  const at::Tensor& i, const at::Tensor& f,
                                                  const c10::optional<MlstmState>& initial = c10::nullopt);

// Quadratic in S; memory B*H*S*S.
std::pair<at::Tensor, MlstmState> mlstm_parallel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                 const at::Tensor& i, const at::Tensor& f,
                                                 const c10::optional<MlstmState>& initial = c10::nullopt);

// Chunks of chunk_size (any S: the last chunk is shorter).
std::pair<at::Tensor, MlstmState> mlstm_chunkwise(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                  const at::Tensor& i, const at::Tensor& f,
                                                  const c10::optional<MlstmState>& initial = c10::nullopt,
                                                  int64_t chunk_size = 64);

}  // namespace xd::ops::reference
