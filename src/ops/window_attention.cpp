// xd::ops::window_attention: checks, the CPU/CUDA dispatch, and the generation cache.
#include "xdistill/ops/window_attention.h"

#include <ATen/ATen.h>

#include <cmath>

#include "ops/shape_text.h"
#include "xdistill/util/error.h"
#ifdef XDISTILL_WITH_CUDA
#include "ops/window_attention_cuda.h"
#endif

namespace xd::ops {
namespace {

void check_qkv(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  XD_CHECK(q.dim() == 4, op, ": q must be [B,H,S,D], got ", shape_of(q));
  XD_CHECK(k.dim() == 4 && k.sizes() == v.sizes() && k.size(0) == q.size(0) && k.size(2) == q.size(2) &&
               k.size(3) == q.size(3) && k.size(1) >= 1 && q.size(1) % k.size(1) == 0,
           op, ": k ", shape_of(k), " and v ", shape_of(v), " must be [B,Hk,S,D] like q ", shape_of(q),
           " with Hk dividing H");
  XD_CHECK(q.scalar_type() == k.scalar_type() && q.scalar_type() == v.scalar_type(), op,
           ": q, k, v must share a dtype; got ", q.scalar_type(), ", ", k.scalar_type(), ", ", v.scalar_type());
  XD_CHECK(at::isFloatingType(q.scalar_type()), op, ": q, k, v must be floating point, got ", q.scalar_type());
  XD_CHECK(k.device() == q.device() && v.device() == q.device(), op, ": q, k, v must be on one device; got ",
           q.device(), ", ", k.device(), ", ", v.device());
}

// TrainingForwardScope's state, per thread.
thread_local bool training_forward = false;

}  // namespace

TrainingForwardScope::TrainingForwardScope() : previous_(training_forward) { training_forward = true; }
TrainingForwardScope::~TrainingForwardScope() { training_forward = previous_; }
bool TrainingForwardScope::active() { return training_forward; }

at::Tensor window_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                            int64_t sinks) {
  check_qkv("window_attention", q, k, v);
  XD_CHECK(window >= 1, "window_attention: window must be >= 1, got ", window);
  XD_CHECK(sinks >= 0, "window_attention: sinks must be >= 0, got ", sinks);
  if (q.size(2) == 0) return at::empty_like(q);
  if (q.is_cpu()) return reference::window_attention_blocked(q, k, v, window, sinks);
  XD_CHECK(q.is_cuda(), "window_attention: unsupported device ", q.device(), " (CPU or CUDA)");
#ifdef XDISTILL_WITH_CUDA
  if (detail::window_attention_cuda_supports(q)) return detail::window_attention_cuda(q, k, v, window, sinks);
  // float32/float64 or head dims flash attention does not take: the reference, on the GPU.
  return reference::window_attention_blocked(q, k, v, window, sinks);
#else
  throw Error("window_attention: unsupported device " + q.device().str() +
              ": this build has no CUDA kernels (XDISTILL_CUDA=OFF)");
#endif
}

WindowCache::WindowCache(int64_t batch, int64_t heads, int64_t head_dim, int64_t window_, int64_t sinks_,
                         const at::TensorOptions& options)
    : window(window_), sinks(sinks_) {
  XD_CHECK(window >= 1 && sinks >= 0, "WindowCache: window must be >= 1 and sinks >= 0, got ", window, ", ", sinks);
  sink_k = at::zeros({batch, heads, sinks, head_dim}, options);
  sink_v = at::zeros_like(sink_k);
  ring_k = at::zeros({batch, heads, window, head_dim}, options);
  ring_v = at::zeros_like(ring_k);
}

void WindowCache::append(const at::Tensor& k, const at::Tensor& v) {
  XD_CHECK(k.dim() == 4 && k.sizes() == v.sizes() && k.size(0) == ring_k.size(0) && k.size(1) == ring_k.size(1) &&
               k.size(3) == ring_k.size(3),
           "WindowCache::append: k ", shape_of(k), " and v ", shape_of(v), " must be [", ring_k.size(0), ",",
           ring_k.size(1), ",T,", ring_k.size(3), "]");
  const int64_t T = k.size(2);
  const auto kc = k.to(ring_k.scalar_type()), vc = v.to(ring_k.scalar_type());
  const auto long_opts = ring_k.options().dtype(at::kLong);
  // Sinks: the first `sinks` positions of the row.
  if (length < sinks) {
    const int64_t n = std::min(sinks - length, T);
    const auto slots = at::arange(length, length + n, long_opts);
    sink_k.index_copy_(2, slots, kc.narrow(2, 0, n));
    sink_v.index_copy_(2, slots, vc.narrow(2, 0, n));
  }
  // Ring: only the last `window` of the new tokens can still be seen.
  const int64_t keep = std::min(window, T);
  const auto slots = at::arange(length + T - keep, length + T, long_opts).remainder(window);
  ring_k.index_copy_(2, slots, kc.narrow(2, T - keep, keep));
  ring_v.index_copy_(2, slots, vc.narrow(2, T - keep, keep));
  length += T;
}

at::Tensor window_attention_step(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, WindowCache& cache) {
  check_qkv("window_attention_step", q, k, v);
  XD_CHECK(q.size(2) == 1, "window_attention_step: one token per call, got S=", q.size(2));
  at::NoGradGuard no_grad;
  cache.append(k, v);
  const int64_t t = cache.length - 1;  // this token's position
  // The ring holds positions max(0, t-window+1)..t; sinks are added only when
  // they have left the window (t - j >= window), so nothing is counted twice.
  const int64_t in_ring = std::min(t + 1, cache.window);
  const int64_t old_sinks = std::clamp<int64_t>(t - cache.window + 1, 0, cache.sinks);
  auto keys = cache.ring_k.narrow(2, 0, in_ring), values = cache.ring_v.narrow(2, 0, in_ring);
  if (old_sinks > 0) {
    keys = at::cat({cache.sink_k.narrow(2, 0, old_sinks), keys}, 2);
    values = at::cat({cache.sink_v.narrow(2, 0, old_sinks), values}, 2);
  }
  // Query heads grouped by key/value head: [B,Hk,G,D] against [B,Hk,n,D].
  const int64_t B = q.size(0), H = q.size(1), Hk = k.size(1), D = q.size(3);
  const auto ct = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const auto qg = q.to(ct).reshape({B, Hk, H / Hk, D});
  const auto logits = at::matmul(qg, keys.to(ct).transpose(-1, -2)) * scale;
  return at::matmul(at::softmax(logits, -1), values.to(ct)).reshape({B, H, 1, D}).to(q.scalar_type());
}

}  // namespace xd::ops
