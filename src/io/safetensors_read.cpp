// Reading safetensors: dtype table, one validated memory-mapped file, and a
// checkpoint directory (single file or index + shards).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "xdistill/io/safetensors.h"
#include "xdistill/util/error.h"

namespace xd::io {
namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {
// The Python package refuses headers above 100 MB; so do we (a corrupt length
// field must not make us parse gigabytes).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeRow {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeRow kDTypes[] = {
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},   {DType::I8, "I8", 1},
    {DType::I16, "I16", 2},   {DType::I32, "I32", 4}, {DType::I64, "I64", 8},
    {DType::F16, "F16", 2},   {DType::BF16, "BF16", 2}, {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},
};

const DTypeRow& row(DType d) {
  for (const auto& r : kDTypes)
    if (r.dtype == d) return r;
  throw Error("internal: unknown DType value " + std::to_string(static_cast<int>(d)));
}

// Page-aligned range covering [p, p + n) (rounded outwards: the mapping is
// read-only and file-backed, so dropping a neighbour's page only costs a refault).
std::pair<void*, size_t> page_range(const uint8_t* p, uint64_t n) {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t b = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + n + page - 1) & ~(page - 1);
  return {reinterpret_cast<void*>(b), static_cast<size_t>(e - b)};
}
}  // namespace

size_t dtype_size(DType dtype) { return row(dtype).size; }
const char* dtype_name(DType dtype) { return row(dtype).name; }

DType parse_dtype(const std::string& name) {
  for (const auto& r : kDTypes)
    if (name == r.name) return r.dtype;
  std::string known;
  for (const auto& r : kDTypes) known += std::string(known.empty() ? "" : ", ") + r.name;
  throw Error("unknown dtype '" + name + "' (known: " + known + ")");
}

int64_t checked_numel(const std::vector<int64_t>& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error(what + ": negative dimension in shape " + shape_string(shape));
    if (d != 0 && n > INT64_MAX / d) throw Error(what + ": shape " + shape_string(shape) + " overflows");
    n *= d;
  }
  return n;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t TensorInfo::numel() const { return checked_numel(shape, name); }

// ---------------------------------------------------------------- SafetensorsFile

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    throw Error(path + ": cannot stat: " + std::strerror(errno));
  }
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ < 8) {
    ::close(fd);
    throw Error(path + ": file is " + std::to_string(f->size_) +
                " bytes, too small for the 8-byte header length (truncated?)");
  }
  // Private and writable (copy-on-write): a zero-copy tensor that is modified in
  // place gets private pages instead of a segfault, and the file is never changed.
  void* m = mmap(nullptr, f->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (m == MAP_FAILED) throw Error(path + ": cannot map: " + std::strerror(map_errno));
  f->map_ = m;
  uint64_t header_len = 0;
  const auto* bytes = static_cast<const uint8_t*>(m);
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little-endian
  f->parse_header(header_len);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(map_, size_);
}

