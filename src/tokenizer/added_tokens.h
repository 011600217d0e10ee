// Added tokens ("added_tokens" of tokenizer.json): strings that are cut out of
// the text before normalisation and pre-tokenisation and map to one id each.
// Matching is leftmost-longest over all tokens, then each token's flags apply:
// single_word (only between non-word characters), lstrip / rstrip (absorb the
// whitespace on that side).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace xd::tok {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// A piece of text: either an added token (id >= 0) or plain text (id < 0).
struct TextSplit {
  uint32_t begin, end;
  int32_t id;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `patterns[i]` is the string to find for `tokens[i]` (its content, or the
  // normalised content for tokens with normalized=true).
  AddedTokenMatcher(std::vector<AddedToken> tokens, std::vector<std::string> patterns);

  bool empty() const { return tokens_.empty(); }
  // Splits `text` into added tokens and the plain text between them (in order,
  // covering the text); empty pieces are omitted.
  void split(std::string_view text, std::vector<TextSplit>& out) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
    int32_t token = -1;                                        // index into tokens_ where a pattern ends
  };
  // Longest pattern starting at `pos`: its token index and end, or -1.
  int32_t longest_at(std::string_view text, size_t pos, size_t& end) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> trie_;
  bool first_byte_[256] = {};
};

}  // namespace xd::tok
