// The GPT-2 byte-level alphabet: every byte maps to one printable code point, so
// that BPE vocabularies can be stored as text. Bytes that are printable Latin-1
// keep their value; the others take the code points 256, 257, ... in byte order.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace xd::tok {

// Code point that stands for each byte.
const std::array<uint32_t, 256>& byte_to_code_point();

// The byte a code point stands for, or -1 when it is not in the alphabet.
int code_point_to_byte(uint32_t code_point);

// Maps raw bytes to their byte-level text ("hello world" -> "helloĠworld").
std::string bytes_to_byte_level(std::string_view bytes);

// The inverse: byte-level text back to raw bytes. Returns false (and leaves
// `out` unspecified) when `text` holds a code point outside the alphabet.
bool byte_level_to_bytes(std::string_view text, std::string& out);

}  // namespace xd::tok
