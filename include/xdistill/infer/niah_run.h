// `xdistill eval niah`: needle-in-a-haystack for one or more models (a teacher and
// its students) on the same synthetic haystacks. (No torch in this header.)
#pragma once
#include <string>
#include <vector>

#include "xdistill/infer/niah.h"

namespace xd::infer {

struct NiahCommand {
  std::vector<std::string> models;
  std::string tokenizer_dir;  // default: the first model's directory
  NiahOptions options;
  std::string device = "auto", dtype = "auto";
  int64_t batch_size = 8;
  int64_t max_new_tokens = 12;
  int64_t prefill_chunk = 4096;
  std::string out;            // JSON report
};

void run_niah_command(const NiahCommand& command);

}  // namespace xd::infer
