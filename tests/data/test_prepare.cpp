// Data preparation with a byte-level fake tokenizer: formats, bad input, determinism, resume.
#include <gtest/gtest.h>
#include <zstd.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "data/records.h"
#include "fake_encoder.h"
#include "xdistill/config/config.h"
#include "xdistill/data/loader.h"
#include "xdistill/data/options.h"
#include "xdistill/data/prepare.h"
#include "xdistill/data/shard_set.h"
#include "xdistill/train/options.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

namespace fs = std::filesystem;
using namespace xd::data;
using xd::data::testing::ByteEncoder;

namespace {

// Removes this process's scratch directory when the test binary exits.
struct ScratchCleanup {
  ~ScratchCleanup() {
    std::error_code ec;
    fs::remove_all(fs::temp_directory_path() / ("xd_data_prepare_" + std::to_string(::getpid())), ec);
  }
} scratch_cleanup;

fs::path test_root() { return fs::temp_directory_path() / ("xd_data_prepare_" + std::to_string(::getpid())); }

std::string write_file(const std::string& name, const std::string& bytes) {
  const fs::path p = test_root() / "in" / name;
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
  return p.string();
}

std::string write_zst(const std::string& name, const std::string& bytes) {
  std::string out(ZSTD_compressBound(bytes.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), bytes.data(), bytes.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return write_file(name, out);
}

PrepareOptions options_for(const std::vector<std::string>& inputs, const std::string& out_name) {
  PrepareOptions o;
  for (const auto& p : inputs) o.inputs.push_back({p});
  o.output = (test_root() / "out" / out_name).string();
  fs::remove_all(o.output);
  fs::remove_all(o.output + ".partial");
  o.show_progress = false;
  o.threads = 2;
  o.records_per_unit = 3;
  return o;
}

struct Stream {
  std::vector<uint32_t> tokens;
  std::vector<uint8_t> mask;
};
Stream read_all(const std::string& dir) {
  const ShardSet set = ShardSet::open(dir, true);
  Stream s{std::vector<uint32_t>(set.tokens()), std::vector<uint8_t>(set.tokens())};
  set.read(0, set.tokens(), s.tokens.data(), s.mask.data());
  return s;
}

std::vector<int32_t> ids_of(const std::string& text) { return ByteEncoder().encode_text(text); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const xd::Error& e) {
    return e.what();
  }
  return "<no error>";
}

std::string dir_bytes(const std::string& dir) {  // every file's name and bytes, sorted
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  std::string all;
  for (const auto& n : names) all += n + "\n" + xd::fs::read_text(fs::path(dir) / n);
  return all;
}

const ByteEncoder kEncoder;

}  // namespace

std::vector<uint32_t> concat(const std::vector<std::string>& texts) {
  std::vector<uint32_t> out;
  for (const auto& t : texts) {
    for (int32_t id : ids_of(t)) out.push_back(id);
    out.push_back(2);  // EOS
  }
  return out;
}

TEST(Prepare, JsonlTextGetsBosTokensAndEos) {
  const auto in = write_file("a.jsonl", "{\"text\": \"hi\"}\n\n  \n{\"text\": \"yo!\", \"id\": 3}\r\n{\"body\": \"z\"}");
  PrepareOptions o = options_for({in}, "jsonl");
  o.inputs[0].format = InputFormat::Auto;
  o.malformed_json = MalformedPolicy::Skip;  // the last line has neither text nor messages
  const auto result = prepare_shards(o, kEncoder);
  const Stream s = read_all(o.output);
  EXPECT_EQ(s.tokens, concat({"hi", "yo!"}));
  EXPECT_EQ(s.mask, std::vector<uint8_t>(s.tokens.size(), 1));
  EXPECT_EQ(result.manifest.documents, 2);
  EXPECT_EQ(result.manifest.stats.at("records"), 3);
  EXPECT_EQ(result.manifest.stats.at("skipped_malformed_json"), 1);
  EXPECT_EQ(result.manifest.tokenizer.fingerprint, "bytes-v1");
  EXPECT_TRUE(result.manifest.eos_appended);
  // A custom text field.
  const auto custom = write_file("b.jsonl", "{\"body\": \"abc\"}\n");
  PrepareOptions c = options_for({custom}, "custom_field");
  c.inputs[0].format = InputFormat::Jsonl;
  c.inputs[0].text_field = "body";
  prepare_shards(c, kEncoder);
  EXPECT_EQ(read_all(c.output).tokens, concat({"abc"}));
}

