// Needle-in-a-haystack construction and scoring on hand-checked cases (the demo's
// byte tokenizer: one token per byte), and the bench report's parsing and ratios.
#include <gtest/gtest.h>

#include <filesystem>

#include "xdistill/demo/byte_tokenizer.h"
#include "xdistill/infer/bench.h"
#include "xdistill/infer/niah.h"
#include "xdistill/util/error.h"

using namespace xd;

namespace {

tok::Tokenizer byte_tokenizer() {
  static const std::string dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("xd_niah_tok_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    demo::write_byte_tokenizer(d.string());
    return d.string();
  }();
  return tok::Tokenizer::load(dir);
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST(Niah, SingleNeedleHaystackHasTheRequestedLengthAndLayout) {
  const auto t = byte_tokenizer();
  for (double depth : {0.0, 0.5, 1.0}) {
    const auto item = infer::make_niah_item(t, 1000, 1, depth, 7);
    // Byte-level: tokens are bytes. The longest filler sentence is under 64 bytes, so
    // the haystack fills the budget to within one sentence.
    EXPECT_EQ(item.ids.size(), item.prompt.size());
    EXPECT_LE(item.ids.size(), 1000u);
    EXPECT_GT(item.ids.size(), 1000u - 64);
    EXPECT_EQ(item.key.size(), 5u);
    EXPECT_EQ(item.value.size(), 6u);
    const std::string needle = "The special magic number for " + item.key + " is " + item.value + ".";
    const std::string question =
        "\nWhat is the special magic number for " + item.key + "? The special magic number for " + item.key + " is";
    EXPECT_EQ(count(item.prompt, needle), 1u);
    ASSERT_GE(item.prompt.size(), question.size());
    EXPECT_EQ(item.prompt.substr(item.prompt.size() - question.size()), question);
    // The only digits of the prompt are the needle's value.
    std::string digits;
    for (char c : item.prompt)
      if (c >= '0' && c <= '9') digits += c;
    EXPECT_EQ(digits, item.value);
    const size_t at = item.prompt.find(needle);
    if (depth == 0.0) {
      EXPECT_EQ(at, 0u);
    }
    if (depth == 1.0) {
      EXPECT_EQ(at + needle.size(), item.prompt.size() - question.size());
    }
    if (depth == 0.5) {
      EXPECT_GT(at, item.prompt.size() * 0.4);
      EXPECT_LT(at, item.prompt.size() * 0.6);
    }
  }
}

TEST(Niah, MultiNeedleHaystackQueriesOneOfSeveralDistinctNeedles) {
  const auto t = byte_tokenizer();
  const auto item = infer::make_niah_item(t, 600, 4, 0.25, 3);
  EXPECT_EQ(item.task, "multi-4");
  // 4 needles + the question's two mentions.
  EXPECT_EQ(count(item.prompt, "special magic number for "), 6u);
  EXPECT_EQ(count(item.prompt, "for " + item.key + " is " + item.value + "."), 1u);
  EXPECT_LE(item.ids.size(), 600u);
  // Deterministic for a seed.
  EXPECT_EQ(infer::make_niah_item(t, 600, 4, 0.25, 3).prompt, item.prompt);
  EXPECT_NE(infer::make_niah_item(t, 600, 4, 0.25, 4).prompt, item.prompt);
}

TEST(Niah, ItemsCoverContextsNeedlesAndDepths) {
  infer::NiahOptions o;
  o.contexts = {256, 512};
  o.needles = {1, 2};
  o.samples = 3;
  const auto items = infer::make_niah_items(byte_tokenizer(), o);
  ASSERT_EQ(items.size(), 12u);
  EXPECT_EQ(items[0].id, "single-256-0");
  EXPECT_EQ(items[0].depth, 0.0);
  EXPECT_EQ(items[1].depth, 0.5);
  EXPECT_EQ(items[5].id, "multi-2-256-2");
  EXPECT_EQ(items[11].context, 512);
}

TEST(Niah, ExactMatchOfTheFirstNumber) {
  EXPECT_TRUE(infer::niah_correct(" 482913.", "482913"));
  EXPECT_TRUE(infer::niah_correct("482913", "482913"));
  EXPECT_TRUE(infer::niah_correct(" is 482913, I think 5", "482913"));
  EXPECT_FALSE(infer::niah_correct(" 4829130", "482913"));
  EXPECT_FALSE(infer::niah_correct(" 48291", "482913"));
  EXPECT_FALSE(infer::niah_correct(" 111111 482913", "482913"));
  EXPECT_FALSE(infer::niah_correct("", "482913"));
  EXPECT_FALSE(infer::niah_correct(" no number", "482913"));
}

TEST(Niah, ScoresPerTaskAndContext) {
  std::vector<infer::NiahItem> items(5);
  const char* tasks[] = {"single", "single", "single", "multi-4", "single"};
  const int64_t contexts[] = {1024, 1024, 1024, 1024, 4096};
  for (int i = 0; i < 5; ++i) {
    items[i].task = tasks[i];
    items[i].context = contexts[i];
    items[i].value = "12345" + std::to_string(i);
  }
  const auto s = infer::score_niah(items, {" 123450", " 999999", " 123452.", " 123453", " 1"});
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].task, "multi-4");
  EXPECT_EQ(s[0].correct, 1);
  EXPECT_EQ(s[1].task, "single");
  EXPECT_EQ(s[1].context, 1024);
  EXPECT_EQ(s[1].correct, 2);
  EXPECT_EQ(s[1].total, 3);
  EXPECT_DOUBLE_EQ(s[1].accuracy(), 2.0 / 3.0);
  EXPECT_EQ(s[2].context, 4096);
  EXPECT_EQ(s[2].correct, 0);
}

