// A train recipe as typed values (read once from the resolved Config, validated).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "xdistill/config/config.h"
#include "xdistill/student/student_config.h"
#include "xdistill/train/lr_schedule.h"

namespace xd::train {

enum class Stage { Align, Distill, Pretrain };
const char* to_string(Stage stage);

struct DataSourceSpec {
  std::string path, name;
  double weight = 1.0;
};

struct TrainRecipe {
  // run
  std::string name, run_dir, device;
  std::string output;  // final model directory
  uint64_t seed = 1234;
  int64_t log_every = 10;
  int64_t stop_after_steps = 0;  // > 0: checkpoint and stop after this many steps of one invocation
  double peak_tflops = 989.0;
  Stage stage = Stage::Distill;
  // teacher
  std::string teacher_path, teacher_dtype, teacher_cache;
  bool create_tiny_teacher = false;
  std::string teacher_random_shape;  // benchmarks: a random teacher of this named shape, built in memory
  // student
  std::string student_init;  // empty: build from the teacher
  student::StudentConfig student;
  // data
  std::vector<DataSourceSpec> mixture;
  int64_t seq_len = 4096;
  std::string tokenizer;  // fingerprint source; empty: none checked
  int64_t synthetic_vocab = 0;  // > 0: synthetic rows (tiny recipes, benchmarks)
  int64_t synthetic_rows = 0;   // > 0: the synthetic rows repeat with this period
  // optimisation
  double lr = 1e-5, min_lr = 0, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, grad_clip = 1.0;
  LrSchedule schedule;
  int64_t micro_batch = 1, grad_accum = 1;
  // loss
  double ce_weight = 0.9, kl_weight = 0.1, temperature = 1.0;
  int64_t top_k = 256;
  // precision
  std::string compute_dtype = "bf16";
  bool activation_checkpointing = false;
  // checkpoints
  int64_t checkpoint_every = 500, checkpoint_keep = 3;
  // data parallelism
  std::string shard_optimizer = "auto";  // auto | true | false
  double bucket_mb = 100.0;              // fp32 MiB per gradient bucket

  int64_t tokens_per_step(int world = 1) const { return world * micro_batch * grad_accum * seq_len; }
  bool sharded_optimizer(int world) const { return shard_optimizer == "auto" ? world > 1 : shard_optimizer == "true"; }
  int64_t bucket_numel() const { return static_cast<int64_t>(bucket_mb * 1024.0 * 1024.0 / 4.0); }
};

// Throws xd::UsageError naming the key for inconsistent values.
TrainRecipe recipe_from_config(const config::Config& config);

}  // namespace xd::train