TEST(Prepare, ChatHasAssistantOnlyLossMask) {
  const auto in = write_file("chat.jsonl",
                             R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ab"}]})"
                             "\n");
  PrepareOptions o = options_for({in}, "chat");
  prepare_shards(o, kEncoder);
  const Stream s = read_all(o.output);
  const std::string rendered = "<user>:q\n<assistant>:ab\n";
  ASSERT_EQ(s.tokens.size(), rendered.size() + 1);
  std::string masked;
  for (size_t i = 0; i + 1 < s.tokens.size(); ++i)
    if (s.mask[i]) masked += char(s.tokens[i] - 3);
  EXPECT_EQ(masked, "ab\n");
  EXPECT_EQ(s.tokens.back(), 2u);
  EXPECT_EQ(s.mask.back(), 1) << "the EOS after an assistant turn is a target";
  o = options_for({in}, "chat_all");
  o.chat_loss = ChatLoss::All;
  const auto all = prepare_shards(o, kEncoder);
  EXPECT_EQ(all.manifest.loss_tokens, all.manifest.tokens);
}

TEST(Prepare, PlainTextSplitsAndZstd) {
  const std::string text = "first line\nsecond\n\n\nthird para\nstill third\n";
  const auto plain = write_file("doc.txt", text);
  const auto zst = write_zst("doc.txt.zst", text);
  PrepareOptions o = options_for({plain}, "text_file");
  prepare_shards(o, kEncoder);
  EXPECT_EQ(read_all(o.output).tokens, concat({"first line\nsecond\n\n\nthird para\nstill third"}));
  o = options_for({zst}, "text_lines");
  o.inputs[0].text_split = TextSplit::Line;
  prepare_shards(o, kEncoder);
  EXPECT_EQ(read_all(o.output).tokens, concat({"first line", "second", "third para", "still third"}));
  o = options_for({zst}, "text_paragraphs");
  o.inputs[0].text_split = TextSplit::Paragraph;
  prepare_shards(o, kEncoder);
  EXPECT_EQ(read_all(o.output).tokens, concat({"first line\nsecond", "third para\nstill third"}));
  // JSON lines compressed, with a multi-frame file (two frames concatenated).
  std::string frames;
  for (const char* part : {"{\"text\": \"one\"}\n", "{\"text\": \"two\"}\n"}) {
    std::string f(ZSTD_compressBound(64), '\0');
    f.resize(ZSTD_compress(f.data(), f.size(), part, std::strlen(part), 1));
    frames += f;
  }
  const auto jz = write_file("frames.jsonl.zst", frames);
  o = options_for({jz}, "jsonl_zst");
  prepare_shards(o, kEncoder);
  EXPECT_EQ(read_all(o.output).tokens, concat({"one", "two"}));
  // A truncated zstd file is an error naming the file.
  const auto cut = write_file("cut.jsonl.zst", frames.substr(0, frames.size() - 5));
  o = options_for({cut}, "jsonl_cut");
  const std::string e = error_of([&] { prepare_shards(o, kEncoder); });
  EXPECT_NE(e.find("cut.jsonl.zst"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST(Prepare, MalformedJsonFailsWithFileAndLineOrIsSkipped) {
  const auto in = write_file("bad.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n{\"text\": 5}\n[1]\n{\"text\": \"end\"}\n");
  PrepareOptions o = options_for({in}, "malformed_fail");
  const std::string e = error_of([&] { prepare_shards(o, kEncoder); });
  EXPECT_NE(e.find("bad.jsonl:2: malformed JSON"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(o.output)) << "a failed preparation leaves no shard set";
  o = options_for({in}, "malformed_skip");
  o.malformed_json = MalformedPolicy::Skip;
  const auto r = prepare_shards(o, kEncoder);
  EXPECT_EQ(r.manifest.stats.at("skipped_malformed_json"), 3);
  EXPECT_EQ(read_all(o.output).tokens, concat({"ok", "end"}));
  // A mistyped field is malformed too, and names its line.
  const auto typed = write_file("typed.jsonl", "{\"text\": \"ok\"}\n{\"text\": 5}\n");
  o = options_for({typed}, "malformed_type");
  const std::string t = error_of([&] { prepare_shards(o, kEncoder); });
  EXPECT_NE(t.find("typed.jsonl:2: field 'text' is a number"), std::string::npos) << t;
}

TEST(Prepare, InvalidUtf8Policies) {
  // Line 2 holds an invalid byte inside the JSON string; line 3 is valid.
  const auto in = write_file("utf8.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\xFF\xC3(c\"}\n{\"text\": \"d\"}\n");
  PrepareOptions o = options_for({in}, "utf8_replace");
  auto r = prepare_shards(o, kEncoder);
  EXPECT_EQ(read_all(o.output).tokens, concat({"a", "b\xEF\xBF\xBD\xEF\xBF\xBD(c", "d"}));
  EXPECT_EQ(r.manifest.stats.at("utf8_replacements"), 2);
  EXPECT_EQ(r.manifest.stats.at("documents_with_replacements"), 1);
  o = options_for({in}, "utf8_skip");
  o.invalid_utf8 = Utf8Policy::Skip;
  r = prepare_shards(o, kEncoder);
  EXPECT_EQ(read_all(o.output).tokens, concat({"a", "d"}));
  EXPECT_EQ(r.manifest.stats.at("skipped_invalid_utf8"), 1);
  o = options_for({in}, "utf8_fail");
  o.invalid_utf8 = Utf8Policy::Fail;
  const std::string e = error_of([&] { prepare_shards(o, kEncoder); });
  EXPECT_NE(e.find("utf8.jsonl:2: invalid UTF-8 at byte 11"), std::string::npos) << e;
  // Plain text files follow the same policy.
  const auto txt = write_file("latin1.txt", "caf\xE9");
  o = options_for({txt}, "utf8_text");
  prepare_shards(o, kEncoder);
  EXPECT_EQ(read_all(o.output).tokens, concat({"caf\xEF\xBF\xBD"}));
}

TEST(Prepare, EmptyDocumentsAreSkippedAndCountedOrFail) {
  const auto in = write_file("empty.jsonl",
                             "{\"text\": \"\"}\n{\"text\": \"  \\n\"}\n{\"text\": null}\n{\"messages\": []}\n"
                             "{\"text\": \"x\"}\n");
  const auto empty_file = write_file("empty.txt", "");
  PrepareOptions o = options_for({in, empty_file}, "empty_skip");
  const auto r = prepare_shards(o, kEncoder);
  EXPECT_EQ(r.manifest.stats.at("skipped_empty"), 5);
  EXPECT_EQ(read_all(o.output).tokens, concat({"x"}));
  o = options_for({in}, "empty_fail");
  o.empty_document = EmptyPolicy::Fail;
  EXPECT_NE(error_of([&] { prepare_shards(o, kEncoder); }).find("empty.jsonl:1: empty document"), std::string::npos);
  // Only empty documents: an empty but valid shard set.
  const auto only = write_file("only_empty.jsonl", "{\"text\": \"\"}\n");
  o = options_for({only}, "empty_only");
  EXPECT_EQ(prepare_shards(o, kEncoder).manifest.tokens, 0);
  EXPECT_EQ(ShardSet::open(o.output).tokens(), 0);
}

namespace {
// Many documents of varied length in two files, for determinism and resume.
PrepareOptions corpus_options(const std::string& out_name) {
  std::string a, b;
  for (int i = 0; i < 400; ++i) {
    const std::string text = "doc " + std::to_string(i) + " " + std::string(i % 53, char('a' + i % 26));
    (i % 2 ? a : b) += nlohmann::json{{"text", text}}.dump() + "\n";
  }
  PrepareOptions o = options_for({write_file("corpus/a.jsonl", a), write_zst("corpus/b.jsonl.zst", b)}, out_name);
  o.tokens_per_shard = 500;
  return o;
}
}  // namespace

TEST(Prepare, OutputIsIdenticalForAnyThreadCount) {
  PrepareOptions one = corpus_options("det_1");
  one.threads = 1;
  one.records_per_unit = 64;
  PrepareOptions many = corpus_options("det_4");
  many.threads = 4;
  many.records_per_unit = 1;
  const auto r1 = prepare_shards(one, kEncoder);
  const auto r4 = prepare_shards(many, kEncoder);
  ASSERT_GT(r1.manifest.shards.size(), 5u);
  EXPECT_EQ(dir_bytes(one.output), dir_bytes(many.output));
  // Input order is recipe order: a.jsonl (odd docs) before b.jsonl.zst (even docs).
  EXPECT_EQ(r1.manifest.stats.at("inputs")[0].at("documents"), 200);
}

TEST(Prepare, ResumesAfterInterruptionWithIdenticalOutput) {
  PrepareOptions whole = corpus_options("resume_whole");
  prepare_shards(whole, kEncoder);

  PrepareOptions o = corpus_options("resume_parts");
  o.interrupt_after_shards = 3;
  EXPECT_NE(error_of([&] { prepare_shards(o, kEncoder); }).find("interrupted after 3 shards"), std::string::npos);
  EXPECT_FALSE(fs::exists(o.output));
  EXPECT_TRUE(fs::exists(o.output + ".partial/prepare_state.json"));
  o.interrupt_after_shards = 6;  // interrupted twice
  EXPECT_NE(error_of([&] { prepare_shards(o, kEncoder); }).find("interrupted after 6 shards"), std::string::npos);
  o.interrupt_after_shards = -1;
  const auto r = prepare_shards(o, kEncoder);
  EXPECT_GT(r.resumed_records, 0);
  EXPECT_FALSE(fs::exists(o.output + ".partial"));
  // Same shards and statistics; the manifest differs only in the recorded output path.
  nlohmann::json a = nlohmann::json::parse(xd::fs::read_text(fs::path(whole.output) / kManifestName));
  nlohmann::json b = nlohmann::json::parse(xd::fs::read_text(fs::path(o.output) / kManifestName));
  EXPECT_EQ(a.at("shards"), b.at("shards"));
  EXPECT_EQ(a.at("stats"), b.at("stats"));

  // A different recipe does not resume someone else's staging directory.
  PrepareOptions changed = corpus_options("resume_changed");
  changed.interrupt_after_shards = 2;
  EXPECT_NE(error_of([&] { prepare_shards(changed, kEncoder); }).find("interrupted"), std::string::npos);
  changed.interrupt_after_shards = -1;
  changed.tokens_per_shard = 600;
  EXPECT_NE(error_of([&] { prepare_shards(changed, kEncoder); }).find("different recipe"), std::string::npos);
  changed.resume = false;
  EXPECT_EQ(prepare_shards(changed, kEncoder).resumed_records, 0);
}

TEST(Prepare, RefusesToReplaceADirectoryThatIsNotAShardSet) {
  const auto in = write_file("one.jsonl", "{\"text\": \"x\"}\n");
  PrepareOptions o = options_for({in}, "not_a_set");
  fs::create_directories(o.output);
  std::ofstream(fs::path(o.output) / "precious.txt") << "keep";
  EXPECT_NE(error_of([&] { prepare_shards(o, kEncoder); }).find("refusing"), std::string::npos);
  EXPECT_TRUE(fs::exists(fs::path(o.output) / "precious.txt"));
}

TEST(Prepare, RecipeOptionsResolve) {
  const auto recipe = write_file("recipe.yaml",
                                 "tokenizer: /tok\noutput: /out\ninputs:\n  - {path: a.jsonl, format: chat}\n"
                                 "  - {path: b.txt, text_split: paragraph}\nerrors: {malformed_json: skip}\n");
  const auto cfg = xd::config::Config::load(recipe_schema(), {recipe}, {"errors.invalid_utf8=fail"});
  const PrepareOptions o = prepare_options(cfg);
  ASSERT_EQ(o.inputs.size(), 2u);
  EXPECT_EQ(o.inputs[0].format, InputFormat::Chat);
  EXPECT_EQ(o.inputs[1].text_split, TextSplit::Paragraph);
  EXPECT_EQ(o.inputs[1].text_field, "text");
  EXPECT_EQ(o.malformed_json, MalformedPolicy::Skip);
  EXPECT_EQ(o.invalid_utf8, Utf8Policy::Fail);
  EXPECT_TRUE(o.append_eos);
  EXPECT_EQ(o.tokens_per_shard, 67108864);
  EXPECT_THROW(xd::config::Config::load(recipe_schema(), {recipe}, {"errors.invalid_utf8=ignore"}), xd::UsageError);
}

TEST(LineReader, LongLinesAndNoFinalNewline) {
  const std::string long_line(3 << 20, 'x');
  const auto in = write_file("long.txt", "\xEF\xBB\xBF" "a\r\n" + long_line + "\nlast");
  LineReader r(in);
  std::string line;
  ASSERT_TRUE(r.next(line));
  EXPECT_EQ(line, "a");
  ASSERT_TRUE(r.next(line));
  EXPECT_EQ(line, long_line);
  ASSERT_TRUE(r.next(line));
  EXPECT_EQ(line, "last");
  EXPECT_EQ(r.line_number(), 3);
  EXPECT_FALSE(r.next(line));
}

TEST(Recipes, ExamplesInConfigsAreValid) {
  const std::string dir = std::string(XD_SOURCE_DIR) + "/configs/data/";
  const auto cfg = xd::config::Config::load(recipe_schema(), {dir + "example.yaml"});
  const PrepareOptions o = prepare_options(cfg);
  EXPECT_EQ(o.inputs.size(), 3u);
  EXPECT_EQ(o.inputs[1].format, InputFormat::Chat);

  xd::config::Config train(xd::train::recipe_schema());
  train.merge_file(dir + "mixture_example.yaml");
  const auto sources = mixture_from_records(train.records("data.mixture"));
  ASSERT_EQ(sources.size(), 3u);
  EXPECT_EQ(sources[0].name, "math-web");
  EXPECT_DOUBLE_EQ(sources[1].weight, 0.3);
}
