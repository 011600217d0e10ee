// Internal: the decoding state of every row of a batch in fixed buffers, the chunked
// prefill that fills a group of rows, and the one-token step over all rows with
// per-row positions (a device tensor, so that a CUDA graph can replay the step).
//   teacher layer: K/V cache [B, kv_heads, capacity, D] (capacity rounded up to whole
//                  key blocks of 256 beyond one block)
//   student layer: mLSTM state C [B,H,Dk,Dv], n [B,H,Dk], m [B,H] (float32), window
//                  ring [B,kv_heads,window,D] and sinks [B,kv_heads,sinks+1,D] (the
//                  last slot is a scratch slot for rows past their sinks): constant in
//                  the context.
#pragma once
#include <torch/torch.h>

#include <array>
#include <map>
#include <memory>
#include <vector>

#include "infer/step_kernels.h"
#include "xdistill/models/decoder.h"

namespace xd::infer {

struct LayerBuffers {
  at::Tensor k, v;                           // teacher
  at::Tensor C, n, m, ring_k, ring_v, sink_k, sink_v;  // student
  // The student's gate weights fused for decoding (made once; the engine assumes
  // the parameters do not change during its life): [i; f] rows in float32, and the
  // output gate's u as [H, 3D, 1] in the model dtype.
  at::Tensor gate_w, gate_b, ogate_u, ogate_b;
  // The same layer for the fused step kernel (shares C, n, m and the caches above);
  // `mixer_fused` when the kernel covers it.
  FusedMixerLayer fused;
  bool mixer_fused = false;
};

// What every layer of one step shares: RoPE at each row's position, cache slots and
// visibility masks (computed once per step instead of once per layer).
struct StepShared {
  std::map<const models::Rotary*, std::pair<at::Tensor, at::Tensor>> rope;  // cos, sin [B,1,1,D]
  std::map<int64_t, at::Tensor> kv_visible;  // by sliding window: [B,1,1,capacity] bool
  std::map<std::pair<int64_t, int64_t>, std::array<at::Tensor, 4>> window;  // by (window, sinks):
      // ring slot [B,1,1,1], sink slot [B,1,1,1], ring hidden [B,1,1,W], sink hidden [B,1,1,S]
};

class DecodeState {
 public:
  // fused: use the fused step kernels where they cover a layer (CUDA only).
  DecodeState(std::shared_ptr<models::Decoder> model, int64_t batch, int64_t capacity, bool fused = false);

  // Prefills rows [first, first + n) with prompts of one length, ids [n, T], in
  // chunks of `chunk` tokens (0 = all at once). Returns next-token logits [n, V] f32.
  at::Tensor prefill_rows(int64_t first, const at::Tensor& ids, int64_t chunk);
  // One token per row: reads `tokens`, writes `logits`, advances `positions`. Makes
  // no host synchronisation and no data-dependent shapes (CUDA-graph safe).
  void step();

  bool is_student() const { return student_; }
  bool uses_fused_step() const { return fused_norms_ || fused_mixers_ > 0; }
  int64_t batch() const { return batch_; }
  int64_t capacity() const { return capacity_; }
  std::vector<int64_t> lengths;  // host copy of the row lengths
  at::Tensor tokens;     // [B] int64: the tokens fed by the next step
  at::Tensor positions;  // [B] int64: each row's next position
  at::Tensor logits;     // [B, V] float32: written by step

 private:
  at::Tensor prefill_teacher(int64_t first, const at::Tensor& ids, int64_t chunk);
  at::Tensor prefill_student(int64_t first, const at::Tensor& ids, int64_t chunk);
  at::Tensor teacher_mixer_step(size_t layer, const at::Tensor& h, StepShared& shared);
  at::Tensor student_mixer_step(size_t layer, const at::Tensor& h, StepShared& shared);
  std::pair<at::Tensor, at::Tensor> rope_at_positions(size_t layer, StepShared& shared) const;
  const std::array<at::Tensor, 4>& window_slots(int64_t window, int64_t sinks, StepShared& shared) const;
  // The fused block tail of a pre-norm layer: W_o, residual add + RMSNorm, MLP with
  // SiLU * up fused. Returns (x + mixed, the MLP's output): the caller adds the two
  // inside the next RMSNorm.
  std::pair<at::Tensor, at::Tensor> fused_block_tail(models::DecoderBlock& block, const at::Tensor& x,
                                                     const at::Tensor& pre_out);

  std::shared_ptr<models::Decoder> model_;
  bool student_ = false;
  bool fused_norms_ = false;  // every block pre-norm, and the norm kernels cover the model
  int fused_mixers_ = 0;      // student layers whose mixer step is the fused kernel
  int64_t batch_, capacity_;
  std::vector<LayerBuffers> layers_;
};


}  // namespace xd::infer
