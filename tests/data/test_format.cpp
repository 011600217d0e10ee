// Shard format, checksums and UTF-8 repair.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "xdistill/data/checksum.h"
#include "xdistill/data/manifest.h"
#include "xdistill/data/shard_set.h"
#include "xdistill/data/shard_writer.h"
#include "xdistill/data/utf8.h"
#include "xdistill/util/error.h"

namespace fs = std::filesystem;
using namespace xd::data;

namespace {
// Removes this process's scratch directory when the test binary exits.
struct ScratchCleanup {
  ~ScratchCleanup() {
    std::error_code ec;
    fs::remove_all(fs::temp_directory_path() / ("xd_data_format_" + std::to_string(::getpid())), ec);
  }
} scratch_cleanup;

fs::path fresh_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("xd_data_format_" + std::to_string(::getpid())) / name;
  fs::remove_all(p);
  fs::create_directories(p.parent_path());
  return p;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const xd::Error& e) {
    return e.what();
  }
  return "<no error>";
}

ShardWriterOptions small_options(int64_t per_shard = 10) {
  ShardWriterOptions o;
  o.tokenizer = {"fp-test", 1000, 999, "test"};
  o.tokens_per_shard = per_shard;
  o.append_eos = true;
  return o;
}
}  // namespace

// FIPS 180-2 test vectors.
TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  EXPECT_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 streamed;  // one million 'a', fed in uneven pieces
  const std::string chunk(999, 'a');
  for (int i = 0; i < 1001; ++i) streamed.update(chunk.data(), 999);
  streamed.update(chunk.data(), 1000000 - 999 * 1001);
  EXPECT_EQ(streamed.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Utf8, CountsAndReplacesMaximalSubparts) {
  EXPECT_EQ(count_invalid_utf8("plain ascii"), 0u);
  EXPECT_EQ(count_invalid_utf8("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80"), 0u);  // é € 😀
  size_t first = 99;
  EXPECT_EQ(count_invalid_utf8("ab\xFFx", &first), 1u);
  EXPECT_EQ(first, 2u);
  // Unicode 15 §3.9 Table 3-8 example: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 -> a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd
  const std::string table_3_8 = "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64";
  EXPECT_EQ(count_invalid_utf8(table_3_8), 6u);
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(replace_invalid_utf8(table_3_8), "a" + r + r + r + "b" + r + "c" + r + r + "d");
  // Surrogates (ED A0 80) and overlongs (C0 AF, E0 80 AF) are invalid byte by byte.
  EXPECT_EQ(replace_invalid_utf8("\xED\xA0\x80"), r + r + r);
  EXPECT_EQ(replace_invalid_utf8("\xC0\xAF"), r + r);
  EXPECT_EQ(replace_invalid_utf8("\xE0\x80\xAF"), r + r + r);
  EXPECT_EQ(replace_invalid_utf8("x\xE2\x82"), "x" + r);  // truncated at the end: one subpart
}

