// Content hashes for the merge manifest, computed while the merge streams the
// tensors (no second read of the inputs). XXH64 (the published xxHash 64-bit
// algorithm, seed 0) over 1 MiB blocks of each tensor's bytes, so blocks can be
// hashed in parallel and the result does not depend on the thread count:
//   tensor digest     = XXH64(name \0 dtype \0 shape \0 || LE64 block digests...)
//   checkpoint digest = XXH64(LE64 tensor digests in sorted name order)
// Independent of how the checkpoint is sharded. Not cryptographic: it identifies
// inputs, it does not authenticate them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "xdistill/io/safetensors.h"

namespace xd::merge {

constexpr uint64_t kHashBlockBytes = 1u << 20;

uint64_t xxh64(const void* data, size_t len, uint64_t seed = 0);
std::string hex64(uint64_t h);

// Collects the block digests of the tensors of one checkpoint, in any order of
// tensors; blocks of one tensor are added by index (parallel-safe per index once
// the tensor was started with begin_tensor).
class CheckpointHasher {
 public:
  void begin_tensor(const io::TensorInfo& info);
  // Hashes bytes [byte_begin, byte_end) of `info`'s data (block-aligned begin).
  void hash_range(const io::TensorInfo& info, const uint8_t* data, uint64_t byte_begin, uint64_t byte_end);
  std::string digest() const;  // hex; every tensor must have been fully hashed

 private:
  struct Tensor {
    std::string prefix;
    std::vector<uint64_t> blocks;
  };
  std::map<std::string, Tensor> tensors_;
};

// XXH64 of a whole file, read in blocks (for config and tokenizer files).
std::string file_digest(const std::string& path);

}  // namespace xd::merge
