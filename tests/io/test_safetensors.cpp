// Safetensors reader/writer: round trips, sharding, and one test per validation
// failure (each must be an xd::Error naming the file and the problem, never a crash).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "xdistill/io/safetensors.h"
#include "xdistill/util/error.h"

namespace stdfs = std::filesystem;
using namespace xd::io;

namespace {

stdfs::path fresh_dir(const std::string& name) {
  const stdfs::path d = stdfs::temp_directory_path() / ("xd_st_" + name + "_" + std::to_string(getpid()));
  stdfs::remove_all(d);
  stdfs::create_directories(d);
  return d;
}

// A raw file: 8-byte length, header text, data bytes.
void write_raw(const stdfs::path& p, const std::string& header, const std::string& data) {
  std::ofstream out(p, std::ios::binary);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(n >> (8 * i)));
  out << header << data;
}

std::string error_of(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const xd::Error& e) {
    return e.what();
  }
  return "";
}

std::string ckpt_error_of(const std::string& dir) {
  try {
    Checkpoint::open(dir);
  } catch (const xd::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(Safetensors, DtypeTable) {
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::I64), 8u);
  EXPECT_STREQ(dtype_name(DType::BF16), "BF16");
  EXPECT_EQ(parse_dtype("F16"), DType::F16);
  EXPECT_THROW(parse_dtype("F8_E4M3"), xd::Error);
}

TEST(Safetensors, RoundTripSingleFile) {
  const auto dir = fresh_dir("single");
  const std::vector<float> a = {1.5f, -2.f, 3.25f, 0.f, 7.f, 8.f};
  const std::vector<uint16_t> b = {0x3f80, 0xc000, 0x4040};  // bf16 1, -2, 3: odd count before f32
  const std::vector<int64_t> c = {-1, 1ll << 40};
  {
    CheckpointWriter w(dir.string(), 1 << 20, {{"format", "pt"}});
    w.add("b.bf16", DType::BF16, {3}, b.data(), 6);
    w.add("a.f32", DType::F32, {2, 3}, a.data(), 24);
    w.add("c.i64", DType::I64, {2}, c.data(), 16);
    w.add("empty", DType::F32, {0, 4}, nullptr, 0);
    w.finish();
    EXPECT_EQ(w.shard_files(), std::vector<std::string>{"model.safetensors"});
  }
  EXPECT_FALSE(stdfs::exists(dir / "model.safetensors.index.json"));
  const Checkpoint ck = Checkpoint::open(dir.string());
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"a.f32", "b.bf16", "c.i64", "empty"}));
  EXPECT_EQ(ck.info("a.f32").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ck.info("b.bf16").dtype, DType::BF16);
  EXPECT_EQ(std::memcmp(ck.data("a.f32"), a.data(), 24), 0);
  EXPECT_EQ(std::memcmp(ck.data("b.bf16"), b.data(), 6), 0);
  EXPECT_EQ(std::memcmp(ck.data("c.i64"), c.data(), 16), 0);
  for (const auto& n : ck.names())  // every tensor aligned to its element size
    EXPECT_EQ(reinterpret_cast<uintptr_t>(ck.data(n)) % dtype_size(ck.info(n).dtype), 0u) << n;
  EXPECT_EQ(ck.metadata().at("format"), "pt");
  EXPECT_EQ(ck.total_bytes(), 46u);
  EXPECT_NO_THROW(ck.release("a.f32"));
  EXPECT_EQ(std::memcmp(ck.data("a.f32"), a.data(), 24), 0);  // refaults after release
  EXPECT_THROW(ck.info("nope"), xd::Error);
  // No temporary files are left behind.
  for (const auto& e : stdfs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename(), "model.safetensors");
}

