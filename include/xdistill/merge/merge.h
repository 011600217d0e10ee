// Stage III (method.md §3): merge K experts into one student, streaming tensor by
// tensor in f32 so that peak memory is a few tensors' worth whatever K is.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "xdistill/merge/methods.h"

namespace xd::merge {

struct ExpertSpec {
  std::string dir;
  std::optional<double> weight;   // unset for all: uniform
  std::optional<double> density;  // unset: MergeSpec::density
};

struct MergeSpec {
  std::vector<ExpertSpec> experts;
  std::string base;                // θ(0); required by task_arithmetic, ties, dare
  Method method = Method::Linear;
  std::optional<double> density;   // default density of ties / dare
  uint64_t seed = 0;               // dare's drop masks
  bool normalize = true;           // rescale the weights to sum to 1 (with a warning if they did not)
  std::string dtype = "auto";      // output float dtype: auto (as stored) | bf16 | f16 | f32
  std::string out;
  bool overwrite = false;          // replace an existing output directory
  uint64_t max_shard_bytes = 5ull << 30;
  int threads = 0;                 // 0 = all cores
  int64_t chunk_elements = 1 << 22;  // elements per streamed chunk (multiple of 2^19)
};

struct MergeResult {
  std::vector<double> weights;  // as used (normalised unless normalize = false)
  uint64_t tensors = 0, bytes_read = 0, bytes_written = 0;
  double seconds = 0;
};

// Weights as used: given ones (all or none), else uniform; normalised to sum 1
// when spec.normalize (warning if they did not already). Negative weights, a sum
// of 0, or a count that differs from the experts' is a UsageError.
std::vector<double> resolve_weights(const MergeSpec& spec);
// Densities as used, one per expert; a UsageError when missing or outside (0, 1]
// for ties / dare; empty for the other methods.
std::vector<double> resolve_densities(const MergeSpec& spec);

// Validates the spec and the inputs' compatibility, then writes the merged
// checkpoint, the copied config / tokenizer files and merge_manifest.json into a
// staging directory renamed to spec.out only once complete.
MergeResult run_merge(const MergeSpec& spec);

}  // namespace xd::merge
