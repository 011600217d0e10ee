// Data-parallel gradient reduction, overlapped with the backward pass.
//
// A post-accumulate-grad hook on every trained parameter copies its fresh gradient
// (any dtype) into an fp32 bucket buffer and frees the parameter's .grad at once, so
// no full-size gradient is ever kept in the compute dtype. When a bucket is full it
// is reduce-scattered (asynchronously, while backward goes on) and each rank adds
// its slice, averaged over ranks, to an fp32 gradient shard that accumulates over
// micro-batches (ZeRO stage 2). Buckets are launched strictly in index order, so all
// ranks issue the same collectives in the same order even if hooks fire in another.
// Parameters that got no gradient in a micro-batch count as zero (finish_backward).
#pragma once
#include <ATen/core/Tensor.h>

#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "xdistill/dist/flat_layout.h"
#include "xdistill/dist/process_group.h"

namespace xd::dist {

class GradientReducer {
 public:
  // `layout` must describe `params` (numels in order) for pg->size() ranks.
  // At most `max_inflight` bucket reductions are in flight; more wait for the oldest.
  GradientReducer(std::vector<at::Tensor> params, std::shared_ptr<ProcessGroup> pg, FlatLayout layout,
                  int max_inflight = 4);
  ~GradientReducer();  // removes the hooks
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Call after each micro-batch's backward(): reduces what backward did not finish
  // and waits for all of this micro-batch's reductions.
  void finish_backward();
  // fp32 [layout.shard_numel()]: this rank's slice of the gradient, averaged over
  // ranks and summed over the micro-batches since zero_grad(). Padding is zero.
  at::Tensor& grad_shard() { return grad_shard_; }
  void zero_grad();
  int64_t micro_batches() const { return micro_batches_; }

  // Called by the hooks (public for them only).
  void on_gradient(size_t param, const at::Tensor& grad);

 private:
  struct BucketState {
    at::Tensor staging;  // fp32 [padded_numel] while being filled
    int64_t pieces_left = 0;
    bool launched = false;
  };
  struct InFlight {
    size_t bucket;
    at::Tensor output;
    Work work;
  };
  void launch_ready_buckets();
  void launch(size_t bucket);
  void complete_oldest();
  at::Tensor& staging_for(size_t bucket);
  void reset_micro_batch();

  std::vector<at::Tensor> params_;
  std::shared_ptr<ProcessGroup> pg_;
  FlatLayout layout_;
  int max_inflight_;
  std::vector<std::vector<std::pair<size_t, size_t>>> pieces_of_param_;  // (bucket, piece index)
  std::vector<BucketState> buckets_;
  std::vector<bool> received_;
  size_t next_launch_ = 0;
  std::deque<InFlight> in_flight_;
  at::Tensor grad_shard_;
  int64_t micro_batches_ = 0;
  std::mutex mutex_;
};

// For an optimizer that keeps full fp32 gradients on every rank (train::AdamW, no
// sharding): averages `tensors` over ranks in place, after backward, packed into
// fp32 buckets of at most `bucket_numel` elements (one all-reduce per bucket, up to
// `max_inflight` in flight). Tensors must be contiguous float32.
void all_reduce_mean(ProcessGroup& pg, std::vector<at::Tensor>& tensors, int64_t bucket_numel = 25'000'000,
                     int max_inflight = 4);

}  // namespace xd::dist
