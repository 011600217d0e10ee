// Fixed decoding buffers for a batch of rows of different lengths: chunked prefill
// of a group of rows and the one-token step of every row.
#include "infer/decode_state.h"

#include <cmath>
#include <limits>
#include <tuple>

#include "ops/row_kernels.h"
#include "ops/window_heads.h"
#include "xdistill/infer/window_prefill.h"
#include "xdistill/student/hybrid_mixer.h"
#include "xdistill/util/error.h"

namespace xd::infer {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();
// Teacher caches longer than this are allocated in whole blocks of it, and decode's
// product of the probabilities with V runs per block (a split over keys by hand: one
// product of G rows over the whole cache would keep only B*kv_heads blocks busy).
constexpr int64_t kKeyBlock = 256;

student::HybridMixer* hybrid_of(models::DecoderBlock& block) {
  return dynamic_cast<student::HybridMixer*>(block.mixer.get());
}

models::AttentionMixer& attention_of(models::DecoderBlock& block) {
  auto* mixer = dynamic_cast<models::AttentionMixer*>(block.mixer.get());
  XD_CHECK(mixer != nullptr, "inference: layer ", block.config.index, " has mixer '", block.config.mixer,
           "', which is neither attention nor the student's hybrid mixer");
  return *mixer;
}

bool pre_norm(const models::DecoderBlock& block) { return block.config.norm_placement == models::NormPlacement::pre; }


}  // namespace

DecodeState::DecodeState(std::shared_ptr<models::Decoder> model, int64_t batch, int64_t capacity, bool fused)
    : model_(std::move(model)), batch_(batch), capacity_(capacity) {
  XD_CHECK(batch >= 1 && capacity >= 1, "inference: batch and capacity must be positive");
  at::NoGradGuard no_grad;
  const auto opts = at::TensorOptions().device(model_->device()).dtype(model_->dtype());
  const auto f32 = opts.dtype(at::kFloat);
  for (const auto& block : model_->blocks()) {
    LayerBuffers b;
    const auto& c = block->config;
    if (auto* hybrid = hybrid_of(*block)) {
      student_ = true;
      const auto& s = hybrid->hybrid->config();
      const int64_t H = c.num_heads, D = c.head_dim, Dk = s.key_dim(D);
      b.C = at::zeros({batch, H, Dk, D}, f32);
      b.n = at::zeros({batch, H, Dk}, f32);
      b.m = at::zeros({batch, H}, f32);
      // One ring per key/value head: the query heads of a group read the same keys.
      b.ring_k = at::zeros({batch, c.num_kv_heads, s.window, D}, opts);
      b.ring_v = at::zeros_like(b.ring_k);
      b.sink_k = at::zeros({batch, c.num_kv_heads, s.sinks + 1, D}, opts);
      b.sink_v = at::zeros_like(b.sink_k);
      const auto& core = *hybrid->hybrid;
      b.gate_w = at::cat({core.igate_w, core.fgate_w}, 0).to(at::kFloat);
      b.gate_b = at::cat({core.igate_b, core.fgate_b}, 0).to(at::kFloat);
      b.ogate_u = core.ogate_w.to(model_->dtype()).unsqueeze(-1);
      b.ogate_b = core.ogate_b.to(at::kFloat).view({1, H, 1});
      if (fused) {
        FusedMixerLayer& f = b.fused;
        f.feature_q = core.feature_q.to(model_->dtype()).contiguous();
        f.feature_k = core.feature_k.to(model_->dtype()).contiguous();
        f.gate_w = b.gate_w;
        f.gate_b = b.gate_b;
        f.ogate_u = b.ogate_u.view({H, 3 * D});
        f.ogate_b = core.ogate_b.to(at::kFloat).contiguous();
        f.C = b.C;
        f.n = b.n;
        f.m = b.m;
        f.ring_k = b.ring_k;
        f.ring_v = b.ring_v;
        f.sink_k = b.sink_k;
        f.sink_v = b.sink_v;
        f.heads = H;
        f.kv_heads = c.num_kv_heads;
        f.head_dim = D;
        f.feature_dim = s.resolved_feature_dim(D);
        f.key_dim = Dk;
        f.window = s.window;
        f.sinks = s.sinks;
        f.pm_features = s.feature_map == "hedgehog_pm";
        f.rope_in_fp32 = c.rope_in_fp32;
        f.gate_softcap = s.gate_softcap;
        f.eps = ops::kMlstmEps;
        b.mixer_fused = fused_mixer_step_supported(f, b.ring_k);
        if (b.mixer_fused) prepare_fused_mixer_step(f, batch);
        fused_mixers_ += b.mixer_fused ? 1 : 0;
      }
    } else {
      attention_of(*block);
      // Zeros, not empty: masked positions still enter the product with V as 0 * v.
      const int64_t slots = capacity > kKeyBlock ? (capacity + kKeyBlock - 1) / kKeyBlock * kKeyBlock : capacity;
      b.k = at::zeros({batch, c.num_kv_heads, slots, c.head_dim}, opts);
      b.v = at::zeros_like(b.k);
    }
    layers_.push_back(std::move(b));
  }
  // The fused norms need every block pre-norm (the residual add of one block goes into
  // the next block's first norm) and kernels that cover the model's norms.
  fused_norms_ = fused && ops::fused_norm_supported(model_->embed, model_->final_norm->weight);
  for (const auto& block : model_->blocks())
    fused_norms_ = fused_norms_ && pre_norm(*block) && ops::fused_norm_supported(model_->embed, block->mixer_norm->weight) &&
                   ops::fused_norm_supported(model_->embed, block->mlp_norm->weight);
  lengths.assign(batch, 0);
  tokens = at::zeros({batch}, opts.dtype(at::kLong));
  positions = at::zeros({batch}, opts.dtype(at::kLong));
  logits = at::zeros({batch, model_->config().vocab_size}, f32);
}

