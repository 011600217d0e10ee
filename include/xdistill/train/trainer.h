// The training tasks behind `xdistill train`, `xdistill teacher-cache` and
// `xdistill bench-train` (the command file only parses options). No torch here.
#pragma once
#include <cstdint>
#include <string>

#include "xdistill/config/config.h"

namespace xd::train {

// Runs the recipe's stage. With `resume`, continues from the newest checkpoint of
// run.dir (exactly: model, optimizer, schedule, RNG and data state). Returns the
// process exit code: 0 when done, 128 + signal when stopped by SIGINT/SIGTERM/SIGUSR1
// (after writing a checkpoint).
int run_training(const config::Config& recipe, bool resume);

// Runs the recipe's teacher over the rows a run of the recipe visits (`rows` rows;
// <= 0: schedule.steps * grad_accum * micro_batch) and writes their top-k to `out`
// (default: teacher.cache).
void write_teacher_cache(const config::Config& recipe, const std::string& out, int64_t rows);

struct TrainBenchmark {
  std::string stage = "align";   // align | distill
  std::string shape = "llama-8b";  // llama-8b | llama-3b | tiny
  int64_t batch = 2, seq = 4096, steps = 10, warmup = 2;
  std::string device = "auto";
  bool activation_checkpointing = true;  // distill only
  int64_t chunk_size = 0;                // the student's mLSTM chunk (64 | 128); 0: the recipe default
  double peak_tflops = 989.0;
  int profile_top = 0;  // > 0: profile one more step and print the top GPU kernels by time
};
// Random-weight models of the named shapes, built directly (no checkpoint on disk);
// prints tokens/s, MFU and peak memory of the stage's training step.
void run_train_benchmark(const TrainBenchmark& bench);

}  // namespace xd::train
