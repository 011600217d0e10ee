// SHA-256 (FIPS 180-4) for the checksums of shard files. SHA-256 rather than a faster
// non-cryptographic hash so that anyone can check a shard with `sha256sum`.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace xd::data {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  // Finishes the hash and returns 64 lowercase hex digits; the object is then spent.
  std::string hex_digest();

 private:
  void compress(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_{};
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

std::string sha256_hex(const void* data, size_t size);
// Streams the file; throws xd::Error naming the file if it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace xd::data
