#include "xdistill/dist/sharded_adamw.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <unordered_set>

#include "xdistill/dist/grad_reducer.h"
#include "xdistill/util/error.h"
#include "xdistill/util/log.h"

namespace xd::dist {
namespace {

std::vector<int64_t> numels_of(const std::vector<TrainedParam>& params) {
  std::vector<int64_t> n;
  for (const auto& p : params) n.push_back(p.tensor.numel());
  return n;
}

// (shard offset, length) runs of the elements that get weight decay, merged.
std::vector<std::pair<int64_t, int64_t>> decay_runs(const FlatLayout& layout, const std::vector<TrainedParam>& params,
                                                    int rank) {
  std::vector<std::pair<int64_t, int64_t>> runs;
  for (const ShardPiece& piece : layout.shard_pieces(rank)) {
    if (!params[piece.param].decay) continue;
    if (!runs.empty() && runs.back().first + runs.back().second == piece.shard_offset)
      runs.back().second += piece.length;
    else
      runs.emplace_back(piece.shard_offset, piece.length);
  }
  return runs;
}

at::ScalarType gather_dtype(const std::vector<TrainedParam>& params) {
  if (params.empty()) return at::kFloat;
  const auto dtype = params.front().tensor.scalar_type();
  for (const auto& p : params)
    if (p.tensor.scalar_type() != dtype) return at::kFloat;  // mixed: gather fp32, cast on copy
  return dtype;
}

}  // namespace

ShardedAdamW::ShardedAdamW(std::vector<TrainedParam> params, std::shared_ptr<ProcessGroup> pg, AdamWOptions adam,
                           ShardingOptions sharding)
    : pg_(std::move(pg)), adam_(adam), sharding_(sharding) {
  // A tied weight appears once: its gradient already sums both uses.
  std::unordered_set<const void*> seen;
  for (auto& p : params) {
    XD_CHECK(p.tensor.defined(), "sharded AdamW: parameter '", p.name, "' is undefined");
    XD_CHECK(p.tensor.is_contiguous(), "sharded AdamW: parameter '", p.name, "' is not contiguous");
    XD_CHECK(at::isFloatingType(p.tensor.scalar_type()), "sharded AdamW: parameter '", p.name, "' is not floating point");
    if (seen.insert(p.tensor.unsafeGetTensorImpl()).second) params_.push_back(std::move(p));
  }
  XD_CHECK(!params_.empty(), "sharded AdamW: no parameters to train");
  const auto device = params_.front().tensor.device();
  for (const auto& p : params_)
    XD_CHECK(p.tensor.device() == device, "sharded AdamW: parameter '", p.name, "' is on ", p.tensor.device().str(),
             ", the first one on ", device.str());

  torch::NoGradGuard no_grad;
  // Every rank starts from rank 0's weights (they may have been initialised apart).
  for (auto& p : params_) {
    at::Tensor data = p.tensor.detach();
    pg_->broadcast(data, 0);
  }
  layout_ = FlatLayout(numels_of(params_), pg_->size(), sharding_.bucket_numel);
  decay_runs_ = decay_runs(layout_, params_, pg_->rank());
  const auto fp32 = at::TensorOptions().dtype(at::kFloat).device(device);
  master_ = at::zeros({layout_.shard_numel()}, fp32);
  exp_avg_ = at::zeros({layout_.shard_numel()}, fp32);
  exp_avg_sq_ = at::zeros({layout_.shard_numel()}, fp32);
  for (const ShardPiece& piece : layout_.shard_pieces(pg_->rank()))
    master_.narrow(0, piece.shard_offset, piece.length)
        .copy_(params_[piece.param].tensor.detach().reshape({-1}).narrow(0, piece.param_offset, piece.length));

  std::vector<at::Tensor> tensors;
  for (const auto& p : params_) tensors.push_back(p.tensor);
  reducer_ = std::make_unique<GradientReducer>(tensors, pg_, layout_, sharding_.max_inflight);
  log::debug("sharded AdamW: ", params_.size(), " tensors, ", layout_.total_numel(), " elements in ",
             layout_.buckets().size(), " buckets; ", layout_.shard_numel(), " elements on rank ", pg_->rank());
}

ShardedAdamW::~ShardedAdamW() = default;

void ShardedAdamW::finish_backward() { reducer_->finish_backward(); }

int64_t ShardedAdamW::micro_batches() const { return reducer_->micro_batches(); }

int64_t ShardedAdamW::state_bytes() const { return 4 * 4 * layout_.shard_numel(); }

void ShardedAdamW::apply_weight_decay(double lr) {
  if (adam_.weight_decay == 0.0) return;
  for (const auto& [offset, length] : decay_runs_) master_.narrow(0, offset, length).mul_(1 - lr * adam_.weight_decay);
}

double ShardedAdamW::clip_grad_norm(double max_norm) {
  torch::NoGradGuard no_grad;
  XD_CHECK(reducer_->micro_batches() > 0, "sharded AdamW: no finished backward to measure (call finish_backward())");
  at::Tensor& grad = reducer_->grad_shard();
  // Squares summed in fp64 over ranks; padding is zero and adds nothing.
  at::Tensor squares = grad.norm(2).to(at::kDouble).square().reshape({1});
  pg_->all_reduce_sum(squares);
  last_norm_ = std::sqrt(squares.item<double>());
  norm_measured_ = true;
  if (max_norm > 0 && std::isfinite(last_norm_)) {
    const double coef = max_norm / (last_norm_ + 1e-6);  // as torch's clip_grad_norm_
    if (coef < 1.0) grad.mul_(coef);
  }
  return last_norm_;
}

bool ShardedAdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  XD_CHECK(reducer_->micro_batches() > 0, "sharded AdamW: step() without a finished backward (call finish_backward())");
  if (!norm_measured_) clip_grad_norm(0.0);  // the non-finite check needs the norm
  norm_measured_ = false;
  if (!std::isfinite(last_norm_)) {
    log::warn("sharded AdamW: gradient norm is ", last_norm_, " at step ", step_ + 1, "; the step is skipped");
    reducer_->zero_grad();
    return false;
  }
  at::Tensor& grad = reducer_->grad_shard();
  ++step_;
  apply_weight_decay(lr);
  const double bias_correction1 = 1 - std::pow(adam_.beta1, static_cast<double>(step_));
  const double bias_correction2 = 1 - std::pow(adam_.beta2, static_cast<double>(step_));
  const double step_size = lr / bias_correction1;
  // torch::optim::AdamW's update, bucket by bucket so `denom` stays one bucket's slice.
  for (const Bucket& b : layout_.buckets()) {
    auto g = grad.narrow(0, b.shard_offset, b.shard_numel);
    auto m = exp_avg_.narrow(0, b.shard_offset, b.shard_numel);
    auto v = exp_avg_sq_.narrow(0, b.shard_offset, b.shard_numel);
    auto p = master_.narrow(0, b.shard_offset, b.shard_numel);
    m.mul_(adam_.beta1).add_(g, 1 - adam_.beta1);
    v.mul_(adam_.beta2).addcmul_(g, g, 1 - adam_.beta2);
    auto denom = (v.sqrt() / std::sqrt(bias_correction2)).add_(adam_.eps);
    p.addcdiv_(m, denom, -step_size);
  }
  gather_parameters();
  reducer_->zero_grad();
  return true;
}

