#include "xdistill/train/teacher_cache.h"

#include <zstd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

namespace xd::train {
namespace stdfs = std::filesystem;

namespace {
constexpr int kFormatRevision = 1;

struct IndexEntry {
  int64_t row_id;
  uint64_t offset, bytes;
};

size_t logprob_bytes(const std::string& dtype) {
  if (dtype == "f32") return 4;
  if (dtype == "f16") return 2;
  throw Error("teacher cache: log-prob dtype '" + dtype + "' is not one of f32, f16");
}

nlohmann::json meta_to_json(const TeacherCacheMeta& m) {
  return {{"format", "xdistill-teacher-cache"}, {"revision", kFormatRevision}, {"seq_len", m.seq_len},
          {"top_k", m.top_k}, {"logprob_dtype", m.logprob_dtype}, {"rows", m.rows}, {"source", m.source}};
}

std::FILE* open_or_throw(const stdfs::path& p, const char* mode) {
  std::FILE* f = std::fopen(p.c_str(), mode);
  if (!f) throw Error(p.string() + ": cannot open: " + std::strerror(errno));
  return f;
}
}  // namespace

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  if (((x >> 23) & 0xff) == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0));
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (exp <= 0) {                                                // subnormal or zero
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - exp;
    uint32_t half = mant >> shift;
    const uint32_t rest = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // may carry into the exponent: correct
  return static_cast<uint16_t>(sign | half);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  float out;
  if (exp == 0) {
    out = std::ldexp(static_cast<float>(mant), -24);
    uint32_t bits;
    std::memcpy(&bits, &out, 4);
    bits |= sign;
    std::memcpy(&out, &bits, 4);
    return out;
  }
  uint32_t bits = exp == 31 ? (sign | 0x7f800000u | (mant << 13))
                            : (sign | ((exp - 15 + 127) << 23) | (mant << 13));
  std::memcpy(&out, &bits, 4);
  return out;
}

// ---------------------------------------------------------------- writer

TeacherCacheWriter::TeacherCacheWriter(stdfs::path dir, TeacherCacheMeta meta, int zstd_level)
    : dir_(std::move(dir)), meta_(std::move(meta)), level_(zstd_level) {
  logprob_bytes(meta_.logprob_dtype);
  XD_CHECK(meta_.seq_len > 0 && meta_.top_k > 0, "teacher cache ", dir_.string(),
           ": seq_len and top_k must be positive");
  staging_ = fs::temp_sibling(dir_);
  stdfs::create_directories(staging_);
  data_ = open_or_throw(staging_ / "topk.bin", "wb");
}

TeacherCacheWriter::~TeacherCacheWriter() {
  if (data_) std::fclose(data_);
  if (!staging_.empty()) fs::remove_tree_noexcept(staging_);
}

void TeacherCacheWriter::add(const TopkRow& row) {
  const size_t n = static_cast<size_t>(meta_.seq_len * meta_.top_k);
  XD_CHECK(row.ids.size() == n && row.logprobs.size() == n, "teacher cache ", dir_.string(), ": row ",
           row.row_id, " has ", row.ids.size(), " ids and ", row.logprobs.size(), " log-probs, expected ", n);
  XD_CHECK(!index_.count(row.row_id), "teacher cache ", dir_.string(), ": row ", row.row_id, " added twice");
  std::string raw(n * 4 + n * logprob_bytes(meta_.logprob_dtype), '\0');
  std::memcpy(raw.data(), row.ids.data(), n * 4);
  if (meta_.logprob_dtype == "f32") {
    std::memcpy(raw.data() + n * 4, row.logprobs.data(), n * 4);
  } else {
    auto* half = reinterpret_cast<uint16_t*>(raw.data() + n * 4);
    for (size_t i = 0; i < n; ++i) half[i] = float_to_half(row.logprobs[i]);
  }
  std::string packed(ZSTD_compressBound(raw.size()), '\0');
  const size_t bytes = ZSTD_compress(packed.data(), packed.size(), raw.data(), raw.size(), level_);
  XD_CHECK(!ZSTD_isError(bytes), "teacher cache: zstd failed: ", ZSTD_getErrorName(bytes));
  XD_CHECK(std::fwrite(packed.data(), 1, bytes, data_) == bytes, "teacher cache ", dir_.string(),
           ": short write: ", std::strerror(errno));
  index_[row.row_id] = {offset_, bytes};
  offset_ += bytes;
}