at::Tensor DecodeState::prefill_rows(int64_t first, const at::Tensor& ids_in, int64_t chunk) {
  XD_CHECK(ids_in.dim() == 2 && ids_in.size(1) >= 1, "prefill: ids must be [rows, tokens] with tokens >= 1");
  const int64_t n = ids_in.size(0), T = ids_in.size(1);
  XD_CHECK(first >= 0 && first + n <= batch_, "prefill: rows ", first, "..", first + n, " outside the batch of ", batch_);
  XD_CHECK(T <= capacity_, "prefill: a prompt of ", T, " tokens exceeds the capacity of ", capacity_, " positions");
  at::NoGradGuard no_grad;
  const at::Tensor ids = ids_in.to(model_->device(), at::kLong);
  const int64_t step = chunk > 0 ? chunk : T;
  at::Tensor out = student_ ? prefill_student(first, ids, step) : prefill_teacher(first, ids, step);
  for (int64_t r = first; r < first + n; ++r) lengths[r] = T;
  positions.narrow(0, first, n).fill_(T);
  return out;
}

// The teacher's layers by hand, so that K/V go straight into the fixed cache and the
// attention of a chunk over the cache runs in flash attention on the GPU.
at::Tensor DecodeState::prefill_teacher(int64_t first, const at::Tensor& ids, int64_t chunk) {
  const int64_t n = ids.size(0), T = ids.size(1);
  at::Tensor last;
  for (int64_t start = 0; start < T; start += chunk) {
    const int64_t len = std::min(chunk, T - start), end = start + len;
    at::Tensor x = at::embedding(model_->embed, ids.narrow(1, start, len));
    for (size_t i = 0; i < model_->blocks().size(); ++i) {
      auto& block = *model_->blocks()[i];
      auto& mixer = attention_of(block);
      const auto qkv = mixer.project_qkv(pre_norm(block) ? block.mixer_norm->forward(x) : x, model_->context(i, start));
      auto k = layers_[i].k.narrow(0, first, n), v = layers_[i].v.narrow(0, first, n);
      k.narrow(2, start, len).copy_(qkv.k);
      v.narrow(2, start, len).copy_(qkv.v);
      k = k.narrow(2, 0, end);
      v = v.narrow(2, 0, end);
      at::Tensor pre_out;
      if (flash_attention_supported(qkv.q))
        pre_out = flash_attention_suffix(qkv.q, k, v, block.config.sliding_window).transpose(1, 2).reshape({n, len, -1});
      else
        pre_out = mixer.attend(qkv.q, k, v, start);
      x = block.finish(x, pre_out);
    }
    last = x.select(1, len - 1);
  }
  return model_->logits(model_->final_norm->forward(last));
}

