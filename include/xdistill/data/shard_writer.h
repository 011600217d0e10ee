// Writes a shard set (layout: manifest.h) from token ids. Used by `xdistill data
// prepare`, and directly by anything that already has token ids (synthetic corpora):
//
//   xd::data::ShardWriterOptions opt;
//   opt.tokenizer.fingerprint = tokenizer.fingerprint();
//   opt.tokenizer.vocab_size = tokenizer.vocab_size();
//   xd::data::ShardWriter writer("data/synthetic", opt);
//   writer.add_document(ids);              // loss mask: all ones
//   writer.add_document(ids, mask);        // mask[i] = 1: token i is a training target
//   writer.finish();
//
// The set is staged in "<dir>.partial" and renamed to `dir` by finish(), so `dir`
// never holds a half-written set. Each shard's files are written atomically.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "xdistill/data/manifest.h"

namespace xd::data {

struct ShardWriterOptions {
  TokenizerInfo tokenizer;                 // recorded in the manifest; the loader checks the fingerprint
  int64_t tokens_per_shard = int64_t(1) << 26;  // a shard closes at the first document end past this
  bool append_eos = false;                 // append tokenizer.eos_id to every document
};

class ShardWriter {
 public:
  // A fresh set: an old staging directory of `dir` is removed.
  ShardWriter(std::string dir, ShardWriterOptions options);
  // Continues a staging directory whose completed shards are `done` (resumed preparation).
  ShardWriter(std::string dir, ShardWriterOptions options, std::vector<ShardInfo> done);
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // An empty loss_mask means all ones. Throws xd::Error on an empty document, a
  // negative id, an id >= vocab_size (when known) or a mask of the wrong length.
  void add_document(const std::vector<int32_t>& ids, const std::vector<uint8_t>& loss_mask = {});
  void add_document(const int32_t* ids, const uint8_t* loss_mask, size_t count);

  // Completed shards, in order (the current, still open shard is not among them).
  const std::vector<ShardInfo>& shards() const { return shards_; }
  int64_t documents() const { return documents_; }
  std::string staging_dir() const { return staging_; }

  // Closes the last shard, writes manifest.json and moves the set into place.
  Manifest finish(const nlohmann::json& stats = nlohmann::json::object(),
                  const nlohmann::json& recipe = nlohmann::json::object());

 private:
  void flush_shard();

  std::string dir_, staging_;
  ShardWriterOptions options_;
  std::vector<ShardInfo> shards_;
  std::vector<uint32_t> tokens_;
  std::vector<uint64_t> doc_starts_;
  std::vector<uint8_t> mask_;
  int64_t documents_ = 0;
  bool finished_ = false;
};

}  // namespace xd::data