void TeacherCacheWriter::finish() {
  XD_CHECK(std::fflush(data_) == 0 && std::fclose(data_) == 0, "teacher cache ", dir_.string(), ": write failed");
  data_ = nullptr;
  meta_.rows = static_cast<int64_t>(index_.size());
  fs::write_atomic_with(staging_ / "index.bin", [&](std::FILE* f) {
    for (const auto& [row_id, where] : index_) {
      const IndexEntry e{row_id, where.first, where.second};
      XD_CHECK(std::fwrite(&e, sizeof e, 1, f) == 1, "teacher cache: index write failed");
    }
  });
  fs::write_atomic(staging_ / "meta.json", meta_to_json(meta_).dump(2) + "\n");
  fs::replace_directory(staging_, dir_);
  staging_.clear();
}

// ---------------------------------------------------------------- reader

TeacherCacheReader::TeacherCacheReader(stdfs::path dir) : dir_(std::move(dir)) {
  const stdfs::path meta_path = dir_ / "meta.json";
  XD_CHECK(stdfs::exists(meta_path), dir_.string(), ": not a teacher cache (no meta.json); write one with ",
           "`xdistill teacher-cache`");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(fs::read_text(meta_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(meta_path.string() + ": invalid JSON: " + e.what());
  }
  XD_CHECK(j.value("format", "") == "xdistill-teacher-cache", meta_path.string(), ": not a teacher cache");
  XD_CHECK(j.value("revision", 0) <= kFormatRevision, meta_path.string(), ": cache revision ",
           j.value("revision", 0), " is newer than this xdistill reads (", kFormatRevision, "); upgrade xdistill");
  meta_.seq_len = j.at("seq_len").get<int64_t>();
  meta_.top_k = j.at("top_k").get<int64_t>();
  meta_.logprob_dtype = j.at("logprob_dtype").get<std::string>();
  meta_.rows = j.at("rows").get<int64_t>();
  meta_.source = j.value("source", nlohmann::json::object());
  logprob_bytes(meta_.logprob_dtype);

  std::FILE* idx = open_or_throw(dir_ / "index.bin", "rb");
  IndexEntry e;
  while (std::fread(&e, sizeof e, 1, idx) == 1) index_[e.row_id] = {e.offset, e.bytes};
  std::fclose(idx);
  XD_CHECK(static_cast<int64_t>(index_.size()) == meta_.rows, dir_.string(), "/index.bin: ", index_.size(),
           " rows, meta.json says ", meta_.rows);
  data_ = open_or_throw(dir_ / "topk.bin", "rb");
}

TeacherCacheReader::~TeacherCacheReader() {
  if (data_) std::fclose(data_);
}

bool TeacherCacheReader::has(int64_t row_id) const { return index_.count(row_id) > 0; }

TopkRow TeacherCacheReader::read(int64_t row_id) const {
  auto it = index_.find(row_id);
  XD_CHECK(it != index_.end(), dir_.string(), ": the teacher cache has no row ", row_id,
           " (was it written for this data mixture and seq_len?)");
  std::string packed(it->second.second, '\0');
  XD_CHECK(std::fseek(data_, static_cast<long>(it->second.first), SEEK_SET) == 0 &&
               std::fread(packed.data(), 1, packed.size(), data_) == packed.size(),
           dir_.string(), "/topk.bin: cannot read row ", row_id, " (truncated file?)");
  const size_t n = static_cast<size_t>(meta_.seq_len * meta_.top_k);
  const size_t expected = n * 4 + n * logprob_bytes(meta_.logprob_dtype);
  std::string raw(expected, '\0');
  const size_t got = ZSTD_decompress(raw.data(), raw.size(), packed.data(), packed.size());
  XD_CHECK(!ZSTD_isError(got) && got == expected, dir_.string(), "/topk.bin: row ", row_id,
           " is corrupt (", ZSTD_isError(got) ? ZSTD_getErrorName(got) : "wrong size", ")");
  TopkRow row;
  row.row_id = row_id;
  row.ids.resize(n);
  row.logprobs.resize(n);
  std::memcpy(row.ids.data(), raw.data(), n * 4);
  if (meta_.logprob_dtype == "f32") {
    std::memcpy(row.logprobs.data(), raw.data() + n * 4, n * 4);
  } else {
    const auto* half = reinterpret_cast<const uint16_t*>(raw.data() + n * 4);
    for (size_t i = 0; i < n; ++i) row.logprobs[i] = half_to_float(half[i]);
  }
  return row;
}

}  // namespace xd::train
