// The torch side of the decode-step kernels: what they cover, and their launches.
#include "infer/step_kernels.h"

#include <ATen/ATen.h>

#include <cstdlib>
#include <string>

#include "xdistill/util/error.h"

#ifdef XDISTILL_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "ops/kernel_args.h"
#include "student_decode_step_params.h"
#endif

namespace xd::infer {

#ifdef XDISTILL_WITH_CUDA
namespace {

namespace xk = xd::kernels;

using namespace xd::ops::kernel_args;

// A [B,1,N] or [B,N] tensor whose rows are contiguous: the row stride in elements.
int64_t row_stride(const at::Tensor& t, const char* name) {
  XD_CHECK(t.stride(-1) == 1, "decode step: ", name, " must have a unit last stride");
  return t.stride(0);
}

xk::StudentDecodeStepParams mixer_params(const FusedMixerLayer& l, int64_t batch) {
  xk::StudentDecodeStepParams p{};
  p.feature_q = l.feature_q.data_ptr();
  p.feature_k = l.feature_k.data_ptr();
  p.gate_w = l.gate_w.data_ptr<float>();
  p.gate_b = l.gate_b.data_ptr<float>();
  p.ogate_u = l.ogate_u.data_ptr();
  p.ogate_b = l.ogate_b.data_ptr<float>();
  p.C = l.C.data_ptr<float>();
  p.n = l.n.data_ptr<float>();
  p.m = l.m.data_ptr<float>();
  p.ring_k = l.ring_k.data_ptr();
  p.ring_v = l.ring_v.data_ptr();
  p.sink_k = l.sink_k.data_ptr();
  p.sink_v = l.sink_v.data_ptr();
  p.dtype = dtype_or_throw(l.ring_k);
  p.B = static_cast<int>(batch);
  p.H = static_cast<int>(l.heads);
  p.Hk = static_cast<int>(l.kv_heads);
  p.D = static_cast<int>(l.head_dim);
  p.Df = static_cast<int>(l.feature_dim);
  p.Dk = static_cast<int>(l.key_dim);
  p.hidden = static_cast<int>(l.gate_w.size(1));
  p.window = static_cast<int>(l.window);
  p.sinks = static_cast<int>(l.sinks);
  p.pm_features = l.pm_features;
  p.rope_in_fp32 = l.rope_in_fp32;
  p.gate_softcap = static_cast<float>(l.gate_softcap);
  // As ATen divides by the double sqrt(Dk) cast to float (a reciprocal multiply).
  p.inv_sqrt_dk = 1.f / static_cast<float>(std::sqrt(static_cast<double>(l.key_dim)));
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(l.head_dim)));
  p.eps = static_cast<float>(l.eps);
  return p;
}

bool contiguous_all(std::initializer_list<const at::Tensor*> ts) {
  for (const at::Tensor* t : ts)
    if (!t->defined() || !t->is_contiguous() || !aligned16(*t)) return false;
  return true;
}

}  // namespace

bool fused_mixer_step_supported(const FusedMixerLayer& l, const at::Tensor& like) {
  xk::DecodeDtype dtype{};
  if (!like.is_cuda() || !dtype_of(like.scalar_type(), dtype)) return false;
  const int64_t D = l.head_dim;
  const bool power_of_two = D > 0 && (D & (D - 1)) == 0;
  if (!power_of_two || D < 32 || D > xk::kDecodeMaxHeadDim) return false;
  if (l.feature_dim < 1 || l.feature_dim > xk::kDecodeMaxFeatureDim || l.key_dim > xk::kDecodeMaxFeatureDim) return false;
  if (l.key_dim != (l.pm_features ? 2 : 1) * l.feature_dim) return false;
  if (l.kv_heads < 1 || l.heads % l.kv_heads != 0 || l.window < 1 || l.sinks < 0) return false;
  if (!contiguous_all({&l.feature_q, &l.feature_k, &l.gate_w, &l.gate_b, &l.ogate_u, &l.ogate_b, &l.C, &l.n, &l.m,
                       &l.ring_k, &l.ring_v, &l.sink_k, &l.sink_v}))
    return false;
  for (const at::Tensor* t : {&l.feature_q, &l.feature_k, &l.ogate_u, &l.ring_k, &l.ring_v, &l.sink_k, &l.sink_v})
    if (t->scalar_type() != like.scalar_type()) return false;
  for (const at::Tensor* t : {&l.gate_w, &l.gate_b, &l.ogate_b, &l.C, &l.n, &l.m})
    if (t->scalar_type() != at::kFloat) return false;
  if (l.ring_k.size(1) != l.kv_heads || l.ring_k.size(2) != l.window || l.sink_k.size(2) != l.sinks + 1) return false;
  xk::StudentDecodeStepParams p{};
  p.dtype = dtype;
  p.D = static_cast<int>(D);
  p.Dk = static_cast<int>(l.key_dim);
  p.window = static_cast<int>(l.window);
  p.sinks = static_cast<int>(l.sinks);
  return xk::student_decode_step_shared_bytes(p) <= xk::kDecodeMaxSharedBytes;
}

