#include "xdistill/dist/grad_reducer.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/torch.h>

#include "xdistill/util/error.h"

namespace xd::dist {
namespace {

// AccumulateGrad calls this once per backward, after .grad holds the new sum.
struct ReduceHook : torch::autograd::PostAccumulateGradHook {
  ReduceHook(GradientReducer* reducer, size_t param) : reducer(reducer), param(param) {}
  void operator()(const torch::autograd::Variable& tensor) override {
    reducer->on_gradient(param, tensor.grad());
    tensor.mutable_grad().reset();  // the fp32 bucket holds it now
  }
  GradientReducer* reducer;
  size_t param;
};

}  // namespace

GradientReducer::GradientReducer(std::vector<at::Tensor> params, std::shared_ptr<ProcessGroup> pg, FlatLayout layout,
                                 int max_inflight)
    : params_(std::move(params)), pg_(std::move(pg)), layout_(std::move(layout)), max_inflight_(std::max(1, max_inflight)) {
  XD_CHECK(layout_.param_numels().size() == params_.size(), "gradient reducer: layout describes ",
           layout_.param_numels().size(), " parameters, got ", params_.size());
  XD_CHECK(layout_.world_size() == pg_->size(), "gradient reducer: layout is for ", layout_.world_size(),
           " ranks, the process group has ", pg_->size());
  pieces_of_param_.resize(params_.size());
  buckets_.resize(layout_.buckets().size());
  for (size_t b = 0; b < layout_.buckets().size(); ++b)
    for (size_t k = 0; k < layout_.buckets()[b].pieces.size(); ++k)
      pieces_of_param_[layout_.buckets()[b].pieces[k].param].emplace_back(b, k);
  received_.assign(params_.size(), false);
  const auto device = params_.empty() ? at::Device(at::kCPU) : params_.front().device();
  grad_shard_ = at::zeros({layout_.shard_numel()}, at::TensorOptions().dtype(at::kFloat).device(device));
  for (size_t i = 0; i < params_.size(); ++i) {
    XD_CHECK(params_[i].requires_grad() && params_[i].is_leaf(), "gradient reducer: parameter ", i,
             " is not a leaf that requires grad");
    torch::autograd::impl::set_post_acc_grad_hooks(params_[i], std::make_unique<ReduceHook>(this, i));
  }
  reset_micro_batch();
}

GradientReducer::~GradientReducer() {
  for (auto& p : params_) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
  try {
    while (!in_flight_.empty()) complete_oldest();
  } catch (...) {
    // A failed collective while unwinding: the process group reports it elsewhere.
  }
}

void GradientReducer::reset_micro_batch() {
  for (size_t b = 0; b < buckets_.size(); ++b) {
    buckets_[b] = BucketState{};
    buckets_[b].pieces_left = static_cast<int64_t>(layout_.buckets()[b].pieces.size());
  }
  received_.assign(params_.size(), false);
  next_launch_ = 0;
}

at::Tensor& GradientReducer::staging_for(size_t bucket) {
  BucketState& state = buckets_[bucket];
  if (!state.staging.defined()) {
    const Bucket& b = layout_.buckets()[bucket];
    state.staging = at::empty({b.padded_numel}, grad_shard_.options());
    if (b.padded_numel > b.numel) state.staging.narrow(0, b.numel, b.padded_numel - b.numel).zero_();
  }
  return state.staging;
}

void GradientReducer::on_gradient(size_t param, const at::Tensor& grad) {
  std::lock_guard<std::mutex> lock(mutex_);
  XD_CHECK(!received_[param], "gradient reducer: parameter ", param,
           " got a second gradient before finish_backward(): call finish_backward() after each backward()");
  received_[param] = true;
  XD_CHECK(grad.defined(), "gradient reducer: parameter ", param, " has no gradient in its hook");
  const at::Tensor flat = grad.reshape({-1});
  for (const auto& [bucket, k] : pieces_of_param_[param]) {
    const BucketPiece& piece = layout_.buckets()[bucket].pieces[k];
    staging_for(bucket).narrow(0, piece.bucket_offset, piece.length).copy_(flat.narrow(0, piece.param_offset, piece.length));
    --buckets_[bucket].pieces_left;
  }
  launch_ready_buckets();
}

void GradientReducer::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pieces_left == 0) launch(next_launch_++);
}