TEST(Safetensors, ShardedWithIndexAndStaleFilesRemoved) {
  const auto dir = fresh_dir("sharded");
  std::vector<float> v(16);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  {
    CheckpointWriter w(dir.string(), 100, {{"k", "v"}});
    for (int i = 0; i < 5; ++i) w.add("t" + std::to_string(i), DType::F32, {4, 4}, v.data(), 64);
    w.finish();
    EXPECT_EQ(w.shard_files().size(), 5u);
  }
  EXPECT_TRUE(stdfs::exists(dir / "model.safetensors.index.json"));
  EXPECT_TRUE(stdfs::exists(dir / "model-00003-of-00005.safetensors"));
  Checkpoint ck = Checkpoint::open(dir.string());
  EXPECT_EQ(ck.names().size(), 5u);
  EXPECT_EQ(ck.files().size(), 5u);
  EXPECT_EQ(std::memcmp(ck.data("t4"), v.data(), 64), 0);
  EXPECT_EQ(ck.metadata().at("k"), "v");
  // Rewriting as one shard removes the old index and shards.
  {
    CheckpointWriter w(dir.string());
    w.add("only", DType::F32, {16}, v.data(), 64);
    w.finish();
  }
  EXPECT_FALSE(stdfs::exists(dir / "model.safetensors.index.json"));
  EXPECT_FALSE(stdfs::exists(dir / "model-00001-of-00005.safetensors"));
  EXPECT_EQ(Checkpoint::open(dir.string()).names(), std::vector<std::string>{"only"});
}

TEST(Safetensors, PlannedWriterWritesInPlaceInAnyOrder) {
  const auto dir = fresh_dir("planned");
  std::vector<float> v(16);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) - 3.f;
  const std::vector<uint16_t> h = {1, 2, 3};
  {
    CheckpointWriter w(dir.string(), 70, {{"k", "v"}});
    w.plan({{"a", DType::F32, {16}}, {"odd", DType::BF16, {3}}, {"b", DType::F32, {4, 4}}, {"c", DType::F32, {2, 8}}});
    w.add("c", DType::F32, {2, 8}, v.data(), 64);
    w.add("odd", DType::BF16, {3}, h.data(), 6);
    w.add("a", DType::F32, {16}, v.data(), 64);
    EXPECT_THROW(w.add("zzz", DType::F32, {1}, v.data(), 4), xd::Error);  // not planned
    EXPECT_THROW(w.add("b", DType::F32, {16}, v.data(), 64), xd::Error);  // planned as [4, 4]
    EXPECT_THROW(w.finish(), xd::Error);                                  // 'b' still missing
  }
  EXPECT_TRUE(stdfs::is_empty(dir));  // an unfinished writer leaves nothing
  {
    CheckpointWriter w(dir.string(), 70, {{"k", "v"}});
    w.plan({{"a", DType::F32, {16}}, {"odd", DType::BF16, {3}}, {"b", DType::F32, {4, 4}}});
    w.add("b", DType::F32, {4, 4}, v.data(), 64);
    w.add("a", DType::F32, {16}, v.data(), 64);
    w.add("odd", DType::BF16, {3}, h.data(), 6);
    w.finish();
    EXPECT_EQ(w.shard_files().size(), 2u);  // [a, odd] (70 bytes), [b]
  }
  const Checkpoint ck = Checkpoint::open(dir.string());
  EXPECT_EQ(ck.names(), (std::vector<std::string>{"a", "b", "odd"}));
  EXPECT_EQ(ck.info("a").file, ck.info("odd").file);
  EXPECT_EQ(std::memcmp(ck.data("a"), v.data(), 64), 0);
  EXPECT_EQ(std::memcmp(ck.data("b"), v.data(), 64), 0);
  EXPECT_EQ(std::memcmp(ck.data("odd"), h.data(), 6), 0);
  EXPECT_EQ(ck.metadata().at("k"), "v");
}

TEST(Safetensors, WriterRejectsBadInputAndCleansUp) {
  const auto dir = fresh_dir("writer_bad");
  float x[4] = {};
  {
    CheckpointWriter w(dir.string());
    w.add("x", DType::F32, {4}, x, 16);
    EXPECT_THROW(w.add("x", DType::F32, {4}, x, 16), xd::Error);   // twice
    EXPECT_THROW(w.add("y", DType::F32, {5}, x, 16), xd::Error);   // byte count
    EXPECT_THROW(w.add("z", DType::F32, {-1}, x, 16), xd::Error);  // negative dim
  }  // destroyed without finish()
  EXPECT_TRUE(stdfs::is_empty(dir));
}