// The student through its own cache (chunkwise mLSTM from the state, window over
// cached keys), then its per-layer states copied into the rows.
at::Tensor DecodeState::prefill_student(int64_t first, const at::Tensor& ids, int64_t chunk) {
  const int64_t n = ids.size(0), T = ids.size(1);
  auto cache = model_->new_cache(n, T);
  at::Tensor out;
  for (int64_t start = 0; start < T; start += chunk)
    out = model_->next_token_logits(ids.narrow(1, start, std::min(chunk, T - start)), cache.get());
  auto* dc = dynamic_cast<models::DecoderCache*>(cache.get());
  XD_CHECK(dc != nullptr, "prefill: the model's cache is not a DecoderCache");
  for (size_t i = 0; i < layers_.size(); ++i) {
    LayerBuffers& b = layers_[i];
    auto rows = [&](const at::Tensor& t) { return t.narrow(0, first, n); };
    if (auto* hs = dynamic_cast<student::HybridMixerState*>(dc->layers[i].get())) {
      const auto& st = hs->state;
      rows(b.C).copy_(st.mlstm->C);
      rows(b.n).copy_(st.mlstm->n);
      rows(b.m).copy_(st.mlstm->m);
      // Both hold the key/value heads: [rows, Hk, slots, D].
      rows(b.ring_k).copy_(st.window->ring_k);
      rows(b.ring_v).copy_(st.window->ring_v);
      const int64_t s = st.window->sinks;
      rows(b.sink_k).narrow(2, 0, s).copy_(st.window->sink_k);
      rows(b.sink_v).narrow(2, 0, s).copy_(st.window->sink_v);
    } else {
      auto* kv = dynamic_cast<models::KvState*>(dc->layers[i].get());
      XD_CHECK(kv != nullptr, "prefill: layer ", i, " holds an unknown decoding state");
      rows(b.k).narrow(2, 0, T).copy_(kv->k.narrow(2, 0, T));
      rows(b.v).narrow(2, 0, T).copy_(kv->v.narrow(2, 0, T));
    }
  }
  return out;
}

std::pair<at::Tensor, at::Tensor> DecodeState::rope_at_positions(size_t layer, StepShared& shared) const {
  // As Rotary::cos_sin, for one position per row: (p * inv_freq) twice, cos/sin, scaled.
  const models::Rotary* r = model_->context(layer, 0).rotary;
  auto it = shared.rope.find(r);
  if (it != shared.rope.end()) return it->second;
  const auto freqs = positions.to(at::kFloat).unsqueeze(1) * r->inv_freq().unsqueeze(0);
  const auto emb = at::cat({freqs, freqs}, -1).view({batch_, 1, 1, -1});
  return shared.rope[r] = {emb.cos() * r->attention_scaling(), emb.sin() * r->attention_scaling()};
}

