// One micro-batch of each stage: forward, loss, backward (method.md §3).
#include <torch/torch.h>

#include "session.h"
#include "xdistill/ops/window_attention.h"
#include "xdistill/student/hybrid_mixer.h"
#include "xdistill/train/losses.h"
#include "xdistill/util/error.h"

namespace xd::train {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Activation checkpointing of one decoder block: the forward keeps only the block's
// input; the backward recomputes the block with autograd on and backpropagates
// through it (parameter gradients accumulate into .grad as usual).
struct CheckpointedBlock : public torch::autograd::Function<CheckpointedBlock> {
  static at::Tensor forward(AutogradContext* ctx, at::Tensor x, models::Decoder* model, int64_t layer) {
    ctx->save_for_backward({x});
    ctx->saved_data["model"] = reinterpret_cast<int64_t>(model);
    ctx->saved_data["layer"] = layer;
    torch::NoGradGuard no_grad;
    const ops::TrainingForwardScope same_kernels_as_the_recompute;
    return model->blocks()[layer]->forward(x, model->context(layer, 0), nullptr);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto* model = reinterpret_cast<models::Decoder*>(ctx->saved_data["model"].toInt());
    const int64_t layer = ctx->saved_data["layer"].toInt();
    at::Tensor x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    at::Tensor y;
    {
      torch::AutoGradMode enable(true);
      y = model->blocks()[layer]->forward(x, model->context(layer, 0), nullptr);
    }
    torch::autograd::backward({y}, {grad_out[0]});
    return {x.grad(), at::Tensor(), at::Tensor()};
  }
};

// Stage I walks teacher and student through the layers together. At each layer the
// teacher's own projections (after its q/k norms, before and after RoPE) feed both its
// attention, whose output before W_o is the target, and the student's hybrid core,
// whose loss is backpropagated at once; then the teacher finishes the block. Nothing
// is kept across layers (no trace of every layer's input and output), and the
// student's frozen copies of the projections are never run.
MicroLosses align_micro_batch(TrainSession& s, const data::Batch& batch, double scale) {
  XD_CHECK(s.teacher, "align: the stage needs the teacher in the process");
  const at::Tensor ids = batch_tensor(batch.inputs, batch, s.device);
  const auto& teacher_blocks = s.teacher->blocks();
  const auto& blocks = s.model->blocks();
  XD_CHECK(teacher_blocks.size() == blocks.size(), "align: the teacher has ", teacher_blocks.size(),
           " layers, the student ", blocks.size());
  MicroLosses out;
  out.tokens = batch.rows * batch.seq_len;
  at::Tensor total = torch::zeros({}, torch::TensorOptions().device(s.device));
  at::Tensor x;
  {
    torch::NoGradGuard no_grad;
    x = at::embedding(s.teacher->embed, ids);
  }
  const auto to_compute = [&](const at::Tensor& t) { return t.to(s.compute_dtype); };
  for (size_t layer = 0; layer < blocks.size(); ++layer) {
    auto& teacher = *teacher_blocks[layer];
    auto* teacher_mixer = dynamic_cast<models::AttentionMixer*>(teacher.mixer.get());
    auto* student_mixer = dynamic_cast<student::HybridMixer*>(blocks[layer]->mixer.get());
    XD_CHECK(teacher_mixer && student_mixer, "align: layer ", layer, " is not an attention layer in the teacher and a ",
             "hybrid layer in the student");
    models::AttentionMixer::Qkv plain, rotated;
    at::Tensor mixer_in, target;
    {
      torch::NoGradGuard no_grad;  // the teacher, and the student's norm and projections, are frozen
      const bool pre = teacher.config.norm_placement == models::NormPlacement::pre;
      mixer_in = pre ? teacher.mixer_norm->forward(x) : x;
      plain = teacher_mixer->project_unrotated(mixer_in);
      rotated = teacher_mixer->rotate(plain, s.teacher->context(static_cast<int64_t>(layer), 0));
      target = teacher_mixer->attend(rotated.q, rotated.k, rotated.v, 0);
    }
    const student::HybridInputs in = student::hybrid_inputs(
        to_compute(mixer_in), {to_compute(plain.q), to_compute(plain.k), to_compute(plain.v)},
        {to_compute(rotated.q), to_compute(rotated.k), to_compute(rotated.v)});
    // [B,H,T,Dh] view of a [B,T,H,Dh] tensor: the reshape to the target's layout is free.
    const at::Tensor student_h =
        student_mixer->hybrid->forward(in).transpose(1, 2).reshape({ids.size(0), ids.size(1), -1});
    const at::Tensor loss = alignment_loss(student_h, target);
    (loss * scale).backward();  // this layer's graph is freed before the next
    total = total + loss.detach();
    torch::NoGradGuard no_grad;
    x = teacher.finish(x, target);
  }
  out.total = total;
  out.align = total;
  return out;
}

MicroLosses distill_micro_batch(TrainSession& s, const data::Batch& batch, double scale, bool with_teacher) {
  const at::Tensor ids = batch_tensor(batch.inputs, batch, s.device);
  const at::Tensor targets = batch_tensor(batch.targets, batch, s.device);
  const at::Tensor mask = torch::from_blob(const_cast<uint8_t*>(batch.loss_mask.data()), {batch.rows, batch.seq_len},
                                           torch::kUInt8)
                              .to(s.device);
  at::Tensor top_ids, top_logprobs;
  DistillWeights weights{s.recipe.ce_weight, s.recipe.kl_weight, s.recipe.temperature};
  if (with_teacher) {
    std::tie(top_ids, top_logprobs) = teacher_targets(s, batch, ids);
  } else {
    weights = {1.0, 0.0, 1.0};  // pretraining: plain next-token cross-entropy
  }
  const at::Tensor logits = forward_logits(*s.model, ids, s.recipe.activation_checkpointing);
  const DistillLossParts parts = distill_loss(logits, targets, mask, top_ids, top_logprobs, weights);
  (parts.total * scale).backward();
  MicroLosses out;
  out.total = parts.total.detach();
  out.ce = parts.ce.detach();
  if (with_teacher) out.kl = parts.kl.detach();
  out.tokens = parts.positions;
  return out;
}

}  // namespace