void prepare_fused_mixer_step(FusedMixerLayer& l, int64_t batch) {
  const char* kernel = std::getenv("XD_DECODE_STEP");
  l.two_role = kernel == nullptr || std::string(kernel) != "one_block";
  if (!l.two_role) return;
  const auto on = l.C.options();
  l.step_scratch = at::empty({xk::student_decode_step_scratch_floats(static_cast<int>(batch), static_cast<int>(l.heads),
                                                                    static_cast<int>(l.head_dim))},
                             on.dtype(at::kFloat));
  l.step_counters = at::zeros({batch * l.heads}, on.dtype(at::kInt));  // every launch leaves them zero
}

at::Tensor fused_mixer_step(FusedMixerLayer& l, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                            const at::Tensor& positions) {
  const int64_t B = q.size(0), H = l.heads, D = l.head_dim;
  XD_CHECK(q.size(-1) == H * D && k.size(-1) == l.kv_heads * D && v.size(-1) == l.kv_heads * D,
           "decode step: q/k/v widths ", q.size(-1), "/", k.size(-1), "/", v.size(-1), " do not fit ", H, " heads of ",
           D, " and ", l.kv_heads, " KV heads");
  XD_CHECK(cos.is_contiguous() && sin.is_contiguous() && cos.numel() == B * D && cos.scalar_type() == at::kFloat,
           "decode step: RoPE tables must be contiguous float32 [B, D]");
  XD_CHECK(positions.is_contiguous() && positions.scalar_type() == at::kLong && positions.numel() == B,
           "decode step: positions must be [B] int64");
  for (const at::Tensor* t : {&q, &k, &v, &x})
    XD_CHECK(t->scalar_type() == l.ring_k.scalar_type(), "decode step: mixed dtypes in the fused mixer step");
  const c10::cuda::CUDAGuard guard(q.device());
  at::Tensor out = at::empty({B, 1, H * D}, q.options());
  xk::StudentDecodeStepParams p = mixer_params(l, B);
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.x = x.data_ptr();
  p.q_sb = row_stride(q, "q");
  p.k_sb = row_stride(k, "k");
  p.v_sb = row_stride(v, "v");
  p.x_sb = row_stride(x, "x");
  p.out_sb = H * D;
  p.out = out.data_ptr();
  p.cos = cos.data_ptr<float>();
  p.sin = sin.data_ptr<float>();
  p.positions = positions.data_ptr<int64_t>();
  if (l.two_role) {
    XD_CHECK(l.step_counters.numel() == B * H && l.step_scratch.device() == q.device(),
             "decode step: the two-role kernel's buffers were made for ", l.step_counters.numel() / H,
             " rows on ", l.step_scratch.device(), ", not ", B, " on ", q.device());
    p.split_roles = true;
    p.scratch = l.step_scratch.data_ptr<float>();
    p.counters = reinterpret_cast<unsigned int*>(l.step_counters.data_ptr<int32_t>());
  }
  xk::student_decode_step(p, at::cuda::getCurrentCUDAStream());
  check_launch("student_decode_step");
  return out;
}

#else  // no CUDA kernels in this build

bool fused_mixer_step_supported(const FusedMixerLayer&, const at::Tensor&) { return false; }
void prepare_fused_mixer_step(FusedMixerLayer&, int64_t) {}
at::Tensor fused_mixer_step(FusedMixerLayer&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  throw Error("decode step: the fused mixer step needs a CUDA build");
}
#endif

}  // namespace xd::infer