const std::array<at::Tensor, 4>& DecodeState::window_slots(int64_t W, int64_t S, StepShared& shared) const {
  auto it = shared.window.find({W, S});
  if (it != shared.window.end()) return it->second;
  // Ring slot s holds the latest position = s (mod W) that is <= t: written once
  // s <= t or the ring has wrapped. Sink j counts only once it left the window.
  const auto t = positions.view({batch_, 1, 1, 1});
  const auto slot = at::arange(W, positions.options()).view({1, 1, 1, -1});
  const auto j = at::arange(S, positions.options()).view({1, 1, 1, -1});
  return shared.window[{W, S}] = {t.remainder(W), at::clamp_max(t, S), ((t >= W) | (slot <= t)).logical_not(),
                                  t - j < W};
}

at::Tensor DecodeState::teacher_mixer_step(size_t layer, const at::Tensor& h, StepShared& shared) {
  auto& block = *model_->blocks()[layer];
  auto& mixer = attention_of(block);
  const auto& c = block.config;
  const auto plain = mixer.project_unrotated(h);
  const auto [cos, sin] = rope_at_positions(layer, shared);
  const auto q = models::apply_rotary(plain.q, cos, sin, c.rope_in_fp32);
  const auto k = models::apply_rotary(plain.k, cos, sin, c.rope_in_fp32);
  LayerBuffers& b = layers_[layer];
  const int64_t B = batch_, Hk = c.num_kv_heads, D = c.head_dim, G = c.num_heads / Hk;
  const auto slot = positions.view({B, 1, 1, 1}).expand({B, Hk, 1, D});
  b.k.scatter_(2, slot, k);
  b.v.scatter_(2, slot, plain.v);
  // Query heads of one KV head side by side: [B,Hk,G,D] x [B,Hk,D,capacity].
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  auto scores = at::matmul(q.reshape({B, Hk, G, D}), b.k.transpose(-1, -2)).to(at::kFloat) * scale;
  auto hidden = shared.kv_visible.find(c.sliding_window);
  if (hidden == shared.kv_visible.end()) {
    const auto j = at::arange(b.k.size(2), positions.options()).view({1, 1, 1, -1});
    const auto t = positions.view({B, 1, 1, 1});
    auto visible = j <= t;
    if (c.sliding_window > 0) visible = visible.logical_and(t - j < c.sliding_window);
    hidden = shared.kv_visible.emplace(c.sliding_window, visible.logical_not()).first;
  }
  scores = scores.masked_fill(hidden->second, -kInfinity);
  const auto probs = at::softmax(scores, -1).to(b.v.scalar_type());
  const int64_t slots = b.v.size(2);
  if (slots <= kKeyBlock) return at::matmul(probs, b.v).reshape({B, 1, -1});  // [B,Hk,G,D] -> [B,1,H*D]
  const int64_t blocks = slots / kKeyBlock;
  const auto p = probs.view({B, Hk, G, blocks, kKeyBlock}).permute({0, 1, 3, 2, 4});  // [B,Hk,n,G,blk]
  const auto partial = at::matmul(p, b.v.view({B, Hk, blocks, kKeyBlock, D}));        // [B,Hk,n,G,D]
  return partial.sum(2, /*keepdim=*/false, at::kFloat).to(b.v.scalar_type()).reshape({B, 1, -1});
}

