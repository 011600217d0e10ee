// `xdistill demo`: the whole method on an embedded default, on one machine.
//   corpus -> shards -> teacher (pretrained here) -> Stage I -> one Stage II expert per
//   domain -> merge -> evaluation of teacher and student -> win-and-tie report.
// Every stage writes its output atomically and is skipped when that output exists;
// training stages resume from their last checkpoint, so an interrupted demo continues
// where it stopped.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace xd::demo {

struct DemoOptions {
  std::string out = "runs/demo";
  std::string size = "tiny";    // tiny (CPU, minutes) | small (GPU)
  std::string device = "auto";
  double steps_scale = 1.0;     // < 1 shortens every training stage (CI's reduced run)
  int eval_items = 0;           // per task; 0 = the size's default
  uint64_t seed = 20261128;
  std::string stop_after;       // "teacher": stop once the teacher is pretrained and scored
  std::vector<std::string> pretrain_overrides;  // KEY=VALUE recipe settings for the pretraining (tuning)
};

// Returns the process exit code (0 done; 128+signal when a stage was interrupted).
int run_demo(const DemoOptions& options);

// Writes a random-weight Llama teacher (Hugging Face layout) for the demo's size.
void write_random_teacher(const std::string& dir, const std::string& size, uint64_t seed);

}  // namespace xd::demo