void GradientReducer::launch(size_t bucket) {
  while (static_cast<int>(in_flight_.size()) >= max_inflight_) complete_oldest();
  at::Tensor& staging = staging_for(bucket);
  at::Tensor output = at::empty({layout_.buckets()[bucket].shard_numel}, staging.options());
  Work work = pg_->reduce_scatter_sum_async(output, staging);
  in_flight_.push_back({bucket, output, std::move(work)});
  buckets_[bucket].launched = true;
  buckets_[bucket].staging = at::Tensor();  // the Work keeps it alive until done
}

void GradientReducer::complete_oldest() {
  InFlight job = std::move(in_flight_.front());
  in_flight_.pop_front();
  job.work.wait();
  const Bucket& b = layout_.buckets()[job.bucket];
  // Average over ranks, as a single process would with the same global batch.
  if (pg_->size() > 1) job.output.div_(static_cast<double>(pg_->size()));
  grad_shard_.narrow(0, b.shard_offset, b.shard_numel).add_(job.output);
}

void GradientReducer::finish_backward() {
  std::lock_guard<std::mutex> lock(mutex_);
  // Parameters without a gradient this time (unused in the forward) count as zero,
  // so that every rank still issues every bucket's collective.
  for (size_t b = next_launch_; b < buckets_.size(); ++b) {
    if (buckets_[b].pieces_left == 0) continue;
    for (const BucketPiece& piece : layout_.buckets()[b].pieces)
      if (!received_[piece.param]) staging_for(b).narrow(0, piece.bucket_offset, piece.length).zero_();
    buckets_[b].pieces_left = 0;
  }
  launch_ready_buckets();
  while (!in_flight_.empty()) complete_oldest();
  ++micro_batches_;
  reset_micro_batch();
}

void GradientReducer::zero_grad() {
  std::lock_guard<std::mutex> lock(mutex_);
  XD_CHECK(in_flight_.empty(), "gradient reducer: zero_grad() while reductions are in flight");
  grad_shard_.zero_();
  micro_batches_ = 0;
}

void all_reduce_mean(ProcessGroup& pg, std::vector<at::Tensor>& tensors, int64_t bucket_numel, int max_inflight) {
  if (pg.size() == 1 || tensors.empty()) return;
  torch::NoGradGuard no_grad;
  for (const auto& t : tensors)
    XD_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous(), "all_reduce_mean: tensors must be contiguous float32");
  struct Job {
    std::vector<size_t> members;  // tensors packed in `flat`, in order
    at::Tensor flat;
    Work work;
  };
  std::deque<Job> in_flight;
  auto finish_oldest = [&] {
    Job job = std::move(in_flight.front());
    in_flight.pop_front();
    job.work.wait();
    job.flat.div_(static_cast<double>(pg.size()));
    int64_t offset = 0;
    for (size_t i : job.members) {
      at::Tensor& t = tensors[i];
      if (!t.is_same(job.flat)) t.view({-1}).copy_(job.flat.narrow(0, offset, t.numel()));
      offset += t.numel();
    }
  };
  auto launch = [&](std::vector<size_t> members) {
    if (members.empty()) return;
    while (static_cast<int>(in_flight.size()) >= std::max(1, max_inflight)) finish_oldest();
    at::Tensor flat;
    if (members.size() == 1) {
      flat = tensors[members[0]];  // large tensors are reduced in place
    } else {
      std::vector<at::Tensor> parts;
      for (size_t i : members) parts.push_back(tensors[i].view({-1}));
      flat = at::cat(parts);
    }
    Work work = pg.all_reduce_sum_async(flat);
    in_flight.push_back({std::move(members), flat, std::move(work)});
  };
  std::vector<size_t> members;
  int64_t filled = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (filled + tensors[i].numel() > bucket_numel && !members.empty()) {
      launch(std::move(members));
      members.clear();
      filled = 0;
    }
    members.push_back(i);
    filled += tensors[i].numel();
  }
  launch(std::move(members));
  while (!in_flight.empty()) finish_oldest();
}

}  // namespace xd::dist