at::Tensor DecodeState::student_mixer_step(size_t layer, const at::Tensor& h, StepShared& shared) {
  auto& block = *model_->blocks()[layer];
  auto* mixer = hybrid_of(block);
  auto& core = *mixer->hybrid;
  const auto& c = block.config;
  const auto& s = core.config();
  const int64_t B = batch_, H = c.num_heads, D = c.head_dim, G = H / c.num_kv_heads;
  const auto plain = mixer->project_unrotated(h);
  const auto [cos, sin] = rope_at_positions(layer, shared);
  LayerBuffers& b = layers_[layer];
  if (b.mixer_fused) {
    // [B,heads,1,D] views of [B,1,heads,D] projections: back to rows without a copy.
    auto rows = [&](const at::Tensor& t) { return t.transpose(1, 2).reshape({B, 1, -1}); };
    return fused_mixer_step(b.fused, rows(plain.q), rows(plain.k), rows(plain.v), h, cos.view({B, D}),
                            sin.view({B, D}), positions);
  }
  const at::Tensor q = models::apply_rotary(plain.q, cos, sin, c.rope_in_fp32);      // [B,H,1,D]
  const at::Tensor k_rot = models::apply_rotary(plain.k, cos, sin, c.rope_in_fp32);  // [B,Hk,1,D]
  const at::Tensor v_heads = ops::repeat_kv(plain.v, H);  // the mLSTM and the gate read v per query head

  // mLSTM step in place (ops::reference::mlstm_recurrent's update, float32). The feature
  // map takes the key/value heads as they are and returns one map per query head.
  const auto phi_q = core.feature_map(q, core.feature_q), phi_k = core.feature_map(k_rot, core.feature_k);
  // Input and forget gates in one product (HybridCore::gates, soft-capped): [B,H] each.
  auto z = at::linear(h.to(at::kFloat), b.gate_w, b.gate_b).view({B, 2 * H});
  if (s.gate_softcap > 0) z = at::tanh(z / s.gate_softcap) * s.gate_softcap;
  const auto it = z.narrow(1, 0, H), lf = at::log_sigmoid(z.narrow(1, H, H));
  const auto qs = phi_q.squeeze(2).to(at::kFloat) / std::sqrt(static_cast<double>(phi_q.size(-1)));
  const auto ks = phi_k.squeeze(2).to(at::kFloat), vs = v_heads.squeeze(2).to(at::kFloat);
  const auto m_new = at::maximum(lf + b.m, it);
  const auto a = at::exp(lf + b.m - m_new), e = at::exp(it - m_new);
  b.C.mul_(a.unsqueeze(-1).unsqueeze(-1)).add_(e.unsqueeze(-1).unsqueeze(-1) * ks.unsqueeze(-1) * vs.unsqueeze(-2));
  b.n.mul_(a.unsqueeze(-1)).add_(e.unsqueeze(-1) * ks);
  b.m.copy_(m_new);
  const auto num = at::matmul(qs.unsqueeze(-2), b.C).squeeze(-2);
  const auto den = at::maximum((qs * b.n).sum(-1).abs(), at::exp(-b.m)) + ops::kMlstmEps;
  // In the dtype of v, as ops::mlstm_step returns it.
  const auto global = (num / den.unsqueeze(-1)).unsqueeze(2).to(plain.v.scalar_type());  // [B,H,1,D]

  // Window + sinks: write the token into its ring slot (and sink slot while the row is
  // short), then attend over ring and sinks with a mask built from the positions; the
  // query heads of a key/value head side by side: [B,Hk,G,D] against [B,Hk,n,D].
  const int64_t W = s.window, S = s.sinks, Hk = c.num_kv_heads;
  const auto& [ring_slot, sink_slot, ring_hidden, sink_hidden] = window_slots(W, S, shared);
  b.ring_k.scatter_(2, ring_slot.expand({B, Hk, 1, D}), k_rot);
  b.ring_v.scatter_(2, ring_slot.expand({B, Hk, 1, D}), plain.v);
  b.sink_k.scatter_(2, sink_slot.expand({B, Hk, 1, D}), k_rot);
  b.sink_v.scatter_(2, sink_slot.expand({B, Hk, 1, D}), plain.v);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const auto ct = q.is_cuda() ? q.scalar_type() : at::kFloat;  // float32 on the CPU, as window_attention_step
  const auto qc = q.to(ct).reshape({B, Hk, G, D});
  const auto sink_k = b.sink_k.narrow(2, 0, S).to(ct), sink_v = b.sink_v.narrow(2, 0, S).to(ct);
  auto ring_scores = at::matmul(qc, b.ring_k.to(ct).transpose(-1, -2)).to(at::kFloat) * scale;  // [B,Hk,G,W]
  auto sink_scores = at::matmul(qc, sink_k.transpose(-1, -2)).to(at::kFloat) * scale;           // [B,Hk,G,S]
  ring_scores = ring_scores.masked_fill(ring_hidden, -kInfinity);
  sink_scores = sink_scores.masked_fill(sink_hidden, -kInfinity);  // only sinks that left the window
  const auto probs = at::softmax(at::cat({sink_scores, ring_scores}, -1), -1).to(ct);
  const auto local = (at::matmul(probs.narrow(-1, 0, S), sink_v) + at::matmul(probs.narrow(-1, S, W), b.ring_v.to(ct)))
                         .reshape({B, H, 1, D});

  // Output gate (HybridCore::output_gate) as one product over [q_gate, k_gate, v].
  const auto gate_in = at::cat({plain.q, ops::repeat_kv(plain.k, H), v_heads}, -1);  // [B,H,1,3D]
  const auto o = at::sigmoid(at::matmul(gate_in, b.ogate_u).to(at::kFloat) + b.ogate_b.unsqueeze(-1));  // [B,H,1,1]
  const auto mixed = (o * global.to(at::kFloat) + (1 - o) * local.to(at::kFloat)).to(plain.v.scalar_type());
  return mixed.transpose(1, 2).reshape({B, 1, -1});
}