StepResult ShardedAdamW::step(double lr, double max_grad_norm) {
  StepResult result;
  result.grad_norm = clip_grad_norm(max_grad_norm);
  if (max_grad_norm > 0 && std::isfinite(result.grad_norm))
    result.clip_coef = std::min(1.0, max_grad_norm / (result.grad_norm + 1e-6));
  result.applied = step(lr);
  return result;
}

void ShardedAdamW::gather_parameters() {
  const auto dtype = gather_dtype(params_);
  struct Gather {
    size_t bucket;
    at::Tensor full;
    Work work;
  };
  std::deque<Gather> in_flight;
  auto complete_oldest = [&] {
    Gather g = std::move(in_flight.front());
    in_flight.pop_front();
    g.work.wait();
    for (const BucketPiece& piece : layout_.buckets()[g.bucket].pieces)
      params_[piece.param].tensor.detach().view({-1}).narrow(0, piece.param_offset, piece.length)
          .copy_(g.full.narrow(0, piece.bucket_offset, piece.length));
  };
  for (size_t b = 0; b < layout_.buckets().size(); ++b) {
    const Bucket& bucket = layout_.buckets()[b];
    while (static_cast<int>(in_flight.size()) >= sharding_.max_inflight) complete_oldest();
    at::Tensor mine = master_.narrow(0, bucket.shard_offset, bucket.shard_numel).to(dtype);
    at::Tensor full = at::empty({bucket.padded_numel}, mine.options());
    Work work = pg_->all_gather_async(full, mine);
    in_flight.push_back({b, full, std::move(work)});
  }
  while (!in_flight.empty()) complete_oldest();
}

}  // namespace xd::dist
