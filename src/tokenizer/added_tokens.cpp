#include "tokenizer/added_tokens.h"

#include <algorithm>
#include <utf8proc.h>

#include "tokenizer/utf8.h"

namespace xd::tok {
namespace {

// Unicode White_Space (Rust's char::is_whitespace and regex `\s`).
bool is_white_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Rust regex `\w`: alphabetic, marks, decimal digits, connector punctuation, joiners.
bool is_word_char(uint32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (c == 0x200C || c == 0x200D) return true;
  switch (utf8proc_category(utf8proc_int32_t(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

// The code point that ends at byte `end` (exclusive) of valid UTF-8.
uint32_t code_point_before(std::string_view s, size_t end) {
  size_t begin = end - 1;
  while (begin > 0 && (static_cast<unsigned char>(s[begin]) & 0xC0) == 0x80) --begin;
  size_t len = 0;
  return utf8_decode(s.data() + begin, len);
}

uint32_t code_point_at(std::string_view s, size_t pos) {
  size_t len = 0;
  return utf8_decode(s.data() + pos, len);
}

// Start of the run of whitespace that ends at `end`.
size_t whitespace_start_before(std::string_view s, size_t end) {
  while (end > 0) {
    size_t begin = end - 1;
    while (begin > 0 && (static_cast<unsigned char>(s[begin]) & 0xC0) == 0x80) --begin;
    size_t len = 0;
    if (!is_white_space(utf8_decode(s.data() + begin, len))) break;
    end = begin;
  }
  return end;
}

// End of the run of whitespace that starts at `pos`.
size_t whitespace_end_after(std::string_view s, size_t pos) {
  while (pos < s.size()) {
    size_t len = 0;
    if (!is_white_space(utf8_decode(s.data() + pos, len))) break;
    pos += len;
  }
  return pos;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens, std::vector<std::string> patterns)
    : tokens_(std::move(tokens)) {
  trie_.emplace_back();
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& p = patterns[t];
    if (p.empty()) continue;
    first_byte_[static_cast<unsigned char>(p[0])] = true;
    int32_t node = 0;
    for (unsigned char c : p) {
      auto& kids = trie_[size_t(node)].children;
      auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(c, int32_t(-1)));
      if (it != kids.end() && it->first == c) {
        node = it->second;
      } else {
        const int32_t child = int32_t(trie_.size());
        kids.insert(it, {c, child});
        trie_.emplace_back();  // invalidates `kids`; not used after this
        node = child;
      }
    }
    // The first token with a given pattern wins, as in an Aho-Corasick automaton.
    if (trie_[size_t(node)].token < 0) trie_[size_t(node)].token = int32_t(t);
  }
}

int32_t AddedTokenMatcher::longest_at(std::string_view text, size_t pos, size_t& end) const {
  int32_t node = 0, found = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto& kids = trie_[size_t(node)].children;
    const unsigned char c = static_cast<unsigned char>(text[i]);
    auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(c, int32_t(-1)));
    if (it == kids.end() || it->first != c) break;
    node = it->second;
    if (trie_[size_t(node)].token >= 0) found = trie_[size_t(node)].token, end = i + 1;
  }
  return found;
}

void AddedTokenMatcher::split(std::string_view text, std::vector<TextSplit>& out) const {
  size_t covered = 0;  // end of the last emitted piece
  size_t pos = 0;      // where the search for the next match resumes
  while (pos < text.size() && !tokens_.empty()) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    size_t end = 0;
    const int32_t t = longest_at(text, pos, end);
    if (t < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[size_t(t)];
    size_t start = pos;
    size_t stop = end;
    pos = end;  // matches never overlap, whatever the strip flags absorb
    if (token.single_word) {
      const bool word_before = start > 0 && is_word_char(code_point_before(text, start));
      const bool word_after = stop < text.size() && is_word_char(code_point_at(text, stop));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) start = std::max(whitespace_start_before(text, start), covered);
    if (token.rstrip) stop = whitespace_end_after(text, stop);
    if (covered < start) out.push_back({uint32_t(covered), uint32_t(start), -1});
    out.push_back({uint32_t(start), uint32_t(stop), token.id});
    covered = stop;
  }
  if (covered < text.size()) out.push_back({uint32_t(covered), uint32_t(text.size()), -1});
}

}  // namespace xd::tok
