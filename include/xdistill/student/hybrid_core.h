// The new parameters of the student block and the math they take part in
// (method.md §2, steps 3-4): Hedgehog feature maps on q and k, the mLSTM's input
// and forget gates from the layer input, the per-head output gate mixing the
// mLSTM (global) and sliding-window (local) branches.
//
// The core knows nothing of projections, RoPE or the decoder: it receives q, k, v
// already projected and returns the mixed per-head output that the copied W_o then
// maps back. This is also exactly what Stage I trains, on the teacher's own q, k, v.
//
// Layout: k and v keep the teacher's KV heads (grouped-query attention: query head h
// reads KV head h / (H/Hk), as HF's repeat_kv), and the tensors are best passed as
// the head-transposed views of [B,S,heads,Dh] projections that AttentionMixer makes:
// the core reads them in that layout (per-head products as strided batched GEMMs)
// and writes its output as [B,S,H,Dh], the layout W_o reads, so that the training
// step copies no [B,H,S,Dh] tensor for a layout change.
#pragma once
#include <torch/nn/module.h>

#include "xdistill/ops/mlstm.h"
#include "xdistill/ops/window_attention.h"
#include "xdistill/student/student_config.h"

namespace xd::student {

struct HybridInputs {
  at::Tensor x;               // [B,S,hidden]: the mixer's input (gate input x_t)
  at::Tensor q;               // [B,H,S,Dh]: after q/k norms and RoPE
  at::Tensor k, v;            // [B,Hk,S,Dh], Hk dividing H: k after its norm and RoPE
  at::Tensor q_gate;          // [B,H,S,Dh]: q before RoPE, for the output gate
  at::Tensor k_gate;          // [B,Hk,S,Dh]: k before RoPE, for the output gate
};

// Generation state of one layer: the mLSTM's recurrent state and the window cache.
// Memory is constant in the context length.
struct HybridState {
  c10::optional<ops::MlstmState> mlstm;
  std::shared_ptr<ops::WindowCache> window;
};

class HybridCore : public torch::nn::Module {
 public:
  HybridCore(int64_t hidden, int64_t heads, int64_t head_dim, StudentConfig config);

  // Spec initialisation: identity-like feature maps, forget biases spread over
  // [forget_init_min, forget_init_max] in sigma-space, small input-gate bias, output
  // gate favouring the local branch, zero gate weights.
  void reset_parameters();

  // Mixed output [B,H,S,Dh] (dtype of v; a view of a contiguous [B,S,H,Dh] tensor).
  // `local` may be passed in when already computed (Stage I: it does not depend on
  // any trained parameter).
  at::Tensor forward(const HybridInputs& in, const at::Tensor& local = {});
  // Prefill or decode with state (inputs as for forward): the first call (empty
  // state) runs the parallel form and fills the state; later calls of several tokens
  // continue the prefill (chunkwise mLSTM from the state, window attention over the
  // cached keys), and single tokens step.
  at::Tensor forward_cached(const HybridInputs& in, HybridState& state);

  // [B,Hx,S,Dh] with Hx dividing H (Hx = Hk for keys) -> [B,H,S,Dk], contiguous.
  at::Tensor feature_map(const at::Tensor& x, const at::Tensor& weight) const;
  std::pair<at::Tensor, at::Tensor> gates(const at::Tensor& x) const;  // i, f: [B,H,S] float32
  at::Tensor output_gate(const HybridInputs& in) const;                  // [B,H,S] float32 in (0,1)
  at::Tensor local_branch(const HybridInputs& in) const;               // [B,H,S,Dh]

  const StudentConfig& config() const { return config_; }

  // Parameters (names as registered; saved under the layer's "self_attn." prefix).
  at::Tensor feature_q, feature_k;     // [H, Dh, Df]
  at::Tensor igate_w, fgate_w;         // [H, hidden]
  at::Tensor igate_b, fgate_b;         // [H]
  at::Tensor ogate_w;                  // [H, 3*Dh]: weights on [q, k, v]
  at::Tensor ogate_b;                  // [H]

 private:
  // The output gate as [B,S,H] float32 (the layout of the mix).
  at::Tensor output_gate_bsh(const HybridInputs& in) const;
  // o * global + (1 - o) * local in float32; gate [B,S,H]. Returns [B,H,S,Dh], a view
  // of a contiguous [B,S,H,Dh] tensor.
  at::Tensor mix(const at::Tensor& global, const at::Tensor& local, const at::Tensor& gate) const;
  int64_t hidden_, heads_, head_dim_;
  StudentConfig config_;
};

// Names of the core's parameters, as registered (for checkpoints and for telling
// new parameters from copied ones).
const std::vector<std::string>& hybrid_parameter_names();

}  // namespace xd::student
