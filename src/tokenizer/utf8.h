// UTF-8 helpers for the tokenizer: validation, decoding one code point, and the
// lossy byte-to-text conversion that Hugging Face decoders use.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace xd::tok {

// Returns text.size() when `text` is valid UTF-8, else the byte offset of the
// first invalid sequence.
size_t utf8_invalid_offset(std::string_view text);

// Length in bytes of the (valid) UTF-8 sequence starting with byte `lead`.
inline size_t utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

// Decodes the code point at `p` of valid UTF-8; stores its length in `len`.
inline uint32_t utf8_decode(const char* p, size_t& len) {
  const auto* s = reinterpret_cast<const unsigned char*>(p);
  if (s[0] < 0x80) { len = 1; return s[0]; }
  if (s[0] < 0xE0) { len = 2; return ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu); }
  if (s[0] < 0xF0) {
    len = 3;
    return ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
  }
  len = 4;
  return ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
}

void utf8_append(std::string& out, uint32_t code_point);

// Bytes to text the way Rust's String::from_utf8_lossy does it: each maximal
// invalid subsequence becomes one U+FFFD. Decoded token bytes need exactly this
// to match Hugging Face's decode on ids that split a character.
std::string utf8_lossy(std::string_view bytes);

}  // namespace xd::tok
