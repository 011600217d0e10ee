// One micro-batch of each stage: forward, loss, backward (method.md §3).
#include <torch/torch.h>

#include "session.h"
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

MicroLosses align_micro_batch(TrainSession& s, const data::Batch& batch, double scale) {
  XD_CHECK(s.teacher, "align: the stage needs the teacher in the process");
  const at::Tensor ids = batch_tensor(batch.inputs, batch, s.device);
  // One teacher forward gives every layer's input and its mixer output before W_o.
  models::ForwardTrace trace;
  {
    torch::NoGradGuard no_grad;
    s.teacher->hidden_states(ids, nullptr, &trace);
  }
  MicroLosses out;
  out.tokens = batch.rows * batch.seq_len;
  at::Tensor total = torch::zeros({}, torch::TensorOptions().device(s.device));
  const auto& blocks = s.model->blocks();
  for (size_t layer = 0; layer < blocks.size(); ++layer) {
    const auto& block = blocks[layer];
    at::Tensor x = trace.layer_inputs[layer].to(s.compute_dtype);
    trace.layer_inputs[layer] = at::Tensor();  // free as we go
    if (block->config.norm_placement == models::NormPlacement::pre) {
      torch::NoGradGuard no_grad;  // the norm is frozen in Stage I
      x = block->mixer_norm->forward(x);
    }
    // Each layer's term is backpropagated at once: its graph is freed before the next.
    const at::Tensor student_h = block->mixer->forward_pre_out(x, s.model->context(layer, 0));
    const at::Tensor loss = alignment_loss(student_h, trace.mixer_outputs[layer]);
    trace.mixer_outputs[layer] = at::Tensor();
    (loss * scale).backward();
    total = total + loss.detach();
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
