// Safetensors <-> at::Tensor. Loading converts dtype and device on the way and is
// zero-copy on the CPU when the stored dtype is the one asked for.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "xdistill/io/safetensors.h"

namespace xd::io {

at::ScalarType to_scalar_type(DType dtype);
DType from_scalar_type(at::ScalarType type);  // throws xd::Error for types safetensors lacks here

// The tensor `name` of `ck`, as `dtype` (nullopt: as stored) on `device`. On the
// CPU with the stored dtype, the tensor views the mapping (copy-on-write pages:
// in-place writes are private to the process) and keeps the checkpoint's files
// mapped while it lives. Otherwise it is a fresh tensor; for a GPU the stored bytes
// are copied over first and converted there.
at::Tensor load_tensor(const Checkpoint& ck, const std::string& name,
                       std::optional<at::ScalarType> dtype, const at::Device& device);

// Writes tensors (any device, any layout) as a sharded safetensors checkpoint in
// `dir` (see CheckpointWriter), one tensor at a time through host memory.
// metadata gets "format": "pt" unless it sets "format" (transformers expects it).
void save_tensors(const std::string& dir, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                  std::map<std::string, std::string> metadata = {}, uint64_t max_shard_bytes = 5ull << 30);

}  // namespace xd::io