std::pair<at::Tensor, at::Tensor> DecodeState::fused_block_tail(models::DecoderBlock& block, const at::Tensor& x,
                                                                const at::Tensor& pre_out) {
  const at::Tensor mixed = block.mixer->project_out(pre_out);
  const auto& norm = *block.mlp_norm;
  auto [h, normed] = ops::fused_add_rmsnorm(x, mixed, norm.weight, norm.eps, norm.weight_in_fp32);
  const auto& mlp = *block.mlp;
  const at::Tensor act = ops::fused_silu_mul(mlp.gate_proj->forward(normed), mlp.up_proj->forward(normed));
  return {h, mlp.down_proj->forward(act)};
}

void DecodeState::step() {
  at::NoGradGuard no_grad;
  StepShared shared;
  at::Tensor x = at::embedding(model_->embed, tokens.unsqueeze(1));  // [B,1,hidden]
  if (fused_norms_) {
    // x + delta is the residual stream; each norm kernel adds them on its way in.
    at::Tensor delta;
    for (size_t i = 0; i < layers_.size(); ++i) {
      auto& block = *model_->blocks()[i];
      const auto& norm = *block.mixer_norm;
      at::Tensor h;
      if (delta.defined()) std::tie(x, h) = ops::fused_add_rmsnorm(x, delta, norm.weight, norm.eps, norm.weight_in_fp32);
      else h = ops::fused_rmsnorm(x, norm.weight, norm.eps, norm.weight_in_fp32);
      const at::Tensor pre_out = layers_[i].C.defined() ? student_mixer_step(i, h, shared) : teacher_mixer_step(i, h, shared);
      std::tie(x, delta) = fused_block_tail(block, x, pre_out);
    }
    const auto& norm = *model_->final_norm;
    const at::Tensor last = delta.defined() ? ops::fused_add_rmsnorm(x, delta, norm.weight, norm.eps, norm.weight_in_fp32).second
                                            : ops::fused_rmsnorm(x, norm.weight, norm.eps, norm.weight_in_fp32);
    logits.copy_(model_->logits(last.select(1, 0)));
    positions.add_(1);
    return;
  }
  for (size_t i = 0; i < layers_.size(); ++i) {
    auto& block = *model_->blocks()[i];
    const at::Tensor h = pre_norm(block) ? block.mixer_norm->forward(x) : x;
    const at::Tensor pre_out = layers_[i].C.defined() ? student_mixer_step(i, h, shared) : teacher_mixer_step(i, h, shared);
    x = block.finish(x, pre_out);
  }
  logits.copy_(model_->logits(model_->final_norm->forward(x.select(1, 0))));
  positions.add_(1);
}

}  // namespace xd::infer
