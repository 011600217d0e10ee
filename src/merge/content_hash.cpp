// XXH64 (Yann Collet's xxHash, 64-bit variant, as specified in its documentation)
// and the block-wise checkpoint digests of the merge manifest.
#include "xdistill/merge/content_hash.h"

#include <cstdio>
#include <cstring>
#include <fstream>

#include "xdistill/util/error.h"

namespace xd::merge {
namespace {
constexpr uint64_t P1 = 0x9E3779B185EBCA87ull, P2 = 0xC2B2AE3D27D4EB4Full, P3 = 0x165667B19E3779F9ull,
                   P4 = 0x85EBCA77C2B2AE63ull, P5 = 0x27D4EB2F165667C5ull;

inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t read64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;  // little-endian hosts only (x86-64, aarch64)
}
inline uint32_t read32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t round(uint64_t acc, uint64_t input) { return rotl(acc + input * P2, 31) * P1; }
inline uint64_t merge_round(uint64_t acc, uint64_t v) { return (acc ^ round(0, v)) * P1 + P4; }

void append_le64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
}
}  // namespace

uint64_t xxh64(const void* data, size_t len, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  const uint8_t* const end = p + len;
  uint64_t h;
  if (len >= 32) {
    uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
    const uint8_t* const limit = end - 32;
    do {
      v1 = round(v1, read64(p));
      v2 = round(v2, read64(p + 8));
      v3 = round(v3, read64(p + 16));
      v4 = round(v4, read64(p + 24));
      p += 32;
    } while (p <= limit);
    h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = merge_round(merge_round(merge_round(merge_round(h, v1), v2), v3), v4);
  } else {
    h = seed + P5;
  }
  h += static_cast<uint64_t>(len);
  for (; p + 8 <= end; p += 8) h = rotl(h ^ round(0, read64(p)), 27) * P1 + P4;
  if (p + 4 <= end) {
    h = rotl(h ^ (static_cast<uint64_t>(read32(p)) * P1), 23) * P2 + P3;
    p += 4;
  }
  for (; p < end; ++p) h = rotl(h ^ (*p * P5), 11) * P1;
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

std::string hex64(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

void CheckpointHasher::begin_tensor(const io::TensorInfo& info) {
  Tensor& t = tensors_[info.name];
  t.prefix = info.name + '\0' + io::dtype_name(info.dtype) + '\0' + io::shape_string(info.shape) + '\0';
  t.blocks.assign((info.nbytes() + kHashBlockBytes - 1) / kHashBlockBytes, 0);
}

void CheckpointHasher::hash_range(const io::TensorInfo& info, const uint8_t* data, uint64_t byte_begin,
                                  uint64_t byte_end) {
  Tensor& t = tensors_.at(info.name);
  for (uint64_t b = byte_begin; b < byte_end; b += kHashBlockBytes) {
    const uint64_t e = std::min(byte_end, b + kHashBlockBytes);
    t.blocks.at(b / kHashBlockBytes) = xxh64(data + b, e - b);
  }
}

std::string CheckpointHasher::digest() const {
  std::string all;
  for (const auto& [name, t] : tensors_) {
    std::string s = t.prefix;
    for (uint64_t b : t.blocks) append_le64(s, b);
    append_le64(all, xxh64(s.data(), s.size()));
  }
  return hex64(xxh64(all.data(), all.size()));
}

std::string file_digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open for hashing");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return hex64(xxh64(bytes.data(), bytes.size()));
}

}  // namespace xd::merge
