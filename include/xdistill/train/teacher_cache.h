// The on-disk teacher cache of Stage II: for every training row, the teacher's top-k
// token ids and log-probabilities at each position, written once by
// `xdistill teacher-cache` and streamed by `xdistill train` instead of running the
// teacher. Layout of a cache directory (it appears atomically when finished):
//   meta.json   what the cache was made from (teacher, tokenizer, data, seq_len, k)
//   topk.bin    one zstd frame per row: ids int32[T*k] then log-probs (f32 or f16)[T*k]
//   index.bin   per row, sorted by row id: {int64 row_id, uint64 offset, uint64 bytes}
// Rows are looked up by the data loader's stable row id, so the cache does not
// depend on the order in which a run visits the rows.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace xd::train {

struct TeacherCacheMeta {
  int64_t seq_len = 0;        // positions per row
  int64_t top_k = 0;          // k
  std::string logprob_dtype = "f32";  // "f32" (exact) or "f16" (half the space)
  nlohmann::json source;      // teacher path/fingerprint, tokenizer, data mixture: checked on use
  int64_t rows = 0;           // filled in by the writer
};

struct TopkRow {
  int64_t row_id = -1;
  std::vector<int32_t> ids;     // [seq_len * top_k], position-major
  std::vector<float> logprobs;  // same layout; log-softmax of the full teacher distribution
};

class TeacherCacheWriter {
 public:
  TeacherCacheWriter(std::filesystem::path dir, TeacherCacheMeta meta, int zstd_level = 3);
  ~TeacherCacheWriter();  // an unfinished cache leaves nothing behind
  void add(const TopkRow& row);
  void finish();  // writes index + meta, renames into place

 private:
  std::filesystem::path dir_, staging_;
  TeacherCacheMeta meta_;
  int level_;
  std::FILE* data_ = nullptr;
  uint64_t offset_ = 0;
  std::map<int64_t, std::pair<uint64_t, uint64_t>> index_;
};

class TeacherCacheReader {
 public:
  explicit TeacherCacheReader(std::filesystem::path dir);
  ~TeacherCacheReader();
  const TeacherCacheMeta& meta() const { return meta_; }
  bool has(int64_t row_id) const;
  TopkRow read(int64_t row_id) const;  // throws xd::Error naming the cache and row

 private:
  std::filesystem::path dir_;
  TeacherCacheMeta meta_;
  std::FILE* data_ = nullptr;
  std::map<int64_t, std::pair<uint64_t, uint64_t>> index_;
};

// IEEE half <-> float, for the f16 log-prob layout (round to nearest even).
uint16_t float_to_half(float f);
float half_to_float(uint16_t h);

}  // namespace xd::train
