// UTF-8 validation and repair for input text (the data recipe's errors.invalid_utf8).
// An invalid sequence is counted and replaced in units of "maximal subparts" (Unicode
// §3.9, U+FFFD substitution of maximal subparts): a lead byte followed by the longest
// run of bytes that could still begin a well-formed sequence is one error, replaced by
// one U+FFFD. This is what Python's bytes.decode("utf-8", "replace") and the WHATWG
// encoding standard do, so results agree with common tools.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace xd::data {

// Number of invalid maximal subparts in `text`; the byte offset of the first in
// *first_invalid (when given and the count is > 0).
size_t count_invalid_utf8(std::string_view text, size_t* first_invalid = nullptr);

// `text` with every invalid maximal subpart replaced by U+FFFD (EF BF BD).
std::string replace_invalid_utf8(std::string_view text);

}  // namespace xd::data
