// xd::ops::mlstm: input checks, then the one CPU/CUDA dispatch.
#include "xdistill/ops/mlstm.h"

#include <ATen/ATen.h>

#include <cmath>

#include "xdistill/ops/mlstm_reference.h"
#include "ops/shape_text.h"
#include "xdistill/util/error.h"
#ifdef XDISTILL_WITH_CUDA
#include "ops/mlstm_cuda.h"
#endif

namespace xd::ops {
namespace {

void check_same_device(const at::Tensor& ref, const at::Tensor& t, const char* name) {
  XD_CHECK(t.device() == ref.device(), "mlstm: '", name, "' is on ", t.device(), " but q is on ", ref.device());
}

void check_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& i,
                  const at::Tensor& f, const c10::optional<MlstmState>& initial) {
  XD_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "mlstm: q, k, v must be [B,H,S,D]; got q ", shape_of(q),
           ", k ", shape_of(k), ", v ", shape_of(v));
  const int64_t B = q.size(0), H = q.size(1), S = q.size(2), Dk = q.size(3), Dv = v.size(3);
  XD_CHECK(k.sizes() == q.sizes(), "mlstm: k ", shape_of(k), " must match q ", shape_of(q));
  XD_CHECK(v.size(0) == B && v.size(1) == H && v.size(2) == S, "mlstm: v ", shape_of(v), " must be [", B, ",", H,
           ",", S, ",Dv]");
  XD_CHECK(S > 0 && Dk > 0 && Dv > 0, "mlstm: empty input, q ", shape_of(q), ", v ", shape_of(v));
  for (const auto* g : {&i, &f})
    XD_CHECK(g->dim() == 3 && g->size(0) == B && g->size(1) == H && g->size(2) == S, "mlstm: gate ",
             (g == &i ? "i" : "f"), " ", shape_of(*g), " must be [", B, ",", H, ",", S, "]");
  XD_CHECK(q.scalar_type() == k.scalar_type() && q.scalar_type() == v.scalar_type(),
           "mlstm: q, k, v must share a dtype; got ", q.scalar_type(), ", ", k.scalar_type(), ", ", v.scalar_type());
  const auto qt = q.scalar_type();
  XD_CHECK(qt == at::kFloat || qt == at::kDouble || qt == at::kBFloat16 || qt == at::kHalf,
           "mlstm: q, k, v must be float32, float64, bfloat16 or float16; got ", qt);
  for (const auto* g : {&i, &f})
    XD_CHECK(g->scalar_type() == at::kFloat || g->scalar_type() == at::kDouble, "mlstm: gate ", (g == &i ? "i" : "f"),
             " must be float32 (or float64); got ", g->scalar_type());
  check_same_device(q, k, "k");
  check_same_device(q, v, "v");
  check_same_device(q, i, "i");
  check_same_device(q, f, "f");
  if (initial) {
    XD_CHECK(initial->C.defined() && initial->n.defined() && initial->m.defined(),
             "mlstm: the initial state must have C, n and m");
    XD_CHECK(initial->C.sizes() == at::IntArrayRef({B, H, Dk, Dv}), "mlstm: initial C ", shape_of(initial->C),
             " must be [", B, ",", H, ",", Dk, ",", Dv, "]");
    XD_CHECK(initial->n.sizes() == at::IntArrayRef({B, H, Dk}), "mlstm: initial n ", shape_of(initial->n),
             " must be [", B, ",", H, ",", Dk, "]");
    XD_CHECK(initial->m.sizes() == at::IntArrayRef({B, H}), "mlstm: initial m ", shape_of(initial->m), " must be [",
             B, ",", H, "]");
    check_same_device(q, initial->C, "initial C");
    check_same_device(q, initial->n, "initial n");
    check_same_device(q, initial->m, "initial m");
  }
}

}  // namespace

MlstmState mlstm_zero_state(int64_t batch, int64_t heads, int64_t dk, int64_t dv, const at::TensorOptions& options) {
  const auto o = options.dtype(at::kFloat);
  return {at::zeros({batch, heads, dk, dv}, o), at::zeros({batch, heads, dk}, o), at::zeros({batch, heads}, o)};
}

std::pair<at::Tensor, MlstmState> mlstm(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        const at::Tensor& i, const at::Tensor& f,
                                        const c10::optional<MlstmState>& initial, int64_t chunk_size) {
  check_inputs(q, k, v, i, f, initial);
  XD_CHECK(chunk_size == 64 || chunk_size == 128, "mlstm: chunk_size must be 64 or 128, got ", chunk_size);
  if (q.is_cpu()) return reference::mlstm_chunkwise(q, k, v, i, f, initial, chunk_size);
  XD_CHECK(q.is_cuda(), "mlstm: unsupported device ", q.device(), " (CPU or CUDA)");
#ifdef XDISTILL_WITH_CUDA
  if (detail::mlstm_cuda_supports(q, v, i, f, chunk_size))
    return detail::mlstm_cuda(q, k, v, i, f, initial, chunk_size);
  // Shapes the kernels do not cover (head dims above 128, float64) run the
  // reference chunkwise form on the GPU: same function, slower.
  return reference::mlstm_chunkwise(q, k, v, i, f, initial, chunk_size);
#else
  throw Error("mlstm: unsupported device " + q.device().str() + ": this build has no CUDA kernels (XDISTILL_CUDA=OFF)");
#endif
}

std::pair<at::Tensor, MlstmState> mlstm_step(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                             const at::Tensor& i, const at::Tensor& f, const MlstmState& state) {
  check_inputs(q, k, v, i, f, state);
  XD_CHECK(q.size(2) == 1, "mlstm_step: one token per call, got S=", q.size(2));
  // One recurrent step in plain ATen on the tensors' device (a handful of small
  // launches on CUDA; the state read dominates).
  at::NoGradGuard no_grad;
  auto [h, next] = reference::mlstm_recurrent(q, k, v, i, f, state);
  const auto st = state.C.scalar_type();
  return {h, MlstmState{next.C.to(st), next.n.to(st), next.m.to(st)}};
}

}  // namespace xd::ops
