// Attention of a prompt chunk over cached keys plus its own: the window + sinks of
// the student (window_attention_continue) and the teacher's causal attention over a
// KV cache (flash_attention_suffix).
#include "xdistill/infer/window_prefill.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "ops/window_heads.h"
#ifdef XDISTILL_WITH_CUDA
#include "ops/window_attention_cuda.h"
#endif
#include "xdistill/util/error.h"

namespace xd::infer {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// visible[t, j] for query positions t0.. and key positions `key_pos` (window rule).
at::Tensor window_mask(int64_t t0, int64_t T, const at::Tensor& key_pos, int64_t window, int64_t sinks) {
  const auto t = at::arange(t0, t0 + T, key_pos.options()).unsqueeze(-1);
  const auto j = key_pos.unsqueeze(0);
  return (j <= t) & ((t - j < window) | (j < sinks));
}

// Keys/values of the cache in position order: the ring's positions r0..L0-1, and the
// sink positions below r0 (the others are in the ring already).
struct CachedKeys {
  at::Tensor k, v, pos;  // [B,H,n,D], [B,H,n,D], [n] long
};

CachedKeys cached_keys(const ops::WindowCache& c) {
  const auto long_opts = c.ring_k.options().dtype(at::kLong);
  const int64_t L0 = c.length, r0 = std::max<int64_t>(0, L0 - c.window), old_sinks = std::min(c.sinks, r0);
  const auto ring_pos = at::arange(r0, L0, long_opts);
  const auto slots = ring_pos.remainder(c.window);
  CachedKeys out{c.ring_k.index_select(2, slots), c.ring_v.index_select(2, slots), ring_pos};
  if (old_sinks > 0) {
    out.k = at::cat({c.sink_k.narrow(2, 0, old_sinks), out.k}, 2);
    out.v = at::cat({c.sink_v.narrow(2, 0, old_sinks), out.v}, 2);
    out.pos = at::cat({at::arange(old_sinks, long_opts), ring_pos});
  }
  return out;
}

// The reference form: masked softmax in float32 over every cached and chunk key,
// blocked over queries to bound memory.
at::Tensor continue_masked(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const ops::WindowCache& c) {
  const auto ct = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t L0 = c.length, T = q.size(2);
  const CachedKeys cached = cached_keys(c);
  const int64_t H = q.size(1);
  const auto keys = ops::repeat_kv(at::cat({cached.k.to(ct), k.to(ct)}, 2), H);
  const auto values = ops::repeat_kv(at::cat({cached.v.to(ct), v.to(ct)}, 2), H);
  const auto key_pos = at::cat({cached.pos, at::arange(L0, L0 + T, cached.pos.options())});
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  std::vector<at::Tensor> outs;
  for (int64_t b0 = 0; b0 < T; b0 += 256) {
    const int64_t n = std::min<int64_t>(256, T - b0);
    const auto mask = window_mask(L0 + b0, n, key_pos, c.window, c.sinks);
    auto logits = at::matmul(q.narrow(2, b0, n).to(ct), keys.transpose(-1, -2)) * scale;
    logits = logits.masked_fill(~mask, -kInf);
    outs.push_back(at::matmul(at::softmax(logits, -1), values));
  }
  return at::cat(outs, 2).to(q.scalar_type());
}

// Flash attention over the ring and the chunk (contiguous positions r0..L0+T-1,
// left window), merged with the sink keys outside each query's window.
at::Tensor continue_flash(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const ops::WindowCache& c) {
  const int64_t L0 = c.length, T = q.size(2), W = c.window;
  const int64_t r0 = std::max<int64_t>(0, L0 - W);
  const auto long_opts = c.ring_k.options().dtype(at::kLong);
  const auto slots = at::arange(r0, L0, long_opts).remainder(W);
  const auto keys = at::cat({c.ring_k.index_select(2, slots), k}, 2), values = at::cat({c.ring_v.index_select(2, slots), v}, 2);
  at::Tensor lse;
  at::Tensor out = flash_attention_suffix(q, keys, values, W, &lse);  // [B,H,T,D], lse [B,H,T]
  // Sink positions j < sinks seen by query t only when t - j >= W: cached ones and,
  // when the row is still short, the chunk's first keys.
  const int64_t ns = std::min(c.sinks, L0 + T), from_cache = std::min(ns, L0);
  if (ns == 0 || L0 + T - 1 < W) return out;
#ifdef XDISTILL_WITH_CUDA
  if (from_cache == ns) {  // every sink is cached: one kernel merges them in place
    at::Tensor rows_out = out.transpose(1, 2), lse_rows = lse.contiguous();  // flash's own [B,T,H,D]
    if (ops::detail::merge_cached_sinks(q.transpose(1, 2), rows_out, lse_rows, c.sink_k.narrow(2, 0, ns),
                                        c.sink_v.narrow(2, 0, ns), L0, W))
      return out;
  }
#endif
  auto sk = c.sink_k.narrow(2, 0, from_cache), sv = c.sink_v.narrow(2, 0, from_cache);
  if (ns > from_cache) {
    sk = at::cat({sk, k.narrow(2, 0, ns - from_cache)}, 2);
    sv = at::cat({sv, v.narrow(2, 0, ns - from_cache)}, 2);
  }
  // The few sink rows repeated to the query heads (a group shares its key/value head).
  sk = ops::repeat_kv(sk, q.size(1));
  sv = ops::repeat_kv(sv, q.size(1));
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto logits = at::matmul(q.to(at::kFloat), sk.to(at::kFloat).transpose(-1, -2)) * scale;  // [B,H,T,ns]
  const auto t = at::arange(L0, L0 + T, long_opts).unsqueeze(-1), j = at::arange(ns, long_opts).unsqueeze(0);
  logits = logits.masked_fill(t - j < W, -kInf);
  const auto lse_s = at::logsumexp(logits, -1);  // -inf where no sink is visible
  const auto lse_safe = at::where(at::isinf(lse_s), at::zeros_like(lse_s), lse_s);
  const auto o_s = at::matmul(at::exp(logits - lse_safe.unsqueeze(-1)), sv.to(at::kFloat));
  const auto lse_all = at::logaddexp(lse, lse_s);
  const auto merged = out.to(at::kFloat) * at::exp(lse - lse_all).unsqueeze(-1) +
                      o_s * at::exp(lse_s - lse_all).unsqueeze(-1);
  return merged.to(q.scalar_type());
}

}  // namespace

