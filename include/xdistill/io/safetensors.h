// Safetensors checkpoints: reading (memory-mapped, validated before any tensor is
// touched) and writing (sharded by size, with an index, atomic). No torch here;
// include/xdistill/io/torch_io.h turns these bytes into at::Tensor.
//
// File layout (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets": [b, e]},
// "__metadata__": {str: str}}, then the data buffer; offsets are relative to it.
// A checkpoint directory holds model.safetensors, or model.safetensors.index.json
// ({"metadata": {...}, "weight_map": {tensor: shard file}}) and its shards.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace xd::io {

enum class DType { BOOL, U8, I8, I16, I32, I64, F16, BF16, F32, F64 };

size_t dtype_size(DType dtype);            // bytes per element
const char* dtype_name(DType dtype);       // the safetensors spelling: "BF16", "F32", ...
DType parse_dtype(const std::string& name);  // throws xd::Error on an unknown name

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t offset_begin = 0, offset_end = 0;  // relative to the file's data buffer
  std::string file;                           // path of the file holding it

  uint64_t nbytes() const { return offset_end - offset_begin; }
  int64_t numel() const;
};

// Product of the dims; throws xd::Error (naming `what`) on a negative dim or overflow.
int64_t checked_numel(const std::vector<int64_t>& shape, const std::string& what);
std::string shape_string(const std::vector<int64_t>& shape);  // "[4, 8]"

// One .safetensors file, mapped privately (copy-on-write) and fully validated on open: the header
// length fits the file, the header is JSON of the right form, every dtype is known,
// every shape matches its byte count, every range lies inside the data buffer and
// no two ranges overlap. Errors name the file, the tensor and the problem.
class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo& info(const std::string& name) const;
  const uint8_t* data(const TensorInfo& info) const { return data_start_ + info.offset_begin; }
  uint64_t file_size() const { return size_; }

  // Page-cache hints for streaming readers (merge): `prefetch` asks the kernel to
  // read the tensor's pages ahead; `release` drops them from this process's
  // resident set (MADV_DONTNEED; the mapping stays valid and refaults on access;
  // pages written in place through a zero-copy tensor would revert to the file).
  // Both act on bytes [byte_begin, byte_end) of the tensor (default: all of it).
  void prefetch(const TensorInfo& info, uint64_t byte_begin = 0, uint64_t byte_end = UINT64_MAX) const;
  void release(const TensorInfo& info, uint64_t byte_begin = 0, uint64_t byte_end = UINT64_MAX) const;

 private:
  SafetensorsFile() = default;
  void parse_header(uint64_t header_len);

  std::string path_;
  void* map_ = nullptr;
  uint64_t size_ = 0;
  const uint8_t* data_start_ = nullptr;
  uint64_t data_len_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint: a directory with model.safetensors, or model.safetensors.index.json
// plus its shards (the index and the shard headers must agree: each tensor in
// exactly one shard, each index entry present in the shard it names). A path to a
// single .safetensors file is accepted too. Cheap to copy (shared state), so a
// zero-copy tensor can keep the mappings alive by holding a copy.
class Checkpoint {
 public:
  static Checkpoint open(const std::string& dir);

  const std::string& path() const;
  std::vector<std::string> names() const;                 // sorted
  const TensorInfo& info(const std::string& name) const;  // throws xd::Error naming the tensor
  bool has(const std::string& name) const;
  const uint8_t* data(const std::string& name) const;     // valid while a copy of this Checkpoint lives
  std::map<std::string, std::string> metadata() const;    // __metadata__ of the shards
  std::vector<std::string> files() const;                 // the .safetensors files, sorted
  uint64_t total_bytes() const;                           // sum of the tensors' byte sizes

  // Throws one xd::Error listing every missing, unexpected (unless allowed) and
  // mis-shaped tensor.
  void check_tensors(const std::map<std::string, std::vector<int64_t>>& expected_shapes,
                     bool allow_unexpected = false) const;

  // See SafetensorsFile::prefetch / release; a byte range of the tensor, default all.
  void prefetch(const std::string& name, uint64_t byte_begin = 0, uint64_t byte_end = UINT64_MAX) const;
  void release(const std::string& name, uint64_t byte_begin = 0, uint64_t byte_end = UINT64_MAX) const;

 private:
  struct State;
  std::shared_ptr<const State> state_;
};

// Writes a checkpoint into `dir` (created if missing): tensors are streamed to
// disk as they are added, a new shard starts when the current one would exceed
// max_shard_bytes, and `metadata` becomes each shard's __metadata__. Within a
// shard, tensors are laid out by decreasing element size so every tensor is
// aligned (the data buffer itself starts 8-byte aligned). One shard is named
// model.safetensors; several are model-0000i-of-0000n.safetensors plus
// model.safetensors.index.json. Each file appears atomically (temporary name, then
// rename); stale shards or index of an earlier checkpoint in `dir` are removed by
// finish(). For an output directory that appears only when complete, write into a
// staging directory and rename it (xd::fs::replace_directory).
class CheckpointWriter {
 public:
  CheckpointWriter(std::string dir, uint64_t max_shard_bytes = 5ull << 30,
                   std::map<std::string, std::string> metadata = {});
  ~CheckpointWriter();  // without finish(): removes its temporary files
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  struct PlannedTensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  // Optional, before any add(): declares every tensor up front. Shards and headers
  // are then fixed in advance and each add() writes its bytes straight to their
  // final place (no temporary data file, no second copy); add() may come in any
  // order, and finish() checks that every planned tensor was added.
  void plan(const std::vector<PlannedTensor>& tensors);

  void add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* bytes,
           size_t nbytes);
  void finish();
  // Final shard file names (valid after finish()).
  const std::vector<std::string>& shard_files() const { return final_names_; }

 private:
  struct Shard;
  void close_shard();
  void add_planned(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                   const void* bytes, size_t nbytes);

  std::string dir_;
  uint64_t max_shard_bytes_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::unique_ptr<Shard>> shards_;  // closed shards (assembled temp files)
  std::unique_ptr<Shard> open_;                 // shard being filled
  std::map<std::string, size_t> seen_;          // tensor -> shard index
  bool planned_ = false;
  std::map<std::string, std::pair<size_t, size_t>> plan_;  // tensor -> (shard, entry)
  std::vector<std::string> final_names_;
  bool finished_ = false;
};

}  // namespace xd::io