TEST(Safetensors, TruncatedFile) {
  const auto dir = fresh_dir("trunc");
  float x[8] = {};
  {
    CheckpointWriter w(dir.string());
    w.add("weight", DType::F32, {8}, x, 32);
    w.finish();
  }
  const auto p = dir / "model.safetensors";
  stdfs::resize_file(p, stdfs::file_size(p) - 4);
  const std::string e = error_of(p.string());
  EXPECT_TRUE(contains(e, p.string())) << e;
  EXPECT_TRUE(contains(e, "'weight'")) << e;
  EXPECT_TRUE(contains(e, "beyond")) << e;
  stdfs::resize_file(p, 5);
  EXPECT_TRUE(contains(error_of(p.string()), "too small")) << error_of(p.string());
  stdfs::resize_file(p, 0);
  EXPECT_TRUE(contains(error_of(p.string()), "too small"));
}

TEST(Safetensors, HeaderLongerThanFile) {
  const auto dir = fresh_dir("hdr");
  const auto p = dir / "x.safetensors";
  {
    std::ofstream out(p, std::ios::binary);
    const uint64_t n = 1000;
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>(n >> (8 * i)));
    out << "{}";
  }
  const std::string e = error_of(p.string());
  EXPECT_TRUE(contains(e, "header length 1000 exceeds")) << e;
  // An absurd length (e.g. reading a non-safetensors file) is bounded too.
  {
    std::ofstream out(p, std::ios::binary);
    out << "\xff\xff\xff\xff\xff\xff\xff\xff{}";
  }
  EXPECT_TRUE(contains(error_of(p.string()), "exceeds")) << error_of(p.string());
}

TEST(Safetensors, InvalidJsonAndBadEntries) {
  const auto dir = fresh_dir("json");
  const auto p = (dir / "x.safetensors").string();
  write_raw(p, "{\"a\": {\"dtype\": \"F32\", ", "");
  EXPECT_TRUE(contains(error_of(p), "not valid JSON")) << error_of(p);
  write_raw(p, "[1, 2]", "");
  EXPECT_TRUE(contains(error_of(p), "not a JSON object"));
  write_raw(p, R"({"a": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}})", "x");
  EXPECT_TRUE(contains(error_of(p), "tensor 'a': unknown dtype 'Q4'")) << error_of(p);
  write_raw(p, R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", "xxxx");
  EXPECT_TRUE(contains(error_of(p), "tensor 'a'")) << error_of(p);
  write_raw(p, R"({"a": {"dtype": "F32", "shape": [1]}})", "xxxx");
  EXPECT_TRUE(contains(error_of(p), "data_offsets")) << error_of(p);
  write_raw(p, R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}})", "xxxx");
  EXPECT_TRUE(contains(error_of(p), "end before")) << error_of(p);
  write_raw(p, R"({"__metadata__": {"n": 3}})", "");
  EXPECT_TRUE(contains(error_of(p), "__metadata__")) << error_of(p);
  write_raw(p, R"({"a": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 4]}})", "xxxx");
  EXPECT_TRUE(contains(error_of(p), "tensor 'a'")) << error_of(p);
}

TEST(Safetensors, OverlappingOffsets) {
  const auto dir = fresh_dir("overlap");
  const auto p = (dir / "x.safetensors").string();
  write_raw(p,
            R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
            R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
            std::string(12, '\0'));
  const std::string e = error_of(p);
  EXPECT_TRUE(contains(e, "'b'") && contains(e, "overlaps tensor 'a'")) << e;
}

TEST(Safetensors, ShapeDoesNotMatchByteCount) {
  const auto dir = fresh_dir("shape");
  const auto p = (dir / "x.safetensors").string();
  write_raw(p, R"({"w": {"dtype": "BF16", "shape": [3, 2], "data_offsets": [0, 8]}})", std::string(8, '\0'));
  const std::string e = error_of(p);
  EXPECT_TRUE(contains(e, p) && contains(e, "tensor 'w'") && contains(e, "needs 12 bytes") &&
              contains(e, "span 8"))
      << e;
}

