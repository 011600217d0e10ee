#include "xdistill/data/shard_set.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>

#include "xdistill/data/checksum.h"
#include "xdistill/util/error.h"

namespace xd::data {

// A read-only memory mapping of one whole file; unmapped when the last user goes.
struct ShardSet::Mapping {
  const uint8_t* data = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (data && size > 0) munmap(const_cast<uint8_t*>(data), size);
  }
};

namespace {

std::shared_ptr<ShardSet::Mapping> map_file(const std::string& path, uint64_t expected_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open shard file: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    throw Error(path + ": cannot stat: " + std::strerror(errno));
  }
  if (static_cast<uint64_t>(st.st_size) != expected_bytes) {
    ::close(fd);
    throw Error(path + ": has " + std::to_string(st.st_size) + " bytes, the manifest says " +
                std::to_string(expected_bytes) + " (truncated or replaced shard; re-run `xdistill data prepare`)");
  }
  auto m = std::make_shared<ShardSet::Mapping>();
  m->size = expected_bytes;
  if (expected_bytes > 0) {
    void* p = mmap(nullptr, expected_bytes, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw Error(path + ": mmap failed: " + std::strerror(errno));
    }
    m->data = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return m;
}

}  // namespace

ShardSet ShardSet::open(const std::string& dir, bool verify_checksums) {
  ShardSet set;
  set.dir_ = dir;
  set.manifest_ = read_manifest(dir);
  const std::filesystem::path base(dir);
  int64_t start = 0;
  for (const ShardInfo& s : set.manifest_.shards) {
    if (s.tokens_file.bytes != uint64_t(s.tokens) * 4 || s.mask_file.bytes != uint64_t(s.tokens))
      throw Error(dir + ": manifest entry of " + s.tokens_file.file + " has inconsistent byte counts");
    if (verify_checksums) {
      for (const ShardFile* f : {&s.tokens_file, &s.docs_file, &s.mask_file}) {
        const std::string actual = sha256_file((base / f->file).string());
        if (actual != f->sha256)
          throw Error((base / f->file).string() + ": SHA-256 is " + actual + ", the manifest says " + f->sha256 +
                      " (corrupted shard; re-run `xdistill data prepare`)");
      }
    }
    set.tokens_.push_back(map_file((base / s.tokens_file.file).string(), s.tokens_file.bytes));
    set.masks_.push_back(map_file((base / s.mask_file.file).string(), s.mask_file.bytes));
    set.shard_starts_.push_back(start);
    start += s.tokens;
  }
  return set;
}

void ShardSet::read(int64_t start, int64_t count, uint32_t* tokens_out, uint8_t* mask_out) const {
  if (start < 0 || count < 0 || start + count > tokens())
    throw Error(dir_ + ": read of tokens [" + std::to_string(start) + ", " + std::to_string(start + count) +
                ") is outside the set's " + std::to_string(tokens()) + " tokens");
  // The last shard whose first token is at or before `start`.
  size_t shard = std::upper_bound(shard_starts_.begin(), shard_starts_.end(), start) - shard_starts_.begin() - 1;
  while (count > 0) {
    const int64_t offset = start - shard_starts_[shard];
    const int64_t take = std::min(count, manifest_.shards[shard].tokens - offset);
    std::memcpy(tokens_out, tokens_[shard]->data + offset * 4, take * 4);
    std::memcpy(mask_out, masks_[shard]->data + offset, take);
    tokens_out += take;
    mask_out += take;
    start += take;
    count -= take;
    ++shard;
  }
}

std::vector<uint64_t> ShardSet::document_starts(size_t index) const {
  const ShardInfo& s = manifest_.shards.at(index);
  const std::string path = (std::filesystem::path(dir_) / s.docs_file.file).string();
  auto m = map_file(path, s.docs_file.bytes);
  std::vector<uint64_t> starts(s.docs_file.bytes / 8);
  if (!starts.empty()) std::memcpy(starts.data(), m->data, starts.size() * 8);
  return starts;
}

void ShardSet::check_fingerprint(const std::string& expected) const {
  if (expected.empty() || expected == manifest_.tokenizer.fingerprint) return;
  throw Error(dir_ + ": these shards were tokenized with a different tokenizer (fingerprint " +
              manifest_.tokenizer.fingerprint + ", from '" + manifest_.tokenizer.source +
              "') than the recipe's (fingerprint " + expected +
              "); re-run `xdistill data prepare` with the recipe's tokenizer");
}

std::vector<std::string> verify_shard_set(const std::string& dir) {
  std::vector<std::string> problems;
  const Manifest m = read_manifest(dir);
  const std::filesystem::path base(dir);
  for (const ShardInfo& s : m.shards) {
    for (const ShardFile* f : {&s.tokens_file, &s.docs_file, &s.mask_file}) {
      const auto path = base / f->file;
      std::error_code ec;
      const auto size = std::filesystem::file_size(path, ec);
      if (ec || size != f->bytes)
        problems.push_back(path.string() + ": missing or of the wrong size");
      else if (sha256_file(path.string()) != f->sha256)
        problems.push_back(path.string() + ": SHA-256 differs from the manifest");
    }
  }
  if (!problems.empty()) return problems;  // contents of damaged files are not worth reading
  const ShardSet set = ShardSet::open(dir);
  int64_t start = 0;
  for (size_t i = 0; i < m.shards.size(); ++i) {
    const ShardInfo& s = m.shards[i];
    const auto starts = set.document_starts(i);
    if (starts.size() != size_t(s.documents) + 1 || starts.front() != 0 || starts.back() != uint64_t(s.tokens) ||
        std::adjacent_find(starts.begin(), starts.end(), std::greater_equal<uint64_t>()) != starts.end())
      problems.push_back(s.docs_file.file + ": document offsets do not increase strictly from 0 to the token count");
    std::vector<uint32_t> tokens(s.tokens);
    std::vector<uint8_t> mask(s.tokens);
    set.read(start, s.tokens, tokens.data(), mask.data());
    start += s.tokens;
    int64_t loss = 0;
    for (int64_t t = 0; t < s.tokens; ++t) {
      loss += mask[t];
      if (mask[t] > 1) {
        problems.push_back(s.mask_file.file + ": mask value " + std::to_string(mask[t]) + " at " + std::to_string(t));
        break;
      }
      if (m.tokenizer.vocab_size > 0 && tokens[t] >= uint64_t(m.tokenizer.vocab_size)) {
        problems.push_back(s.tokens_file.file + ": token id " + std::to_string(tokens[t]) + " at " +
                           std::to_string(t) + " is not below the vocabulary size " +
                           std::to_string(m.tokenizer.vocab_size));
        break;
      }
    }
    if (problems.empty() && loss != s.loss_tokens)
      problems.push_back(s.mask_file.file + ": the number of loss tokens differs from the manifest");
  }
  return problems;
}

}  // namespace xd::data
