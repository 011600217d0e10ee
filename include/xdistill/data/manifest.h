// The on-disk layout of a shard set (what `xdistill data prepare` and ShardWriter write,
// what the loader reads). A shard set is a directory:
//
//   manifest.json                 counts, checksums, tokenizer fingerprint, statistics
//   shard_00000.tokens.u32        little-endian uint32 token ids of shard 0
//   shard_00000.docs.u64          little-endian uint64 document start offsets into the
//                                 shard's tokens, one per document, then the token count
//   shard_00000.mask.u8           one byte per token: 1 = the token is a training target
//   shard_00001.*                 ...
//
// Documents never straddle shards. With `eos_appended`, each document ends with the
// tokenizer's EOS, which the loss mask of the document's last token also covers.
// The loader treats the concatenation of all shards as one token stream.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace xd::data {

inline constexpr const char* kManifestFormat = "xdistill-token-shards";
inline constexpr int kManifestVersion = 1;
inline constexpr const char* kManifestName = "manifest.json";

struct ShardFile {
  std::string file;  // name inside the shard-set directory
  uint64_t bytes = 0;
  std::string sha256;
};

struct ShardInfo {
  int64_t tokens = 0, documents = 0, loss_tokens = 0;
  ShardFile tokens_file, docs_file, mask_file;
};

struct TokenizerInfo {
  std::string fingerprint;          // Tokenizer::fingerprint() of the tokenizer that encoded the text
  int64_t vocab_size = 0;           // 0 = unknown
  std::optional<int32_t> eos_id;
  std::string source;               // where it was loaded from (informational only)
};

struct Manifest {
  TokenizerInfo tokenizer;
  bool eos_appended = false;
  std::vector<ShardInfo> shards;
  int64_t tokens = 0, documents = 0, loss_tokens = 0;
  nlohmann::json stats = nlohmann::json::object();   // preparation counters (skipped lines, ...)
  nlohmann::json recipe = nlohmann::json::object();  // what produced the set (for inspection)
};

nlohmann::json manifest_to_json(const Manifest& manifest);
// `where` names the file in errors.
Manifest manifest_from_json(const nlohmann::json& j, const std::string& where);
Manifest read_manifest(const std::string& dir);
// Pretty-printed, keys in a fixed order: the same manifest gives the same bytes.
std::string manifest_text(const Manifest& manifest);

// File names of shard `index` ("shard_00042.tokens.u32", ...).
std::string shard_file_name(int64_t index, const std::string& kind);

}  // namespace xd::data
