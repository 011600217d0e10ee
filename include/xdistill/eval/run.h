// `xdistill eval run`: load a model, score task definitions, write a results file.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace xd::eval {

struct RunCommand {
  std::string model_dir, tokenizer_dir, out;
  std::vector<std::string> task_files;
  std::string device = "auto";
  std::string dtype = "auto";
  std::string batch_size = "auto";     // a positive integer or "auto"
  std::optional<int64_t> limit;
  bool add_bos = false;                // prepend BOS to every encoded text
};
void run_eval_command(const RunCommand& cmd);  // src/eval/run_command.cpp (xdistill_torch)

}  // namespace xd::eval
