// Compatibility of merge inputs, checked before anything is written: the experts
// (and the base, if any) must have the same tensor names, shapes and dtypes, the
// same config.json apart from bookkeeping fields, and the same tokenizer.
#pragma once
#include <string>
#include <vector>

#include "xdistill/io/safetensors.h"

namespace xd::merge {

struct MergeInput {
  std::string label;  // "expert 2 (runs/code)" or "base (runs/theta0)"
  std::string dir;
  io::Checkpoint checkpoint;
};

// config.json fields that may differ between inputs: where a checkpoint came from
// and which library wrote it, and its dtype (every input is cast to the output
// dtype, which the merged config records).
const std::vector<std::string>& ignored_config_fields();
// Tokenizer files whose bytes must be identical across inputs (present in all or none).
const std::vector<std::string>& tokenizer_files();

// Throws one xd::Error listing every difference, each naming the tensor, field or
// file and the two inputs. inputs[0] is the reference.
// Non-float tensors (integer, bool) cannot be averaged: they must be byte-identical.
void check_compatible(const std::vector<MergeInput>& inputs);

}  // namespace xd::merge
