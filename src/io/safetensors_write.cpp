// Writing safetensors checkpoints: sharded by size, with an index, atomically.
//
// The header (which lists every tensor of a shard) precedes the data, so a shard
// cannot be written front to back while tensors arrive one at a time. Each shard's
// tensors are streamed to a temporary data file; when the shard is full, the final
// file is assembled: header, then the tensors copied in-kernel (copy_file_range) in
// layout order. Peak memory is one tensor, never a shard.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "xdistill/io/safetensors.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

namespace xd::io {
namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {
void write_all(int fd, const void* bytes, size_t n, const std::string& what) {
  const auto* p = static_cast<const uint8_t*>(bytes);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw Error(what + ": write failed: " + std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Copies [offset, offset + n) of `in` to the current position of `out`.
void copy_range(int in, uint64_t offset, int out, uint64_t n, const std::string& what) {
  loff_t off = static_cast<loff_t>(offset);
  while (n > 0) {
    const ssize_t c = copy_file_range(in, &off, out, nullptr, std::min<uint64_t>(n, 1ull << 30), 0);
    if (c < 0 && errno == EINTR) continue;
    if (c <= 0) break;  // not supported here (or EOF): fall back to read/write
    n -= static_cast<uint64_t>(c);
  }
  std::vector<uint8_t> buf(std::min<uint64_t>(n, 8u << 20));
  while (n > 0) {
    const ssize_t r = pread(in, buf.data(), std::min<uint64_t>(n, buf.size()), off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) throw Error(what + ": read-back failed: " + std::strerror(errno));
    write_all(out, buf.data(), static_cast<size_t>(r), what);
    off += r;
    n -= static_cast<uint64_t>(r);
  }
}

std::string shard_name(size_t i, size_t n) {
  if (n == 1) return "model.safetensors";
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

bool is_checkpoint_file(const std::string& name) {
  if (name == "model.safetensors" || name == "model.safetensors.index.json") return true;
  return name.rfind("model-", 0) == 0 && name.find("-of-") != std::string::npos &&
         name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0;
}
}  // namespace

struct CheckpointWriter::Shard {
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t pos, nbytes;  // in the data file
  };
  std::string data_path, file_path;  // temporary data file; assembled temporary shard
  int fd = -1;
  uint64_t bytes = 0;
  std::vector<Entry> entries;
  // Planned shards: entries' pos is the final offset in the data buffer.
  std::string header;      // 8-byte length + JSON, padded
  size_t remaining = 0;    // planned tensors not added yet

  ~Shard() {
    if (fd >= 0) ::close(fd);
    std::error_code ec;
    if (!data_path.empty()) stdfs::remove(data_path, ec);
  }
};

CheckpointWriter::CheckpointWriter(std::string dir, uint64_t max_shard_bytes,
                                   std::map<std::string, std::string> metadata)
    : dir_(std::move(dir)), max_shard_bytes_(max_shard_bytes), metadata_(std::move(metadata)) {
  if (max_shard_bytes_ == 0) throw UsageError("checkpoint writer: max shard size must be positive");
  stdfs::create_directories(dir_);
}

CheckpointWriter::~CheckpointWriter() {
  if (finished_) return;
  std::error_code ec;
  for (const auto& s : shards_)
    if (!s->file_path.empty()) stdfs::remove(s->file_path, ec);
}

void CheckpointWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                           const void* bytes, size_t nbytes) {
  const std::string what = dir_ + ": tensor '" + name + "'";
  if (finished_) throw Error(what + ": added after finish()");
  if (name.empty() || name == "__metadata__") throw Error(what + ": invalid tensor name");
  if (seen_.count(name)) throw Error(what + ": added twice");
  const uint64_t want = static_cast<uint64_t>(checked_numel(shape, what)) * dtype_size(dtype);
  if (want != nbytes)
    throw Error(what + ": shape " + shape_string(shape) + " of " + dtype_name(dtype) + " needs " +
                std::to_string(want) + " bytes, got " + std::to_string(nbytes));
  if (planned_) return add_planned(name, dtype, shape, bytes, nbytes);
  if (open_ && open_->bytes > 0 && open_->bytes + nbytes > max_shard_bytes_) close_shard();
  if (!open_) {
    open_ = std::make_unique<Shard>();
    open_->data_path = fs::temp_sibling(stdfs::path(dir_) / ".shard.data").string();
    open_->fd = ::open(open_->data_path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (open_->fd < 0) throw Error(open_->data_path + ": cannot create: " + std::strerror(errno));
  }
  write_all(open_->fd, bytes, nbytes, open_->data_path);
  open_->entries.push_back({name, dtype, std::move(shape), open_->bytes, nbytes});
  open_->bytes += nbytes;
  seen_[name] = shards_.size();
}

namespace {
// Lays a shard's tensors out (larger elements first, so each tensor starts aligned
// to its element size; stable otherwise) and returns the file's first bytes: the
// 8-byte header length and the JSON header, padded so the data starts 8-aligned.
// order receives the entry indices in layout order, offsets their data offsets.
template <typename Entries>
std::string layout_header(const Entries& entries, const std::map<std::string, std::string>& metadata,
                          std::vector<size_t>& order, std::vector<uint64_t>& offsets) {
  order.resize(entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(entries[a].dtype) > dtype_size(entries[b].dtype);
  });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  offsets.assign(entries.size(), 0);
  uint64_t offset = 0;
  for (size_t i : order) {
    const auto& e = entries[i];
    const uint64_t n = static_cast<uint64_t>(checked_numel(e.shape, e.name)) * dtype_size(e.dtype);
    header[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, offset + n}}};
    offsets[i] = offset;
    offset += n;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(static_cast<uint64_t>(text.size()) >> (8 * i));
  return out + text;
}
}  // namespace

void CheckpointWriter::close_shard() {
  if (!open_) return;
  Shard& s = *open_;
  std::vector<size_t> order;
  std::vector<uint64_t> offsets;
  const std::string head = layout_header(s.entries, metadata_, order, offsets);
  s.file_path = fs::temp_sibling(stdfs::path(dir_) / ".shard").string();
  const int out = ::open(s.file_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (out < 0) throw Error(s.file_path + ": cannot create: " + std::strerror(errno));
  try {
    write_all(out, head.data(), head.size(), s.file_path);
    for (size_t i : order) copy_range(s.fd, s.entries[i].pos, out, s.entries[i].nbytes, s.file_path);
    if (fsync(out) != 0) throw Error(s.file_path + ": fsync failed: " + std::strerror(errno));
  } catch (...) {
    ::close(out);
    throw;
  }
  if (::close(out) != 0) throw Error(s.file_path + ": close failed: " + std::strerror(errno));
  ::close(s.fd);
  s.fd = -1;
  std::error_code ec;
  stdfs::remove(s.data_path, ec);
  s.data_path.clear();
  shards_.push_back(std::move(open_));
}

void CheckpointWriter::plan(const std::vector<PlannedTensor>& tensors) {
  if (planned_ || !seen_.empty() || finished_) throw Error(dir_ + ": plan() must come once, before add()");
  planned_ = true;
  auto start_shard = [&] { shards_.push_back(std::make_unique<Shard>()); };
  for (const auto& t : tensors) {
    const std::string what = dir_ + ": planned tensor '" + t.name + "'";
    if (t.name.empty() || t.name == "__metadata__") throw Error(what + ": invalid tensor name");
    if (plan_.count(t.name)) throw Error(what + ": planned twice");
    const uint64_t n = static_cast<uint64_t>(checked_numel(t.shape, what)) * dtype_size(t.dtype);
    if (shards_.empty() || (shards_.back()->bytes > 0 && shards_.back()->bytes + n > max_shard_bytes_)) start_shard();
    Shard& s = *shards_.back();
    plan_[t.name] = {shards_.size() - 1, s.entries.size()};
    s.entries.push_back({t.name, t.dtype, t.shape, 0, n});
    s.bytes += n;
    ++s.remaining;
  }
  for (auto& s : shards_) {
    std::vector<size_t> order;
    std::vector<uint64_t> offsets;
    s->header = layout_header(s->entries, metadata_, order, offsets);
    for (size_t i = 0; i < offsets.size(); ++i) s->entries[i].pos = offsets[i];
  }
}

void CheckpointWriter::add_planned(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                                   const void* bytes, size_t nbytes) {
  const std::string what = dir_ + ": tensor '" + name + "'";
  const auto it = plan_.find(name);
  if (it == plan_.end()) throw Error(what + ": not in the plan");
  Shard& s = *shards_[it->second.first];
  const Shard::Entry& e = s.entries[it->second.second];
  if (e.dtype != dtype || e.shape != shape)
    throw Error(what + ": added as " + dtype_name(dtype) + " " + shape_string(shape) + ", planned as " +
                dtype_name(e.dtype) + " " + shape_string(e.shape));
  if (s.fd < 0) {
    s.file_path = fs::temp_sibling(stdfs::path(dir_) / ".shard").string();
    s.fd = ::open(s.file_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (s.fd < 0) throw Error(s.file_path + ": cannot create: " + std::strerror(errno));
    write_all(s.fd, s.header.data(), s.header.size(), s.file_path);
  }
  const auto* p = static_cast<const uint8_t*>(bytes);
  uint64_t at = s.header.size() + e.pos, left = nbytes;
  while (left > 0) {
    const ssize_t w = pwrite(s.fd, p, std::min<uint64_t>(left, 1ull << 30), static_cast<off_t>(at));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw Error(s.file_path + ": write failed: " + std::strerror(errno));
    p += w;
    at += static_cast<uint64_t>(w);
    left -= static_cast<uint64_t>(w);
  }
  seen_[name] = it->second.first;
  if (--s.remaining == 0) {  // complete: make it durable and let go of the descriptor
    if (fsync(s.fd) != 0) throw Error(s.file_path + ": fsync failed: " + std::strerror(errno));
    if (::close(s.fd) != 0) throw Error(s.file_path + ": close failed: " + std::strerror(errno));
    s.fd = -1;
  }
}

void CheckpointWriter::finish() {
  if (finished_) throw Error(dir_ + ": checkpoint writer finished twice");
  if (planned_) {
    std::vector<std::string> missing;
    for (const auto& [name, where] : plan_)
      if (!seen_.count(name)) missing.push_back("'" + name + "'");
    if (!missing.empty())
      throw Error(dir_ + ": " + std::to_string(missing.size()) + " planned tensors were never added (first: " +
                  missing.front() + ")");
  }
  close_shard();
  if (shards_.empty()) shards_.push_back(std::make_unique<Shard>());
  for (auto& s : shards_) {  // a planned shard with no tensors, or an empty checkpoint
    if (!s->file_path.empty()) continue;
    std::vector<size_t> order;
    std::vector<uint64_t> offsets;
    const std::string head = layout_header(s->entries, metadata_, order, offsets);
    s->file_path = fs::temp_sibling(stdfs::path(dir_) / ".shard").string();
    fs::write_atomic(s->file_path, head);
  }
  const size_t n = shards_.size();
  final_names_.clear();
  json weight_map = json::object();
  uint64_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    final_names_.push_back(shard_name(i, n));
    for (const auto& e : shards_[i]->entries) {
      weight_map[e.name] = final_names_.back();
      total += e.nbytes;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    stdfs::rename(shards_[i]->file_path, stdfs::path(dir_) / final_names_[i]);
    shards_[i]->file_path.clear();
  }
  const stdfs::path index = stdfs::path(dir_) / "model.safetensors.index.json";
  if (n > 1) {
    json meta = json::object();
    for (const auto& [k, v] : metadata_) meta[k] = v;
    meta["total_size"] = total;
    fs::write_atomic(index, json{{"metadata", meta}, {"weight_map", weight_map}}.dump(2) + "\n");
  }
  // Remove what an earlier checkpoint in this directory left behind.
  for (const auto& entry : stdfs::directory_iterator(dir_)) {
    const std::string name = entry.path().filename().string();
    if (!is_checkpoint_file(name)) continue;
    if (std::find(final_names_.begin(), final_names_.end(), name) != final_names_.end()) continue;
    if (name == "model.safetensors.index.json" && n > 1) continue;
    std::error_code ec;
    stdfs::remove(entry.path(), ec);
  }
  finished_ = true;
}

}  // namespace xd::io
