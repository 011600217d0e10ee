// Grouped-query attention helpers (the window operator, the student's hybrid core,
// the decode step): key/value heads repeated to the query heads (as Hugging Face's
// repeat_kv) and the reverse, gradients summed over each group of query heads.
#pragma once
#include <ATen/ATen.h>

namespace xd::ops {

// x [B,Hk,S,D] -> [B,H,S,D], head h = x's head h / (H/Hk). Differentiable (expand).
inline at::Tensor repeat_kv(const at::Tensor& x, int64_t heads) {
  const int64_t kv = x.size(1);
  if (kv == heads) return x;
  const int64_t B = x.size(0), S = x.size(2), D = x.size(3);
  return x.unsqueeze(2).expand({B, kv, heads / kv, S, D}).reshape({B, heads, S, D});
}

// x [B,H,S,D] -> [B,Hk,S,D], summing the H/Hk query heads of each group.
inline at::Tensor sum_groups(const at::Tensor& x, int64_t kv_heads) {
  const int64_t H = x.size(1);
  if (kv_heads == H) return x;
  return x.reshape({x.size(0), kv_heads, H / kv_heads, x.size(2), x.size(3)}).sum(2);
}

}  // namespace xd::ops
