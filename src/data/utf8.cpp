#include "xdistill/data/utf8.h"

#include <cstdint>

namespace xd::data {
namespace {

// Length of the well-formed sequence starting at text[i] (1..4), or, if there is
// none, minus the length of the maximal subpart to replace (-1..-3).
int sequence_length(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(text[k]); };
  const uint8_t lead = byte(i);
  if (lead < 0x80) return 1;
  int length;
  uint8_t second_lo = 0x80, second_hi = 0xBF;  // Unicode Table 3-7
  if (lead >= 0xC2 && lead <= 0xDF) length = 2;
  else if (lead == 0xE0) length = 3, second_lo = 0xA0;
  else if (lead >= 0xE1 && lead <= 0xEC) length = 3;
  else if (lead == 0xED) length = 3, second_hi = 0x9F;
  else if (lead >= 0xEE && lead <= 0xEF) length = 3;
  else if (lead == 0xF0) length = 4, second_lo = 0x90;
  else if (lead >= 0xF1 && lead <= 0xF3) length = 4;
  else if (lead == 0xF4) length = 4, second_hi = 0x8F;
  else return -1;  // 80..C1, F5..FF never start a sequence
  for (int k = 1; k < length; ++k) {
    if (i + k >= text.size()) return -k;
    const uint8_t lo = k == 1 ? second_lo : 0x80, hi = k == 1 ? second_hi : 0xBF;
    if (byte(i + k) < lo || byte(i + k) > hi) return -k;
  }
  return length;
}

}  // namespace

size_t count_invalid_utf8(std::string_view text, size_t* first_invalid) {
  size_t count = 0;
  for (size_t i = 0; i < text.size();) {
    const int n = sequence_length(text, i);
    if (n < 0 && count++ == 0 && first_invalid) *first_invalid = i;
    i += n < 0 ? -n : n;
  }
  return count;
}

std::string replace_invalid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const int n = sequence_length(text, i);
    if (n > 0) {
      out.append(text.data() + i, n);
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      i += -n;
    }
  }
  return out;
}

}  // namespace xd::data