TEST(BenchReport, ContextsAndRatios) {
  EXPECT_EQ(infer::parse_contexts("1k..8k"), (std::vector<int64_t>{1024, 2048, 4096, 8192}));
  EXPECT_EQ(infer::parse_contexts("1k,4096,16K"), (std::vector<int64_t>{1024, 4096, 16384}));
  EXPECT_THROW(infer::parse_contexts("4k..1k"), xd::UsageError);
  EXPECT_THROW(infer::parse_contexts("x"), xd::UsageError);
  infer::BenchResult t, s, oom;
  t.model = "teacher", t.kind = "teacher", t.batch = 8, t.context = 32768;
  t.prefill_tok_s = 1000, t.decode_tok_s = 100, t.extra_bytes = 4 << 20;
  s = t;
  s.model = "student", s.kind = "student", s.prefill_tok_s = 2500, s.decode_tok_s = 450, s.extra_bytes = 1 << 20;
  oom = t;
  oom.context = 65536, oom.status = "oom";
  const std::string text = infer::format_results({t, s, oom});
  EXPECT_NE(text.find("2.50x"), std::string::npos) << text;
  EXPECT_NE(text.find("4.50x"), std::string::npos) << text;
  EXPECT_NE(text.find("0.25x"), std::string::npos) << text;
  EXPECT_NE(text.find("oom"), std::string::npos) << text;
  EXPECT_EQ(t.to_json()["decode_tok_s"], 100.0);
  const std::string svg = infer::render_bench_svg({t, s});
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("student (student) B=8"), std::string::npos);
}

TEST(Niah, WorksWithAHuggingFaceTokenizer) {
  // The fixture as the tokenizer tests find it: in the checkout, beside it, or the workplace's copy.
  std::string dir = "/work/shared/fixtures/tokenizers/llama3";
  for (const char* base : {"/shared/fixtures/tokenizers/llama3", "/../shared/fixtures/tokenizers/llama3"})
    if (std::filesystem::exists(std::string(XD_SOURCE_DIR) + base + "/tokenizer.json")) dir = std::string(XD_SOURCE_DIR) + base;
  ASSERT_TRUE(std::filesystem::exists(dir + "/tokenizer.json")) << "llama3 tokenizer fixture not found (" << dir << ")";
  const auto t = tok::Tokenizer::load(dir);
  const auto item = infer::make_niah_item(t, 2048, 4, 0.5, 9);
  EXPECT_LE(item.ids.size(), 2048u);
  EXPECT_GT(item.ids.size(), 2048u - 24);  // within about one filler sentence
  // The prompt's ids are the tokenizer's own encoding (with its special tokens).
  EXPECT_EQ(item.ids, t.encode(item.prompt, true));
  EXPECT_EQ(t.decode(item.ids, /*skip_special_tokens=*/true), item.prompt);
  // The answer continues the prompt as " <value>": scored by the digits.
  EXPECT_TRUE(infer::niah_correct(t.decode(t.encode(" " + item.value + ".", false)), item.value));
}