void SafetensorsFile::parse_header(uint64_t header_len) {
  const std::string& p = path_;
  if (header_len > size_ - 8)
    throw Error(p + ": header length " + std::to_string(header_len) + " exceeds the " +
                std::to_string(size_ - 8) + " bytes after the length field (truncated or not safetensors)");
  if (header_len > kMaxHeaderBytes)
    throw Error(p + ": header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  const char* text = static_cast<const char*>(map_) + 8;
  data_start_ = static_cast<const uint8_t*>(map_) + 8 + header_len;
  data_len_ = size_ - 8 - header_len;

  json header;
  try {
    header = json::parse(text, text + header_len);
  } catch (const json::exception& e) {
    throw Error(p + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw Error(p + ": header is not a JSON object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error(p + ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          throw Error(p + ": __metadata__ key '" + m.key() + "' is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = p + ": tensor '" + name + "'";
    if (!v.is_object()) throw Error(where + ": entry is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) throw Error(where + ": missing string 'dtype'");
    if (!v.contains("shape") || !v["shape"].is_array()) throw Error(where + ": missing array 'shape'");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      throw Error(where + ": 'data_offsets' must be an array of two offsets");
    TensorInfo info;
    info.name = name;
    info.file = p;
    try {
      info.dtype = parse_dtype(v["dtype"].get<std::string>());
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    }
    for (const json& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        throw Error(where + ": shape " + v["shape"].dump() + " has a dimension that is not a non-negative integer");
      info.shape.push_back(d.get<int64_t>());
    }
    for (const json& o : v["data_offsets"])
      if (!o.is_number_unsigned())
        throw Error(where + ": data_offsets " + v["data_offsets"].dump() + " are not non-negative integers");
    info.offset_begin = v["data_offsets"][0].get<uint64_t>();
    info.offset_end = v["data_offsets"][1].get<uint64_t>();
    if (info.offset_end < info.offset_begin)
      throw Error(where + ": data_offsets [" + std::to_string(info.offset_begin) + ", " +
                  std::to_string(info.offset_end) + ") end before they begin");
    if (info.offset_end > data_len_)
      throw Error(where + ": data_offsets [" + std::to_string(info.offset_begin) + ", " +
                  std::to_string(info.offset_end) + ") lie beyond the data buffer's " +
                  std::to_string(data_len_) + " bytes (file truncated?)");
    const int64_t numel = checked_numel(info.shape, where);
    const uint64_t want = static_cast<uint64_t>(numel) * dtype_size(info.dtype);
    if (numel > 0 && want / static_cast<uint64_t>(numel) != dtype_size(info.dtype))
      throw Error(where + ": shape " + shape_string(info.shape) + " overflows");
    if (want != info.nbytes())
      throw Error(where + ": shape " + shape_string(info.shape) + " of " + dtype_name(info.dtype) +
                  " needs " + std::to_string(want) + " bytes but data_offsets span " +
                  std::to_string(info.nbytes()));
    tensors_.emplace(name, std::move(info));
  }

  // No two non-empty ranges may overlap.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& [name, info] : tensors_)
    if (info.nbytes() > 0) by_offset.push_back(&info);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset_begin < b->offset_begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& a = *by_offset[i - 1];
    const TensorInfo& b = *by_offset[i];
    if (b.offset_begin < a.offset_end)
      throw Error(p + ": tensor '" + b.name + "' at [" + std::to_string(b.offset_begin) + ", " +
                  std::to_string(b.offset_end) + ") overlaps tensor '" + a.name + "' at [" +
                  std::to_string(a.offset_begin) + ", " + std::to_string(a.offset_end) + ")");
  }
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error(path_ + ": no tensor '" + name + "'");
  return it->second;
}

void SafetensorsFile::prefetch(const TensorInfo& info, uint64_t byte_begin, uint64_t byte_end) const {
  byte_end = std::min(byte_end, info.nbytes());
  if (byte_begin >= byte_end) return;
  auto [addr, len] = page_range(data(info) + byte_begin, byte_end - byte_begin);
  madvise(addr, len, MADV_WILLNEED);
}

void SafetensorsFile::release(const TensorInfo& info, uint64_t byte_begin, uint64_t byte_end) const {
  byte_end = std::min(byte_end, info.nbytes());
  if (byte_begin >= byte_end) return;
  auto [addr, len] = page_range(data(info) + byte_begin, byte_end - byte_begin);
  madvise(addr, len, MADV_DONTNEED);
}

// ---------------------------------------------------------------------- Checkpoint

struct Checkpoint::State {
  std::string path;
  std::vector<std::shared_ptr<SafetensorsFile>> files;
  std::map<std::string, std::pair<const TensorInfo*, const SafetensorsFile*>> tensors;
};

Checkpoint Checkpoint::open(const std::string& dir) {
  auto state = std::make_shared<State>();
  state->path = dir;
  const stdfs::path root(dir);
  const stdfs::path index_path = root / "model.safetensors.index.json";
  if (stdfs::is_regular_file(root)) {
    state->files.push_back(SafetensorsFile::open(root.string()));
  } else if (stdfs::is_regular_file(index_path)) {
    const std::string ip = index_path.string();
    json index;
    try {
      std::ifstream in(index_path);
      index = json::parse(in);
    } catch (const json::exception& e) {
      throw Error(ip + ": not valid JSON: " + e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw Error(ip + ": missing object 'weight_map'");
    std::map<std::string, std::string> weight_map;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw Error(ip + ": weight_map entry '" + it.key() + "' is not a file name");
      weight_map[it.key()] = it.value().get<std::string>();
    }
    std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
    for (const auto& [tensor, shard] : weight_map) {
      if (shards.count(shard)) continue;
      const stdfs::path sp = root / shard;
      if (!stdfs::is_regular_file(sp))
        throw Error(ip + ": tensor '" + tensor + "' maps to shard '" + shard + "', which does not exist");
      shards[shard] = SafetensorsFile::open(sp.string());
    }
    for (const auto& [tensor, shard] : weight_map)
      if (!shards[shard]->tensors().count(tensor))
        throw Error(ip + ": tensor '" + tensor + "' maps to shard '" + shard + "', which does not hold it");
    for (const auto& [shard, file] : shards) {
      for (const auto& [tensor, info] : file->tensors()) {
        auto it = weight_map.find(tensor);
        if (it == weight_map.end())
          throw Error(ip + ": shard '" + shard + "' holds tensor '" + tensor + "', which the weight_map does not list");
        if (it->second != shard)
          throw Error(ip + ": tensor '" + tensor + "' is in shard '" + shard + "' but the weight_map names '" +
                      it->second + "' (each tensor must be stored exactly once)");
      }
      state->files.push_back(file);
    }
  } else if (stdfs::is_regular_file(root / "model.safetensors")) {
    state->files.push_back(SafetensorsFile::open((root / "model.safetensors").string()));
  } else if (!stdfs::exists(root)) {
    throw Error(dir + ": checkpoint directory does not exist");
  } else {
    throw Error(dir + ": no model.safetensors or model.safetensors.index.json");
  }
  for (const auto& f : state->files) {
    for (const auto& [name, info] : f->tensors()) {
      auto [it, inserted] = state->tensors.emplace(name, std::make_pair(&info, f.get()));
      if (!inserted)
        throw Error(dir + ": tensor '" + name + "' is stored in both " + it->second.second->path() +
                    " and " + f->path());
    }
  }
  Checkpoint c;
  c.state_ = std::move(state);
  return c;
}

const std::string& Checkpoint::path() const { return state_->path; }

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(state_->tensors.size());
  for (const auto& [name, _] : state_->tensors) out.push_back(name);
  return out;
}

const TensorInfo& Checkpoint::info(const std::string& name) const {
  auto it = state_->tensors.find(name);
  if (it == state_->tensors.end()) throw Error(state_->path + ": no tensor '" + name + "'");
  return *it->second.first;
}

bool Checkpoint::has(const std::string& name) const { return state_->tensors.count(name) > 0; }

const uint8_t* Checkpoint::data(const std::string& name) const {
  const TensorInfo& i = info(name);
  return state_->tensors.at(name).second->data(i);
}

std::map<std::string, std::string> Checkpoint::metadata() const {
  std::map<std::string, std::string> out;
  for (const auto& f : state_->files)
    for (const auto& [k, v] : f->metadata()) out.emplace(k, v);
  return out;
}

std::vector<std::string> Checkpoint::files() const {
  std::vector<std::string> out;
  for (const auto& f : state_->files) out.push_back(f->path());
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t n = 0;
  for (const auto& [_, t] : state_->tensors) n += t.first->nbytes();
  return n;
}

void Checkpoint::check_tensors(const std::map<std::string, std::vector<int64_t>>& expected,
                               bool allow_unexpected) const {
  std::vector<std::string> missing, unexpected, misshaped;
  for (const auto& [name, shape] : expected) {
    auto it = state_->tensors.find(name);
    if (it == state_->tensors.end())
      missing.push_back(name);
    else if (it->second.first->shape != shape)
      misshaped.push_back("'" + name + "' has shape " + shape_string(it->second.first->shape) +
                          ", expected " + shape_string(shape));
  }
  if (!allow_unexpected)
    for (const auto& [name, _] : state_->tensors)
      if (!expected.count(name)) unexpected.push_back(name);
  if (missing.empty() && unexpected.empty() && misshaped.empty()) return;
  std::string msg = state_->path + ": tensors do not match the model:";
  auto list = [&](const char* what, const std::vector<std::string>& v, bool quote) {
    if (v.empty()) return;
    msg += std::string(" ") + std::to_string(v.size()) + " " + what + " (";
    for (size_t i = 0; i < v.size() && i < 20; ++i)
      msg += (i ? ", " : "") + (quote ? "'" + v[i] + "'" : v[i]);
    if (v.size() > 20) msg += ", ...";
    msg += ");";
  };
  list("missing", missing, true);
  list("unexpected", unexpected, true);
  list("mis-shaped", misshaped, false);
  msg.pop_back();
  throw Error(msg);
}

void Checkpoint::prefetch(const std::string& name, uint64_t byte_begin, uint64_t byte_end) const {
  const auto t = state_->tensors.find(name);
  if (t != state_->tensors.end()) t->second.second->prefetch(*t->second.first, byte_begin, byte_end);
}

void Checkpoint::release(const std::string& name, uint64_t byte_begin, uint64_t byte_end) const {
  const auto t = state_->tensors.find(name);
  if (t != state_->tensors.end()) t->second.second->release(*t->second.first, byte_begin, byte_end);
}

}  // namespace xd::io
