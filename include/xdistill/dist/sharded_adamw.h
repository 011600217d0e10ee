// AdamW with ZeRO-style sharding (stages 1 and 2): each rank keeps fp32 master
// weights and both moments for its slice of every bucket only (see flat_layout.h),
// receives its slice of the averaged fp32 gradient by reduce-scatter
// (GradientReducer), steps on it, and all-gathers the updated weights in the
// parameters' own dtype. With one rank it is a plain AdamW with fp32 master weights
// and fp32 gradient accumulation.
//
// The update is torch::optim::AdamW's, element by element (decoupled weight decay,
// bias corrections), and clipping is clip_grad_norm_'s (coefficient
// max_norm / (norm + 1e-6), applied when below 1) with the norm taken over all
// ranks' shards.
//
// Use, on every rank:
//   ShardedAdamW opt(params, pg, adam, sharding);   // broadcasts rank 0's weights
//   for each step:
//     for each micro-batch: (loss / grad_accum).backward(); opt.finish_backward();
//     double norm = opt.clip_grad_norm(max_norm);    // global, before clipping
//     opt.step(lr);                                  // update, all-gather, zero the gradients
// (the same calls as train::AdamW's accumulate_gradients / clip_grad_norm / step).
#pragma once
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "xdistill/dist/flat_layout.h"
#include "xdistill/dist/process_group.h"

namespace xd::dist {

class GradientReducer;

struct TrainedParam {
  std::string name;
  at::Tensor tensor;  // a contiguous leaf with requires_grad
  bool decay = true;  // apply weight decay (usually off for norms and biases)
};

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

struct ShardingOptions {
  int64_t bucket_numel = 25'000'000;  // fp32 elements per bucket (100 MB)
  int max_inflight = 4;               // bucket collectives in flight at once
};

struct StepResult {
  double grad_norm = 0.0;  // global L2 norm before clipping
  double clip_coef = 1.0;  // factor applied to the gradient (1 = not clipped)
  bool applied = true;     // false: the norm was not finite, the step was skipped
};

class ShardedAdamW {
 public:
  ShardedAdamW(std::vector<TrainedParam> params, std::shared_ptr<ProcessGroup> pg, AdamWOptions adam = {},
               ShardingOptions sharding = {});
  ~ShardedAdamW();

  // After each micro-batch's backward(): completes this micro-batch's reduction.
  void finish_backward();
  void accumulate_gradients() { finish_backward(); }  // train::AdamW's name for it
  // The global L2 norm of the averaged gradient over all ranks, before clipping;
  // scales the gradient by max_norm / (norm + 1e-6) when that is below 1.
  // max_norm <= 0 only measures. A non-finite norm makes the next step() skip.
  double clip_grad_norm(double max_norm);
  // AdamW on this rank's shard, all-gather of the weights, gradients zeroed.
  // Returns false (and changes nothing but the zeroed gradients) when the gradient
  // norm was not finite.
  bool step(double lr);
  // Both of the above.
  StepResult step(double lr, double max_grad_norm);
  int64_t step_count() const { return step_; }
  int64_t micro_batches() const;

  const FlatLayout& layout() const { return layout_; }
  const std::vector<TrainedParam>& params() const { return params_; }
  ProcessGroup& group() { return *pg_; }
  // fp32 state bytes held by this rank (master + moments + gradient shard).
  int64_t state_bytes() const;

  // Checkpoint: every rank writes <dir>/optim/shard-RRRRR-of-WWWWW.pt atomically.
  void save_shard(const std::filesystem::path& checkpoint_dir) const;
  // Reads this rank's shard. If the checkpoint was written by another world size,
  // rebuilds this rank's slices from all old shards (each rank then reads the whole
  // optimizer state once: CPU memory for 12 bytes per parameter). The parameters
  // themselves come from the model checkpoint; they are not touched here.
  void load_shard(const std::filesystem::path& checkpoint_dir);
  static std::string shard_file(int rank, int world);
  // Takes this rank's slices of a whole (unsharded) optimizer state, e.g. a
  // checkpoint of train::AdamW written by one process: `fetch(name, field)` returns
  // parameter `name`'s full fp32 tensor for field "master", "exp_avg" or "exp_avg_sq".
  using FullStateFetch = std::function<at::Tensor(const std::string& name, const std::string& field)>;
  void load_full_state(const FullStateFetch& fetch, int64_t step);

 private:
  void gather_parameters();
  void apply_weight_decay(double lr);

  std::vector<TrainedParam> params_;
  std::shared_ptr<ProcessGroup> pg_;
  AdamWOptions adam_;
  ShardingOptions sharding_;
  FlatLayout layout_;
  std::vector<std::pair<int64_t, int64_t>> decay_runs_;  // (shard offset, length) with weight decay
  at::Tensor master_, exp_avg_, exp_avg_sq_;             // fp32 [shard_numel]
  std::unique_ptr<GradientReducer> reducer_;
  int64_t step_ = 0;
  double last_norm_ = 0.0;
  bool norm_measured_ = false;
};

}  // namespace xd::dist
