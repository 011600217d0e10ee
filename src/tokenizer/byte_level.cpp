#include "tokenizer/byte_level.h"

#include <vector>

#include "tokenizer/utf8.h"

namespace xd::tok {
namespace {

struct Alphabet {
  std::array<uint32_t, 256> to_cp{};
  std::vector<int16_t> to_byte;  // indexed by code point (< 512)

  Alphabet() : to_byte(512, -1) {
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      to_cp[b] = printable(b) ? static_cast<uint32_t>(b) : next++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet a;
  return a;
}

}  // namespace

const std::array<uint32_t, 256>& byte_to_code_point() { return alphabet().to_cp; }

int code_point_to_byte(uint32_t cp) {
  const auto& table = alphabet().to_byte;
  return cp < table.size() ? table[cp] : -1;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) utf8_append(out, byte_to_code_point()[b]);
  return out;
}

bool byte_level_to_bytes(std::string_view text, std::string& out) {
  out.clear();
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    const int b = code_point_to_byte(utf8_decode(text.data() + i, len));
    if (b < 0) return false;
    out.push_back(static_cast<char>(b));
    i += len;
  }
  return true;
}

}  // namespace xd::tok