TEST(Safetensors, MissingAndUnexpectedTensors) {
  const auto dir = fresh_dir("check");
  float x[6] = {};
  {
    CheckpointWriter w(dir.string());
    w.add("a", DType::F32, {2, 3}, x, 24);
    w.add("extra", DType::F32, {1}, x, 4);
    w.add("b", DType::F32, {6}, x, 24);
    w.finish();
  }
  const Checkpoint ck = Checkpoint::open(dir.string());
  EXPECT_NO_THROW(ck.check_tensors({{"a", {2, 3}}, {"b", {6}}}, /*allow_unexpected=*/true));
  try {
    ck.check_tensors({{"a", {2, 3}}, {"b", {3, 2}}, {"c", {1}}});
    FAIL() << "expected an error";
  } catch (const xd::Error& e) {
    const std::string m = e.what();
    EXPECT_TRUE(contains(m, "1 missing ('c')")) << m;
    EXPECT_TRUE(contains(m, "1 unexpected ('extra')")) << m;
    EXPECT_TRUE(contains(m, "'b' has shape [6], expected [3, 2]")) << m;
  }
}

TEST(Safetensors, IndexMustAgreeWithShards) {
  const auto dir = fresh_dir("index");
  float x[4] = {};
  {
    CheckpointWriter w(dir.string(), 16);
    w.add("a", DType::F32, {4}, x, 16);
    w.add("b", DType::F32, {4}, x, 16);
    w.finish();
  }
  const auto index = dir / "model.safetensors.index.json";
  const std::string good = xd::detail_concat(std::ifstream(index).rdbuf());
  auto with_index = [&](const std::string& text) {
    std::ofstream(index) << text;
    return ckpt_error_of(dir.string());
  };
  EXPECT_EQ(with_index(good), "");
  std::string e = with_index(R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "gone.safetensors"}})");
  EXPECT_TRUE(contains(e, "'b' maps to shard 'gone.safetensors', which does not exist")) << e;
  e = with_index(R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors"}})");
  EXPECT_TRUE(contains(e, "'b'") && contains(e, "does not hold it")) << e;
  e = with_index(R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}})");
  EXPECT_TRUE(contains(e, "'c'")) << e;
  // A shard holding a tensor the weight_map leaves out: each tensor must be listed.
  {
    CheckpointWriter w((dir / "one").string());
    w.add("a", DType::F32, {4}, x, 16);
    w.add("b", DType::F32, {4}, x, 16);
    w.finish();
  }
  stdfs::rename(dir / "one" / "model.safetensors", dir / "both.safetensors");
  e = with_index(R"({"weight_map": {"a": "both.safetensors"}})");
  EXPECT_TRUE(contains(e, "holds tensor 'b'") && contains(e, "does not list")) << e;
  e = with_index("{\"weight_map\": 3}");
  EXPECT_TRUE(contains(e, "weight_map")) << e;
  e = with_index("not json");
  EXPECT_TRUE(contains(e, "not valid JSON")) << e;
  EXPECT_TRUE(contains(ckpt_error_of((dir / "nowhere").string()), "does not exist"));
}

TEST(Safetensors, CorruptedHeadersNeverCrash) {
  const auto dir = fresh_dir("fuzz");
  std::vector<float> v(8, 1.f);
  {
    CheckpointWriter w(dir.string(), 1 << 20, {{"format", "pt"}});
    w.add("layer.0.weight", DType::F32, {2, 4}, v.data(), 32);
    w.add("layer.0.bias", DType::BF16, {4}, v.data(), 8);
    w.finish();
  }
  const auto p = dir / "model.safetensors";
  std::string original;
  {
    std::ifstream in(p, std::ios::binary);
    original.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::mt19937 rng(7);
  const auto fuzzed = dir / "fuzzed.safetensors";
  int failures = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::string bytes = original;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int i = 0; i < flips; ++i) {
      const size_t at = rng() % std::min<size_t>(bytes.size(), 200);
      bytes[at] = static_cast<char>(rng() % 256);
    }
    if (rng() % 4 == 0) bytes.resize(rng() % bytes.size());
    std::ofstream(fuzzed, std::ios::binary) << bytes;
    try {
      auto f = SafetensorsFile::open(fuzzed.string());
      for (const auto& [name, info] : f->tensors()) {  // whatever parsed must be readable
        volatile uint8_t sum = 0;
        for (uint64_t i = 0; i < info.nbytes(); ++i) sum = sum + f->data(info)[i];
      }
    } catch (const xd::Error&) {
      ++failures;
    }
  }
  EXPECT_GT(failures, 100);
}
