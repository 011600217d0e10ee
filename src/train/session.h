// The state of a training run, shared by the trainer's translation units (private
// to src/train). A session owns the models, the optimizer and the data source.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "xdistill/dist/process_group.h"
#include "xdistill/dist/sharded_adamw.h"
#include "xdistill/models/decoder.h"
#include "xdistill/student/student_model.h"
#include "xdistill/train/adamw.h"
#include "xdistill/train/batch_source.h"
#include "xdistill/train/recipe.h"
#include "xdistill/train/teacher_cache.h"

namespace xd::train {

struct TrainSession {
  TrainRecipe recipe;
  std::string resolved_config;  // the recipe as YAML, saved with every checkpoint
  at::Device device{at::kCPU};
  at::ScalarType compute_dtype = at::kFloat;
  std::shared_ptr<models::Decoder> teacher;  // frozen; null for pretrain or a cached teacher
  std::shared_ptr<models::Decoder> model;    // the model being trained
  std::vector<std::pair<std::string, at::Tensor>> trained;  // (internal name, parameter)
  // Data parallelism: the ranks (a group of one without a launcher) and, with
  // dist.shard_optimizer, the sharded optimizer that replaces `optimizer` (then null).
  std::shared_ptr<dist::ProcessGroup> group = dist::ProcessGroup::single();
  std::unique_ptr<AdamW> optimizer;
  std::unique_ptr<dist::ShardedAdamW> sharded;
  std::unique_ptr<BatchSource> data;
  std::unique_ptr<TeacherCacheReader> cache;
  std::pair<at::Tensor, at::Tensor> fixed_top_k;  // benchmarks: a given teacher top-k (ids, log-probs)
  int64_t step = 0;  // optimizer steps taken
};

// Loss parts of one micro-batch, detached (summed over micro-batches by the caller).
struct MicroLosses {
  at::Tensor total, ce, kl, align;  // undefined parts do not apply to the stage
  int64_t tokens = 0;
};

// Forward + backward of one micro-batch; the loss is scaled by `scale` (1/grad_accum)
// before backward. Gradients land in the trained parameters' .grad.
MicroLosses run_micro_batch(TrainSession& session, const data::Batch& batch, double scale);

// Float32 logits of a decoder, optionally recomputing each layer in the backward pass.
at::Tensor forward_logits(models::Decoder& model, const at::Tensor& ids, bool checkpoint_layers);

// The teacher's top-k for a batch: online (teacher forward) or from the cache.
std::pair<at::Tensor, at::Tensor> teacher_targets(TrainSession& session, const data::Batch& batch,
                                                  const at::Tensor& ids);

// Batch tokens as int64 tensors [rows, seq_len] on a device.
at::Tensor batch_tensor(const std::vector<int32_t>& values, const data::Batch& batch, const at::Device& device);

// Checkpoints (train_checkpoint.cpp).
std::string save_training_checkpoint(const TrainSession& session);  // returns its path
// Restores the newest checkpoint of the run directory; false when there is none.
bool restore_training_checkpoint(TrainSession& session);

// The model config of a named benchmark shape: llama-8b, llama-3b, tiny (train_bench.cpp).
nlohmann::json shape_config(const std::string& shape);

// Model set-up (model_setup.cpp).
// draw_on_device: normal draws by the parameters' own device generator, seeded
// afresh with `seed` (fast on a GPU; the same draw on every rank and for every
// dtype of one device type), instead of the CPU generator that gives the same
// weights on every machine.
void init_random_weights(models::Decoder& model, uint64_t seed, double stddev = 0.02, bool draw_on_device = false);
// A tiny random Llama teacher (2 layers, hidden 64, GQA 4/2) saved at dir.
void create_tiny_teacher(const std::string& dir, int64_t vocab, uint64_t seed);
// Model FLOPs per trained token of a step of the session's stage (see the definition there).
double flops_per_token(const TrainSession& session);
// Peak memory of the process's device since start (bytes): CUDA allocator peak or CPU max RSS.
int64_t peak_memory_bytes(const at::Device& device);

}  // namespace xd::train