TEST(ShardWriter, RoundTripAcrossShards) {
  const fs::path dir = fresh_dir("roundtrip");
  ShardWriter w(dir.string(), small_options(10));
  w.add_document({5, 6, 7});                      // 4 tokens with EOS
  w.add_document({8, 9, 10, 11, 12, 13, 14}, {0, 0, 1, 1, 1, 1, 1});  // 8 -> shard 0 closes at 12
  w.add_document({15});                           // shard 1
  const Manifest m = w.finish();
  EXPECT_FALSE(fs::exists(dir.string() + ".partial"));
  ASSERT_EQ(m.shards.size(), 2u);
  EXPECT_EQ(m.tokens, 14);
  EXPECT_EQ(m.documents, 3);
  EXPECT_EQ(m.loss_tokens, 4 + 6 + 2);

  const ShardSet set = ShardSet::open(dir.string(), /*verify_checksums=*/true);
  std::vector<uint32_t> tokens(14);
  std::vector<uint8_t> mask(14);
  set.read(0, 14, tokens.data(), mask.data());
  EXPECT_EQ(tokens, (std::vector<uint32_t>{5, 6, 7, 999, 8, 9, 10, 11, 12, 13, 14, 999, 15, 999}));
  EXPECT_EQ(mask, (std::vector<uint8_t>{1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(set.document_starts(0), (std::vector<uint64_t>{0, 4, 12}));
  EXPECT_EQ(set.document_starts(1), (std::vector<uint64_t>{0, 2}));
  // A read across the shard boundary.
  set.read(10, 3, tokens.data(), mask.data());
  EXPECT_EQ(tokens[0], 14u);
  EXPECT_EQ(tokens[1], 999u);
  EXPECT_EQ(tokens[2], 15u);
  EXPECT_TRUE(verify_shard_set(dir.string()).empty());
  // The manifest's checksum is the file's SHA-256.
  EXPECT_EQ(m.shards[0].tokens_file.sha256, sha256_file((dir / m.shards[0].tokens_file.file).string()));
}

TEST(ShardWriter, RejectsBadDocuments) {
  const fs::path dir = fresh_dir("bad_docs");
  ShardWriter w(dir.string(), small_options());
  EXPECT_NE(error_of([&] { w.add_document({}); }).find("is empty"), std::string::npos);
  EXPECT_NE(error_of([&] { w.add_document({1, 1000}); }).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(error_of([&] { w.add_document({1, -1}); }).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(error_of([&] { w.add_document({1, 2}, {1}); }).find("loss mask"), std::string::npos);
  w.add_document({3});
  EXPECT_EQ(w.finish().tokens, 2);  // the rejected documents left nothing behind
}

TEST(ShardSet, DetectsDamage) {
  const fs::path dir = fresh_dir("damage");
  ShardWriter w(dir.string(), small_options(1000));
  w.add_document({1, 2, 3, 4, 5});
  const Manifest m = w.finish();
  const fs::path tokens = dir / m.shards[0].tokens_file.file;
  {  // flip one byte: sizes still match, the checksum does not
    std::fstream f(tokens, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4);
    f.put(char(77));
  }
  EXPECT_NO_THROW(ShardSet::open(dir.string()));
  EXPECT_NE(error_of([&] { ShardSet::open(dir.string(), true); }).find("SHA-256"), std::string::npos);
  EXPECT_EQ(verify_shard_set(dir.string()).size(), 1u);
  fs::resize_file(tokens, 8);  // truncated
  EXPECT_NE(error_of([&] { ShardSet::open(dir.string()); }).find("truncated"), std::string::npos);
  EXPECT_NE(error_of([&] { ShardSet::open((dir / "nothing").string()); }).find("no manifest.json"),
            std::string::npos);
}

TEST(Manifest, RefusesNewerVersionAndInconsistentTotals) {
  Manifest m;
  m.tokenizer.fingerprint = "x";
  nlohmann::json j = manifest_to_json(m);
  j["version"] = kManifestVersion + 1;
  EXPECT_NE(error_of([&] { manifest_from_json(j, "m.json"); }).find("newer"), std::string::npos);
  j = manifest_to_json(m);
  j["tokens"] = 5;
  EXPECT_NE(error_of([&] { manifest_from_json(j, "m.json"); }).find("totals"), std::string::npos);
}

TEST(ShardSet, FingerprintMismatchIsAClearError) {
  const fs::path dir = fresh_dir("fingerprint");
  ShardWriter w(dir.string(), small_options());
  w.add_document({1, 2, 3});
  w.finish();
  const ShardSet set = ShardSet::open(dir.string());
  EXPECT_NO_THROW(set.check_fingerprint("fp-test"));
  EXPECT_NO_THROW(set.check_fingerprint(""));
  const std::string e = error_of([&] { set.check_fingerprint("fp-other"); });
  EXPECT_NE(e.find("different tokenizer"), std::string::npos) << e;
  EXPECT_NE(e.find("fp-test"), std::string::npos) << e;
  EXPECT_NE(e.find("fp-other"), std::string::npos) << e;
}
