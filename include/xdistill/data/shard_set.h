// Read access to a shard set (layout: manifest.h): its shards are memory-mapped and
// seen as one token stream, the concatenation of the shards in manifest order.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xdistill/data/manifest.h"

namespace xd::data {

class ShardSet {
 public:
  // Reads the manifest and maps every shard, checking each file's size against the
  // manifest. With verify_checksums, also checks every file's SHA-256 (reads all bytes).
  static ShardSet open(const std::string& dir, bool verify_checksums = false);

  const std::string& dir() const { return dir_; }
  const Manifest& manifest() const { return manifest_; }
  int64_t tokens() const { return manifest_.tokens; }

  // Copies tokens [start, start + count) of the stream, and their loss mask, across
  // shard boundaries. Throws xd::Error if the range is outside the stream.
  void read(int64_t start, int64_t count, uint32_t* tokens_out, uint8_t* mask_out) const;
  // Document start offsets of shard `index` (documents + 1 entries, last = token count).
  std::vector<uint64_t> document_starts(size_t index) const;

  // Throws an xd::Error naming both fingerprints if the set was tokenized with a
  // different tokenizer. An empty `expected` accepts any tokenizer.
  void check_fingerprint(const std::string& expected) const;

  struct Mapping;  // a read-only memory mapping of one file (defined in shard_set.cpp)

 private:
  std::string dir_;
  Manifest manifest_;
  std::vector<std::shared_ptr<Mapping>> tokens_, masks_;
  std::vector<int64_t> shard_starts_;  // stream offset of each shard's first token
};

// Full integrity check: file sizes, checksums, document offsets (increasing, ending at
// the token count), mask values in {0,1}, token ids below the vocabulary size. Returns
// a list of problems (empty = sound).
std::vector<std::string> verify_shard_set(const std::string& dir);

}  // namespace xd::data