bool flash_attention_supported(const at::Tensor& q) {
  const auto t = q.scalar_type();
  return q.is_cuda() && (t == at::kBFloat16 || t == at::kHalf) && q.size(-1) % 8 == 0 && q.size(-1) <= 256;
}

at::Tensor flash_attention_suffix(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                                  at::Tensor* lse) {
  XD_CHECK(flash_attention_supported(q), "flash_attention_suffix: needs CUDA bf16/fp16 with head_dim % 8 == 0");
  const int64_t T = q.size(2), L = k.size(2);
  XD_CHECK(L >= T, "flash_attention_suffix: ", L, " keys for ", T, " queries");
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  // Flash attention takes [B,S,H,D] with a unit last stride; its causal mask is
  // aligned to the bottom right, i.e. query i sits at key position L - T + i.
  auto qb = q.transpose(1, 2), kb = k.transpose(1, 2), vb = v.transpose(1, 2);
  if (qb.stride(-1) != 1) qb = qb.contiguous();
  if (kb.stride(-1) != 1) kb = kb.contiguous();
  if (vb.stride(-1) != 1) vb = vb.contiguous();
  auto result = at::_flash_attention_forward(qb, kb, vb, c10::nullopt, c10::nullopt, T, L, 0.0, /*is_causal=*/true,
                                             /*return_debug_mask=*/false, scale,
                                             window > 0 ? c10::optional<int64_t>(window - 1) : c10::nullopt,
                                             window > 0 ? c10::optional<int64_t>(0) : c10::nullopt);
  if (lse) *lse = std::get<1>(result).narrow(2, 0, T);
  return std::get<0>(result).transpose(1, 2);
}

at::Tensor window_attention_continue(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     ops::WindowCache& cache) {
  const int64_t Hk = cache.ring_k.size(1);
  XD_CHECK(q.dim() == 4 && k.dim() == 4 && k.sizes() == v.sizes() && q.size(0) == cache.ring_k.size(0) &&
               k.size(0) == q.size(0) && k.size(1) == Hk && k.size(2) == q.size(2) && q.size(1) % Hk == 0 &&
               q.size(3) == cache.ring_k.size(3) && k.size(3) == q.size(3),
           "window_attention_continue: q ", q.sizes(), " must be [", cache.ring_k.size(0), ",H,T,",
           cache.ring_k.size(3), "] with H a multiple of the cache's ", Hk, " key/value heads, and k, v ", k.sizes(),
           " [", cache.ring_k.size(0), ",", Hk, ",T,", cache.ring_k.size(3), "]");
  at::NoGradGuard no_grad;
  const auto dtype = cache.ring_k.scalar_type();
  const at::Tensor out = flash_attention_supported(q) && q.scalar_type() == dtype && k.scalar_type() == dtype &&
                                 v.scalar_type() == dtype
                             ? continue_flash(q, k, v, cache)
                             : continue_masked(q, k, v, cache);
  cache.append(k, v);
  return out;
}

}  // namespace xd::infer
