// Unit tests of the tokenizer's pieces: byte-level alphabet, UTF-8 helpers, the
// regex engine's Oniguruma semantics, pre-tokenizer splitting and added-token
// extraction with lstrip / rstrip / single_word. Expected values are worked out
// by hand from the GPT-2 alphabet and the Hugging Face rules.
#include <gtest/gtest.h>

#include "tokenizer/added_tokens.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

using namespace xd::tok;

namespace {

std::vector<std::string> words(const PreTokenizer& p, const std::string& text) {
  std::vector<Piece> pieces;
  p.split(text, pieces);
  std::vector<std::string> out;
  for (const Piece& piece : pieces) out.push_back(text.substr(piece.begin, piece.end - piece.begin));
  return out;
}

struct Extracted {
  std::string text;
  int32_t id;
  bool operator==(const Extracted& o) const { return text == o.text && id == o.id; }
};

std::vector<Extracted> extract(const AddedTokenMatcher& m, const std::string& text) {
  std::vector<TextSplit> splits;
  m.split(text, splits);
  std::vector<Extracted> out;
  for (const TextSplit& s : splits) out.push_back({text.substr(s.begin, s.end - s.begin), s.id});
  return out;
}

AddedToken token(int32_t id, std::string content) {
  AddedToken t;
  t.id = id;
  t.content = std::move(content);
  return t;
}

constexpr const char* kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

}  // namespace

TEST(ByteLevel, AlphabetMapsEveryByteToADistinctPrintableCodePoint) {
  const auto& table = byte_to_code_point();
  EXPECT_EQ(table[' '], 0x120u);   // 'Ġ'
  EXPECT_EQ(table['\n'], 0x10Au);  // 'Ċ'
  EXPECT_EQ(table['A'], uint32_t('A'));
  EXPECT_EQ(table[0xAD], 0x143u);  // soft hyphen is not printable: after the 67 control bytes
  for (int b = 0; b < 256; ++b) EXPECT_EQ(code_point_to_byte(table[size_t(b)]), b);
  EXPECT_EQ(bytes_to_byte_level("a b\n"), "a\xC4\xA0" "b\xC4\x8A");
  std::string back;
  ASSERT_TRUE(byte_level_to_bytes("\xC4\xA0hello", back));
  EXPECT_EQ(back, " hello");
  EXPECT_FALSE(byte_level_to_bytes("a b", back));  // a raw space is not in the alphabet
}

