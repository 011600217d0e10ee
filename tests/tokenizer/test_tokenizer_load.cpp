// Tokenizer-level tests on the fixture tokenizers: loading, special ids,
// encode/decode round trips, batch encoding equal to single encoding, and the
// errors for bad input. The ids of a few strings were taken from Hugging Face
// `tokenizers` 0.23.2 (the parity suite checks millions more).
#include <gtest/gtest.h>

#include <filesystem>

#include "xdistill/tokenizer/chat_template.h"
#include "xdistill/tokenizer/tokenizer.h"
#include "xdistill/util/error.h"

using xd::tok::Tokenizer;

namespace {

std::string fixture(const char* name) {
  for (const char* base : {"/shared/fixtures/tokenizers/", "/../shared/fixtures/tokenizers/"}) {
    const std::string dir = std::string(XD_SOURCE_DIR) + base + name;
    if (std::filesystem::exists(dir + "/tokenizer.json")) return dir;
  }
  return std::string("/work/shared/fixtures/tokenizers/") + name;
}

}  // namespace

TEST(Tokenizer, Llama3KnownIdsAndSpecials) {
  const Tokenizer t = Tokenizer::load(fixture("llama3"));
  EXPECT_EQ(t.encode("Hello world! <|begin_of_text|>  don't 12345 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E"),
            (std::vector<int32_t>{9906, 1917, 0, 220, 128000, 220, 1541, 956, 220, 4513, 1774, 105180, 102158}));
  EXPECT_EQ(t.vocab_size(), 128256);
  EXPECT_EQ(t.bos_id(), 128000);
  EXPECT_EQ(t.eos_id(), 128001);
  EXPECT_FALSE(t.pad_id().has_value());
  EXPECT_EQ(t.token_to_id("<|eot_id|>"), 128009);
  EXPECT_TRUE(t.is_special(128009));
  EXPECT_FALSE(t.is_special(9906));
  EXPECT_EQ(t.fingerprint().size(), 32u);
  EXPECT_EQ(t.fingerprint(), Tokenizer::load(fixture("llama3")).fingerprint());
  EXPECT_NE(t.fingerprint(), Tokenizer::load(fixture("qwen3")).fingerprint());
}

TEST(Tokenizer, RoundTripAndSkipSpecial) {
  const Tokenizer t = Tokenizer::load(fixture("qwen3"));
  const std::string text = "<|im_start|>user\nGr\xC3\xBC\xC3\x9F" "e \xF0\x9F\xA6\x84\tcode()<|im_end|>";
  const auto ids = t.encode(text);
  EXPECT_EQ(t.decode(ids), text);
  EXPECT_EQ(t.decode(ids, true), "user\nGr\xC3\xBC\xC3\x9F" "e \xF0\x9F\xA6\x84\tcode()");
  EXPECT_THROW(t.decode({int32_t(t.vocab_size())}), xd::Error);
  EXPECT_THROW(t.encode("bad \xFF byte"), xd::Error);
}

TEST(Tokenizer, BatchEqualsSingleAndOffsetsPointIntoText) {
  const Tokenizer t = Tokenizer::load(fixture("cl100k"));
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back("doc " + std::to_string(i) + std::string(size_t(i), 'x') + " <|endoftext|>");
  const auto batch = t.encode_batch(texts, true, 2);
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(batch[i], t.encode(texts[i]));
  std::vector<uint32_t> offsets;
  const std::string text = "Hello, world<|endoftext|> again";
  const auto ids = t.encode_with_offsets(text, false, offsets);
  ASSERT_EQ(ids.size(), offsets.size());
  std::string rebuilt;
  for (size_t i = 0; i < ids.size(); ++i) {
    const size_t end = i + 1 < ids.size() ? offsets[i + 1] : text.size();
    EXPECT_EQ(t.decode({ids[i]}), text.substr(offsets[i], end - offsets[i]));
  }
}

TEST(Tokenizer, MissingOrBrokenDirectoryNamesTheFile) {
  try {
    Tokenizer::load("/nonexistent/tok");
    FAIL();
  } catch (const xd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/tok"), std::string::npos);
  }
}

TEST(ChatTemplate, FormatDetection) {
  using xd::tok::ChatFormat;
  EXPECT_EQ(xd::tok::detect_chat_format(Tokenizer::load(fixture("llama3")).config().chat_template), ChatFormat::Llama3);
  EXPECT_EQ(xd::tok::detect_chat_format(Tokenizer::load(fixture("qwen3")).config().chat_template), ChatFormat::Qwen3);
  EXPECT_EQ(xd::tok::parse_chat_format("olmo2"), ChatFormat::Olmo2);
  EXPECT_THROW(xd::tok::parse_chat_format("nope"), xd::UsageError);
  EXPECT_THROW(xd::tok::detect_chat_format("{{ messages }}"), xd::Error);
}