at::Tensor batch_tensor(const std::vector<int32_t>& values, const data::Batch& batch, const at::Device& device) {
  XD_CHECK(static_cast<int64_t>(values.size()) == batch.rows * batch.seq_len, "batch: ", values.size(),
           " tokens for ", batch.rows, " rows of ", batch.seq_len);
  return torch::from_blob(const_cast<int32_t*>(values.data()), {batch.rows, batch.seq_len}, torch::kInt32)
      .to(device, torch::kLong);
}

at::Tensor forward_logits(models::Decoder& model, const at::Tensor& ids, bool checkpoint_layers) {
  if (!checkpoint_layers) return model.forward(ids);
  at::Tensor x = at::embedding(model.embed, ids);
  if (!x.requires_grad()) x = x.detach().requires_grad_(true);  // so every block's recompute runs
  for (size_t layer = 0; layer < model.blocks().size(); ++layer)
    x = CheckpointedBlock::apply(x, &model, static_cast<int64_t>(layer));
  return model.logits(model.final_norm->forward(x));
}

std::pair<at::Tensor, at::Tensor> teacher_targets(TrainSession& s, const data::Batch& batch, const at::Tensor& ids) {
  const int64_t k = s.recipe.top_k;
  if (s.fixed_top_k.first.defined()) return s.fixed_top_k;
  if (!s.cache) {
    XD_CHECK(s.teacher, "distill: no teacher and no teacher cache");
    torch::NoGradGuard no_grad;
    return teacher_top_k(s.teacher->forward(ids), k);
  }
  const auto& meta = s.cache->meta();
  XD_CHECK(meta.seq_len == batch.seq_len && meta.top_k >= k, "teacher cache: written for seq_len ", meta.seq_len,
           " and top_k ", meta.top_k, ", the recipe needs seq_len ", batch.seq_len, " and top_k ", k);
  std::vector<at::Tensor> id_rows, lp_rows;
  for (int64_t r = 0; r < batch.rows; ++r) {
    TopkRow row = s.cache->read(row_key(batch, r));
    at::Tensor ids_row = torch::from_blob(row.ids.data(), {meta.seq_len, meta.top_k}, torch::kInt32).clone();
    at::Tensor lp_row = torch::from_blob(row.logprobs.data(), {meta.seq_len, meta.top_k}, torch::kFloat).clone();
    id_rows.push_back(ids_row.narrow(1, 0, k));
    lp_rows.push_back(lp_row.narrow(1, 0, k));
  }
  return {torch::stack(id_rows).to(s.device, torch::kLong), torch::stack(lp_rows).to(s.device)};
}

MicroLosses run_micro_batch(TrainSession& s, const data::Batch& batch, double scale) {
  switch (s.recipe.stage) {
    case Stage::Align: return align_micro_batch(s, batch, scale);
    case Stage::Distill: return distill_micro_batch(s, batch, scale, true);
    case Stage::Pretrain: return distill_micro_batch(s, batch, scale, false);
  }
  throw Error("unknown stage");
}

}  // namespace xd::train