TEST(Utf8, ValidationAndLossyDecoding) {
  EXPECT_EQ(utf8_invalid_offset("h\xC3\xA9llo"), 6u);
  EXPECT_EQ(utf8_invalid_offset("ab\xC3"), 2u);
  EXPECT_EQ(utf8_invalid_offset("\xED\xA0\x80"), 0u);  // a surrogate
  EXPECT_EQ(utf8_lossy("a\xE6\x97"), "a\xEF\xBF\xBD");  // truncated 3-byte sequence: one U+FFFD
  EXPECT_EQ(utf8_lossy("\xFF\xFE"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
}

TEST(Regex, WhitespaceIsUnicodeWhiteSpaceAsInOniguruma) {
  EXPECT_NE(translate_pattern("\\s+"), "\\s+");
  Regex space("\\s", "test");
  auto count = [&](const std::string& s) {
    int n = 0;
    space.for_each_match(s, [&](size_t, size_t) { ++n; });
    return n;
  };
  EXPECT_EQ(count(" \t\n\r\x0B\x0C"), 6);
  EXPECT_EQ(count("\xC2\xA0\xE3\x80\x80\xC2\x85\xE2\x80\xA8"), 4);  // NBSP, ideographic space, NEL, LS
  EXPECT_EQ(count("\xE1\xA0\x8E"), 0);  // U+180E is no longer White_Space (PCRE2's \s would match it)
}

TEST(Regex, CaseInsensitiveContractionsAndLetterClasses) {
  const PreTokenizer p = PreTokenizer::split_regex(kLlama3Pattern, SplitBehavior::Isolated, false);
  EXPECT_EQ(words(p, "I'LL don't"), (std::vector<std::string>{"I", "'LL", " don", "'t"}));
  EXPECT_EQ(words(p, "'\xC5\xBF"), (std::vector<std::string>{"'\xC5\xBF"}));  // 'ſ folds to 's
  EXPECT_EQ(words(p, "1234567 x"), (std::vector<std::string>{"123", "456", "7", " x"}));
  EXPECT_EQ(words(p, "a   b"), (std::vector<std::string>{"a", "  ", " b"}));  // \s+(?!\S)
  EXPECT_EQ(words(p, "x\n\n  y"), (std::vector<std::string>{"x", "\n\n", " ", " y"}));
  EXPECT_EQ(words(p, "\xE6\x97\xA5\xE6\x9C\xAC!?"), (std::vector<std::string>{"\xE6\x97\xA5\xE6\x9C\xAC", "!?"}));
}

TEST(PreTokenizer, RemovedWithInvertKeepsOnlyTheMatches) {
  const PreTokenizer keep = PreTokenizer::split_regex("[a-z]+", SplitBehavior::Removed, true);
  EXPECT_EQ(words(keep, "ab, cd!"), (std::vector<std::string>{"ab", "cd"}));
  const PreTokenizer drop = PreTokenizer::split_regex("[a-z]+", SplitBehavior::Removed, false);
  EXPECT_EQ(words(drop, "ab, cd!"), (std::vector<std::string>{", ", "!"}));
  const PreTokenizer prev = PreTokenizer::split_regex("-", SplitBehavior::MergedWithPrevious, false);
  EXPECT_EQ(words(prev, "a-b--c"), (std::vector<std::string>{"a-", "b-", "-", "c"}));
  const PreTokenizer next = PreTokenizer::split_regex("-", SplitBehavior::MergedWithNext, false);
  EXPECT_EQ(words(next, "a-b--c"), (std::vector<std::string>{"a", "-b", "-", "-c"}));
  const PreTokenizer contiguous = PreTokenizer::split_regex("-", SplitBehavior::Contiguous, false);
  EXPECT_EQ(words(contiguous, "a-b--c"), (std::vector<std::string>{"a", "-", "b", "--", "c"}));
}

TEST(AddedTokens, LeftmostLongestMatching) {
  const AddedTokenMatcher m({token(1, "<a>"), token(2, "<a><b>"), token(3, "b")}, {"<a>", "<a><b>", "b"});
  EXPECT_EQ(extract(m, "x<a><b>b<a>"),
            (std::vector<Extracted>{{"x", -1}, {"<a><b>", 2}, {"b", 3}, {"<a>", 1}}));
  EXPECT_EQ(extract(m, "plain"), (std::vector<Extracted>{{"plain", -1}}));
}

TEST(AddedTokens, StripFlagsAbsorbWhitespace) {
  AddedToken left = token(7, "<L>"), right = token(8, "<R>");
  left.lstrip = true;
  right.rstrip = true;
  const AddedTokenMatcher m({left, right}, {"<L>", "<R>"});
  EXPECT_EQ(extract(m, "a \t<L> b<R> \n c"),
            (std::vector<Extracted>{{"a", -1}, {" \t<L>", 7}, {" b", -1}, {"<R> \n ", 8}, {"c", -1}}));
  // lstrip never reaches back into text an earlier token already took.
  EXPECT_EQ(extract(m, "<R>  <L>"), (std::vector<Extracted>{{"<R>  ", 8}, {"<L>", 7}}));
}

TEST(AddedTokens, SingleWordNeedsNonWordNeighbours) {
  AddedToken mask = token(4, "<mask>");
  mask.single_word = true;
  const AddedTokenMatcher m({mask}, {"<mask>"});
  EXPECT_EQ(extract(m, "<mask> a<mask> <mask>b, <mask>"),
            (std::vector<Extracted>{{"<mask>", 4}, {" a<mask> <mask>b, ", -1}, {"<mask>", 4}}));
}
