// Helpers for the merge tests: tiny checkpoints written through CheckpointWriter.
#pragma once
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "xdistill/io/safetensors.h"
#include "xdistill/merge/convert.h"

namespace xd::merge::testing {

namespace stdfs = std::filesystem;

inline stdfs::path fresh_dir(const std::string& name) {
  const stdfs::path d = stdfs::temp_directory_path() / ("xd_merge_" + name + "_" + std::to_string(getpid()));
  stdfs::remove_all(d);
  stdfs::create_directories(d);
  return d;
}

struct FakeTensor {
  std::string name;
  std::vector<float> values;
  std::vector<int64_t> shape;  // empty: 1-D
  io::DType dtype = io::DType::F32;
};

inline std::vector<uint8_t> encode(const std::vector<float>& v, io::DType dtype) {
  std::vector<uint8_t> bytes(v.size() * io::dtype_size(dtype));
  from_f32(v.data(), static_cast<int64_t>(v.size()), dtype, bytes.data());
  return bytes;
}

// A checkpoint directory with the given float tensors, a config.json and a tokenizer.json.
inline void write_checkpoint(const stdfs::path& dir, const std::vector<FakeTensor>& tensors,
                             const std::string& config = R"({"model_type": "llama", "hidden_size": 4, "_name_or_path": "x"})",
                             const std::string& tokenizer = R"({"model": {"vocab": {"a": 0}}})") {
  stdfs::create_directories(dir);
  io::CheckpointWriter w(dir.string());
  for (const auto& t : tensors) {
    const auto bytes = encode(t.values, t.dtype);
    const std::vector<int64_t> shape = t.shape.empty() ? std::vector<int64_t>{static_cast<int64_t>(t.values.size())} : t.shape;
    w.add(t.name, t.dtype, shape, bytes.data(), bytes.size());
  }
  w.finish();
  if (!config.empty()) std::ofstream(dir / "config.json") << config;
  if (!tokenizer.empty()) std::ofstream(dir / "tokenizer.json") << tokenizer;
}

inline std::vector<float> read_f32(const io::Checkpoint& ck, const std::string& name) {
  const auto& info = ck.info(name);
  std::vector<float> out(static_cast<size_t>(info.numel()));
  to_f32(ck.data(name), info.dtype, info.numel(), out.data());
  return out;
}

}  // namespace xd::merge::testing
