#include "xdistill/data/shard_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "xdistill/data/checksum.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "shard files are little-endian; add byte swapping");

namespace xd::data {
namespace stdfs = std::filesystem;

namespace {

ShardFile write_array(const stdfs::path& dir, const std::string& name, const void* data, size_t bytes) {
  fs::write_atomic_with(dir / name, [&](std::FILE* f) {
    if (bytes > 0 && std::fwrite(data, 1, bytes, f) != bytes)
      throw Error((dir / name).string() + ": short write: " + std::strerror(errno));
  });
  return {name, bytes, sha256_hex(data, bytes)};
}

}  // namespace

ShardWriter::ShardWriter(std::string dir, ShardWriterOptions options)
    : ShardWriter(std::move(dir), std::move(options), {}) {
  fs::remove_tree(staging_);
  stdfs::create_directories(staging_);
}

ShardWriter::ShardWriter(std::string dir, ShardWriterOptions options, std::vector<ShardInfo> done)
    : dir_(std::move(dir)), options_(std::move(options)), shards_(std::move(done)) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  if (dir_.empty()) throw Error("ShardWriter: empty output directory");
  staging_ = dir_ + ".partial";
  if (options_.tokens_per_shard <= 0) throw Error("ShardWriter: tokens_per_shard must be positive");
  if (options_.append_eos && !options_.tokenizer.eos_id)
    throw Error(dir_ + ": append_eos is set but the tokenizer has no EOS token");
  stdfs::create_directories(staging_);
  for (const ShardInfo& s : shards_) documents_ += s.documents;
}

void ShardWriter::add_document(const std::vector<int32_t>& ids, const std::vector<uint8_t>& loss_mask) {
  if (!loss_mask.empty() && loss_mask.size() != ids.size())
    throw Error(dir_ + ": document " + std::to_string(documents_) + " has " + std::to_string(ids.size()) +
                " tokens but a loss mask of " + std::to_string(loss_mask.size()));
  add_document(ids.data(), loss_mask.empty() ? nullptr : loss_mask.data(), ids.size());
}

void ShardWriter::add_document(const int32_t* ids, const uint8_t* loss_mask, size_t count) {
  if (finished_) throw Error(dir_ + ": add_document after finish()");
  const std::string what = dir_ + ": document " + std::to_string(documents_);
  if (count == 0) throw Error(what + " is empty (skip empty documents before writing)");
  const int64_t vocab = options_.tokenizer.vocab_size;
  doc_starts_.push_back(tokens_.size());
  for (size_t i = 0; i < count; ++i) {
    if (ids[i] < 0 || (vocab > 0 && ids[i] >= vocab)) {
      tokens_.resize(doc_starts_.back());
      mask_.resize(doc_starts_.back());
      doc_starts_.pop_back();
      throw Error(what + ": token " + std::to_string(i) + " has id " + std::to_string(ids[i]) +
                  ", outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
    tokens_.push_back(static_cast<uint32_t>(ids[i]));
    mask_.push_back(loss_mask ? (loss_mask[i] ? 1 : 0) : 1);
  }
  if (options_.append_eos) {
    // The EOS is a target exactly when the document's last token is one.
    const uint8_t last = mask_.back();
    tokens_.push_back(static_cast<uint32_t>(*options_.tokenizer.eos_id));
    mask_.push_back(last);
  }
  ++documents_;
  if (static_cast<int64_t>(tokens_.size()) >= options_.tokens_per_shard) flush_shard();
}

void ShardWriter::flush_shard() {
  if (tokens_.empty()) return;
  const int64_t index = static_cast<int64_t>(shards_.size());
  ShardInfo s;
  s.tokens = static_cast<int64_t>(tokens_.size());
  s.documents = static_cast<int64_t>(doc_starts_.size());
  for (uint8_t m : mask_) s.loss_tokens += m;
  doc_starts_.push_back(tokens_.size());
  const stdfs::path dir(staging_);
  s.tokens_file = write_array(dir, shard_file_name(index, "tokens.u32"), tokens_.data(), tokens_.size() * 4);
  s.docs_file = write_array(dir, shard_file_name(index, "docs.u64"), doc_starts_.data(), doc_starts_.size() * 8);
  s.mask_file = write_array(dir, shard_file_name(index, "mask.u8"), mask_.data(), mask_.size());
  shards_.push_back(std::move(s));
  tokens_.clear();
  doc_starts_.clear();
  mask_.clear();
}

Manifest ShardWriter::finish(const nlohmann::json& stats, const nlohmann::json& recipe) {
  if (finished_) throw Error(dir_ + ": finish() called twice");
  flush_shard();
  Manifest m;
  m.tokenizer = options_.tokenizer;
  m.eos_appended = options_.append_eos;
  m.shards = shards_;
  for (const ShardInfo& s : shards_) {
    m.tokens += s.tokens;
    m.documents += s.documents;
    m.loss_tokens += s.loss_tokens;
  }
  m.stats = stats;
  m.recipe = recipe;
  // Files of an earlier, longer run in a resumed staging directory are not part of the set.
  std::vector<std::string> keep{kManifestName};
  for (const ShardInfo& s : shards_)
    for (const ShardFile* f : {&s.tokens_file, &s.docs_file, &s.mask_file}) keep.push_back(f->file);
  for (const auto& entry : stdfs::directory_iterator(staging_)) {
    const std::string name = entry.path().filename().string();
    if (std::find(keep.begin(), keep.end(), name) == keep.end()) fs::remove_tree(entry.path());
  }
  fs::write_atomic(stdfs::path(staging_) / kManifestName, manifest_text(m));
  fs::replace_directory(staging_, dir_);
  finished_ = true;
  return m;
}

}  // namespace xd::data
