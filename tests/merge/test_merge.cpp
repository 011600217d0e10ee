// run_merge end to end on tiny checkpoints with hand-computed results, for every
// method; every incompatibility's error; atomic output; the manifest; recipes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "merge_test_util.h"
#include "xdistill/merge/merge.h"
#include "xdistill/merge/recipe.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

using namespace xd::merge;
using namespace xd::merge::testing;
using xd::io::Checkpoint;
using xd::io::DType;

namespace {

struct Fixture {
  stdfs::path root;
  std::vector<std::string> experts;
  std::string base;
};

// base θ0 and two experts, one 4-element tensor "w" (plus "b", 2 elements).
Fixture two_experts(const std::string& name, DType dtype = DType::F32) {
  Fixture f{fresh_dir(name), {}, {}};
  f.base = (f.root / "base").string();
  write_checkpoint(f.base, {{"w", {1, 1, 1, 1}, {2, 2}, dtype}, {"b", {0, 0}, {}, dtype}});
  f.experts = {(f.root / "e1").string(), (f.root / "e2").string()};
  write_checkpoint(f.experts[0], {{"w", {4, 0, 1.5, 3}, {2, 2}, dtype}, {"b", {1, 2}, {}, dtype}});   // τ1 = [3, -1, .5, 2]
  write_checkpoint(f.experts[1], {{"w", {-1, -3, 2, 1.25}, {2, 2}, dtype}, {"b", {3, -2}, {}, dtype}});  // τ2 = [-2, -4, 1, .25]
  return f;
}

MergeSpec spec_for(const Fixture& f, Method method, std::vector<double> weights = {}) {
  MergeSpec s;
  for (size_t i = 0; i < f.experts.size(); ++i) {
    ExpertSpec e{f.experts[i], {}, {}};
    if (!weights.empty()) e.weight = weights[i];
    s.experts.push_back(e);
  }
  s.base = f.base;
  s.method = method;
  s.out = (f.root / "out").string();
  return s;
}

std::vector<float> merged(const MergeSpec& s, const std::string& tensor = "w") {
  run_merge(s);
  return read_f32(Checkpoint::open(s.out), tensor);
}

std::string error_of(const MergeSpec& s) {
  try {
    run_merge(s);
  } catch (const xd::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(Merge, LinearWithWeightsThatNeedNormalising) {
  const Fixture f = two_experts("linear");
  MergeSpec s = spec_for(f, Method::Linear, {3, 1});  // -> .75, .25
  s.base.clear();
  EXPECT_EQ(merged(s), (std::vector<float>{2.75f, -0.75f, 1.625f, 2.5625f}));
  EXPECT_EQ(read_f32(Checkpoint::open(s.out), "b"), (std::vector<float>{1.5f, 1.0f}));
  EXPECT_EQ(Checkpoint::open(s.out).info("w").shape, (std::vector<int64_t>{2, 2}));
}

TEST(Merge, LinearUniformByDefaultInBf16) {
  const Fixture f = two_experts("linear_bf16", DType::BF16);
  MergeSpec s = spec_for(f, Method::Linear);
  EXPECT_EQ(merged(s), (std::vector<float>{1.5f, -1.5f, 1.75f, 2.125f}));
  EXPECT_EQ(Checkpoint::open(s.out).info("w").dtype, DType::BF16);  // auto keeps the stored dtype
  // Forced f32 output of bf16 inputs.
  s.dtype = "f32";
  s.overwrite = true;
  EXPECT_EQ(merged(s), (std::vector<float>{1.5f, -1.5f, 1.75f, 2.125f}));
  EXPECT_EQ(Checkpoint::open(s.out).info("w").dtype, DType::F32);
  const auto config = nlohmann::json::parse(xd::fs::read_text(stdfs::path(s.out) / "config.json"));
  EXPECT_EQ(config["torch_dtype"], "float32");
}

TEST(Merge, Bf16OutputRoundsOnceFromF32Accumulation) {
  // 1/3 + 2/3 of bf16 values whose f32 mean is not a bf16: exactly one rounding, to nearest even.
  const stdfs::path root = fresh_dir("bf16_round");
  write_checkpoint(root / "a", {{"w", {1.0f, 1.0f}, {}, DType::BF16}});
  write_checkpoint(root / "b", {{"w", {1.0078125f, 1.015625f}, {}, DType::BF16}});  // 1 + 2^-7, 1 + 2^-6
  MergeSpec s;
  s.experts = {{(root / "a").string(), 0.5, {}}, {(root / "b").string(), 0.5, {}}};
  s.out = (root / "out").string();
  // means: 1 + 2^-8 (a tie: to even 1.0), 1 + 2^-7 (exact)
  EXPECT_EQ(merged(s), (std::vector<float>{1.0f, 1.0078125f}));
}

TEST(Merge, TaskArithmetic) {
  const Fixture f = two_experts("task");
  // θ0 + .25 τ1 + .75 τ2 = 1 + [.75 - 1.5, -.25 - 3, .125 + .75, .5 + .1875]
  EXPECT_EQ(merged(spec_for(f, Method::TaskArithmetic, {0.25, 0.75})),
            (std::vector<float>{0.25f, -2.25f, 1.875f, 1.6875f}));
}

TEST(Merge, TiesTrimElectDisjointMean) {
  const Fixture f = two_experts("ties");
  MergeSpec s = spec_for(f, Method::Ties, {0.25, 0.75});
  s.density = 0.5;  // k = 2 of 4: τ̂1 = [3, 0, 0, 2], τ̂2 = [-2, -4, 0, 0]
  // elect: [.75 - 1.5 < 0, -3 < 0, 0, .5 > 0] -> means [-2, -4, 0, 2]
  EXPECT_EQ(merged(s), (std::vector<float>{-1.f, -3.f, 1.f, 3.f}));
  // density 1: nothing trimmed; j=1 and j=2 have both experts agreeing:
  // j=1: .25 * -1 + .75 * -4 = -3.25; j=2: .25 * .5 + .75 * 1 = .875
  s.density = 1.0;
  s.overwrite = true;
  EXPECT_EQ(merged(s), (std::vector<float>{-1.f, -2.25f, 1.875f, 1.f + (0.25f * 2 + 0.75f * 0.25f)}));
  // Weights not normalised: their sum (2) scales the disjoint mean.
  s.normalize = false;
  s.experts[0].weight = 0.5;
  s.experts[1].weight = 1.5;
  EXPECT_EQ(merged(s), (std::vector<float>{-3.f, -5.5f, 2.75f, 1.f + 2 * (0.5f * 2 + 1.5f * 0.25f) / 2}));
}

TEST(Merge, DareWithDensityOneIsTaskArithmeticAndOtherwiseFollowsItsMask) {
  const Fixture f = two_experts("dare");
  MergeSpec s = spec_for(f, Method::Dare, {0.25, 0.75});
  s.density = 1.0;
  EXPECT_EQ(merged(s), (std::vector<float>{0.25f, -2.25f, 1.875f, 1.6875f}));
  s.density = 0.5;
  s.seed = 7;
  s.overwrite = true;
  const std::vector<float> got = merged(s);
  const std::vector<float> tau[2] = {{3, -1, .5f, 2}, {-2, -4, 1, .25f}};
  for (int64_t j = 0; j < 4; ++j) {
    float expect = 0;
    for (size_t i = 0; i < 2; ++i)
      if (dare_keep(dare_stream_key(7, "w", i), j, dare_keep_below(0.5f)))
        expect += (i == 0 ? 0.25f : 0.75f) / 0.5f * tau[i][j];
    EXPECT_FLOAT_EQ(got[j], 1.f + expect) << j;
  }
}

TEST(Merge, StreamsTensorsLargerThanAChunk) {
  const stdfs::path root = fresh_dir("chunks");
  const int64_t n = (1 << 19) * 2 + 123;
  std::vector<float> a(n), b(n), c(n);
  for (int64_t j = 0; j < n; ++j) {
    a[j] = static_cast<float>(j % 1000) * 0.5f;
    b[j] = static_cast<float>(j % 77) - 30.f;
    c[j] = static_cast<float>(j % 13);
  }
  write_checkpoint(root / "a", {{"big", a, {}, DType::F32}});
  write_checkpoint(root / "b", {{"big", b, {}, DType::F32}});
  write_checkpoint(root / "c", {{"big", c, {}, DType::F32}});
  MergeSpec s;
  s.experts = {{(root / "a").string(), 0.5, {}}, {(root / "b").string(), 0.25, {}}, {(root / "c").string(), 0.25, {}}};
  s.out = (root / "out").string();
  s.chunk_elements = 1 << 19;
  s.threads = 3;
  const std::vector<float> got = merged(s, "big");
  for (int64_t j = 0; j < n; ++j)
    ASSERT_EQ(got[j], 0.5f * a[j] + 0.25f * b[j] + 0.25f * c[j]) << j;
}

TEST(Merge, WeightAndOptionErrors) {
  const Fixture f = two_experts("opts");
  EXPECT_TRUE(contains(error_of(spec_for(f, Method::Linear, {0.5, -0.5})), "negative"));
  EXPECT_TRUE(contains(error_of(spec_for(f, Method::Linear, {0, 0})), "sum to 0"));
  MergeSpec s = spec_for(f, Method::Linear);
  s.experts[0].weight = 1.0;
  EXPECT_TRUE(contains(error_of(s), "every expert or for none"));
  s = spec_for(f, Method::TaskArithmetic);
  s.base.clear();
  EXPECT_TRUE(contains(error_of(s), "needs --base"));
  s = spec_for(f, Method::Ties);
  EXPECT_TRUE(contains(error_of(s), "needs a density"));
  s.density = 1.5;
  EXPECT_TRUE(contains(error_of(s), "outside (0, 1]"));
  s = spec_for(f, Method::Linear);
  s.out = f.experts[1];
  EXPECT_TRUE(contains(error_of(s), "is one of the experts"));
  s = spec_for(f, Method::Linear);
  stdfs::create_directories(s.out);
  EXPECT_TRUE(contains(error_of(s), "--overwrite"));
  EXPECT_THROW(run_merge(s), xd::UsageError);
}

TEST(Merge, EachIncompatibilityNamesTheTensorOrField) {
  const stdfs::path root = fresh_dir("compat");
  const std::string good_config = R"({"model_type": "llama", "hidden_size": 4, "rope": {"theta": 1e4}})";
  write_checkpoint(root / "ref", {{"w", {1, 2}, {}, DType::F32}, {"v", {1}, {}, DType::F32}}, good_config);
  auto check = [&](const std::string& variant, const std::vector<FakeTensor>& tensors,
                   const std::string& config, const std::string& tokenizer, const std::string& want) {
    const stdfs::path dir = root / variant;
    write_checkpoint(dir, tensors, config, tokenizer);
    MergeSpec s;
    s.experts = {{(root / "ref").string(), {}, {}}, {dir.string(), {}, {}}};
    s.out = (root / ("out_" + variant)).string();
    const std::string e = error_of(s);
    EXPECT_TRUE(contains(e, want)) << variant << ": " << e;
    EXPECT_FALSE(stdfs::exists(s.out)) << variant;  // nothing written
  };
  const std::vector<FakeTensor> same = {{"w", {1, 2}, {}, DType::F32}, {"v", {1}, {}, DType::F32}};
  const std::string tok = R"({"model": {"vocab": {"a": 0}}})";
  check("missing", {{"w", {1, 2}, {}, DType::F32}}, good_config, tok, "tensor 'v': missing in expert 2");
  check("extra", {same[0], same[1], {"u", {0}, {}, DType::F32}}, good_config, tok, "tensor 'u': unexpected in expert 2");
  check("shape", {{"w", {1, 2}, {1, 2}, DType::F32}, same[1]}, good_config, tok,
        "tensor 'w': expert 2 (" + (root / "shape").string() + ") has F32 [1, 2]");
  check("dtype", {{"w", {1, 2}, {}, DType::BF16}, same[1]}, good_config, tok, "has BF16 [2]");
  check("config", same, R"({"model_type": "llama", "hidden_size": 8, "rope": {"theta": 1e4}})", tok,
        "config.json field 'hidden_size': expert 2");
  check("nested", same, R"({"model_type": "llama", "hidden_size": 4, "rope": {"theta": 5e5}})", tok,
        "config.json field 'rope.theta'");
  check("noconfig", same, "", tok, "config.json: present in expert 1");
  check("tokenizer", same, good_config, R"({"model": {"vocab": {"b": 0}}})", "tokenizer.json: expert 2");
  // Bookkeeping fields may differ.
  write_checkpoint(root / "book", same,
                   R"({"model_type": "llama", "hidden_size": 4, "rope": {"theta": 1e4}, "_name_or_path": "y", "transformers_version": "9", "torch_dtype": "float32"})",
                   tok);
  MergeSpec s;
  s.experts = {{(root / "ref").string(), {}, {}}, {(root / "book").string(), {}, {}}};
  s.out = (root / "out_book").string();
  EXPECT_EQ(error_of(s), "");
}

TEST(Merge, IntegerTensorsMustBeEqual) {
  const stdfs::path root = fresh_dir("ints");
  for (int variant = 0; variant < 2; ++variant) {
    const stdfs::path dir = root / ("e" + std::to_string(variant));
    stdfs::create_directories(dir);
    xd::io::CheckpointWriter w(dir.string());
    const float x[2] = {1, 2};
    const int64_t ids[2] = {5, variant == 0 ? 6 : 7};
    w.add("w", DType::F32, {2}, x, 8);
    w.add("position_ids", DType::I64, {2}, ids, 16);
    w.finish();
  }
  MergeSpec s;
  s.experts = {{(root / "e0").string(), {}, {}}, {(root / "e0").string(), {}, {}}};
  s.out = (root / "out").string();
  EXPECT_NO_THROW(run_merge(s));
  EXPECT_EQ(std::memcmp(Checkpoint::open(s.out).data("position_ids"), Checkpoint::open(s.experts[0].dir).data("position_ids"), 16), 0);
  s.experts[1].dir = (root / "e1").string();
  s.out = (root / "out2").string();
  EXPECT_TRUE(contains(error_of(s), "tensor 'position_ids' (I64) differs")) << error_of(s);
}

TEST(Merge, OutputIsAtomicWithManifestAndCopiedFiles) {
  const Fixture f = two_experts("manifest");
  std::ofstream(stdfs::path(f.experts[0]) / "generation_config.json") << "{}";
  MergeSpec s = spec_for(f, Method::Ties, {0.5, 0.5});
  s.density = 0.5;
  s.max_shard_bytes = 8;  // forces several shards and an index
  run_merge(s);
  const stdfs::path out(s.out);
  EXPECT_TRUE(stdfs::exists(out / "model.safetensors.index.json"));
  EXPECT_TRUE(stdfs::exists(out / "tokenizer.json"));
  EXPECT_TRUE(stdfs::exists(out / "generation_config.json"));
  EXPECT_EQ(xd::fs::read_text(out / "tokenizer.json"), xd::fs::read_text(stdfs::path(f.experts[0]) / "tokenizer.json"));
  const auto m = nlohmann::json::parse(xd::fs::read_text(out / "merge_manifest.json"));
  EXPECT_EQ(m["method"], "ties");
  EXPECT_EQ(m["parameters"]["density"], 0.5);
  ASSERT_EQ(m["inputs"].size(), 3u);
  EXPECT_EQ(m["inputs"][0]["role"], "expert");
  EXPECT_EQ(m["inputs"][0]["weight"], 0.5);
  EXPECT_EQ(m["inputs"][2]["role"], "base");
  EXPECT_NE(m["inputs"][0]["tensors_hash"], m["inputs"][1]["tensors_hash"]);
  EXPECT_EQ(m["inputs"][0]["files_hash"]["tokenizer.json"], m["inputs"][1]["files_hash"]["tokenizer.json"]);
  EXPECT_EQ(Checkpoint::open(s.out).metadata().at("format"), "pt");
  // No staging directory is left next to the output.
  for (const auto& e : stdfs::directory_iterator(f.root))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
}

TEST(Merge, ContentHashIgnoresShardingButSeesValues) {
  const stdfs::path root = fresh_dir("hash");
  write_checkpoint(root / "a", {{"w", {1, 2, 3}, {}, DType::F32}, {"v", {4}, {}, DType::F32}});
  // The same tensors sharded differently, then one value changed.
  {
    xd::io::CheckpointWriter w((root / "a_sharded").string(), 4);
    const float wv[3] = {1, 2, 3}, vv[1] = {4};
    w.add("v", DType::F32, {1}, vv, 4);
    w.add("w", DType::F32, {3}, wv, 12);
    w.finish();
  }
  std::ofstream(root / "a_sharded" / "config.json") << xd::fs::read_text(root / "a" / "config.json");
  std::ofstream(root / "a_sharded" / "tokenizer.json") << xd::fs::read_text(root / "a" / "tokenizer.json");
  write_checkpoint(root / "b", {{"w", {1, 2, 3.5}, {}, DType::F32}, {"v", {4}, {}, DType::F32}});
  MergeSpec s;
  s.experts = {{(root / "a").string(), {}, {}}, {(root / "a_sharded").string(), {}, {}}, {(root / "b").string(), {}, {}}};
  s.out = (root / "out").string();
  run_merge(s);
  const auto m = nlohmann::json::parse(xd::fs::read_text(root / "out" / "merge_manifest.json"));
  EXPECT_EQ(m["inputs"][0]["tensors_hash"], m["inputs"][1]["tensors_hash"]);
  EXPECT_NE(m["inputs"][0]["tensors_hash"], m["inputs"][2]["tensors_hash"]);
}

TEST(MergeRecipe, MergekitLayout) {
  const stdfs::path root = fresh_dir("recipe");
  std::ofstream(root / "r.yaml") << R"(merge_method: ties
base_model: runs/theta0
models:
  - model: runs/math
    parameters: {weight: 0.35, density: 0.4}
  - model: runs/code
    parameters:
      weight: 0.65
parameters:
  density: 0.5
dtype: bfloat16
)";
  const MergeSpec s = spec_from_config(load_recipe({(root / "r.yaml").string()}, {"parameters.seed=3"}));
  EXPECT_EQ(s.method, Method::Ties);
  EXPECT_EQ(s.base, "runs/theta0");
  ASSERT_EQ(s.experts.size(), 2u);
  EXPECT_EQ(s.experts[0].dir, "runs/math");
  EXPECT_EQ(*s.experts[0].weight, 0.35);
  EXPECT_EQ(*s.experts[0].density, 0.4);
  EXPECT_FALSE(s.experts[1].density.has_value());
  EXPECT_EQ(*s.density, 0.5);
  EXPECT_EQ(s.seed, 3u);
  EXPECT_EQ(s.dtype, "bfloat16");
  std::ofstream(root / "bad.yaml") << "merge_method: linear\nmodels:\n  - model: a\n    parameters: {wieght: 1}\n";
  try {
    load_recipe({(root / "bad.yaml").string()}, {});
    FAIL() << "a misspelt field must be an error";
  } catch (const xd::Error& e) {
    EXPECT_TRUE(contains(e.what(), "wieght")) << e.what();
  }
}

TEST(MergeRecipe, PaperRecipesHaveNormalisedWeights) {
  for (const char* name : {"llama_paper.yaml", "qwen_paper.yaml"}) {
    const auto path = stdfs::path(XD_SOURCE_DIR) / "configs" / "merge" / name;
    const MergeSpec s = spec_from_config(load_recipe({path.string()}, {}));
    ASSERT_EQ(s.experts.size(), 4u) << name;
    double sum = 0;
    for (const auto& e : s.experts) sum += *e.weight;
    EXPECT_NEAR(sum, 1.0, 1e-12) << name;
    EXPECT_EQ(s.method, Method::Linear);
  }
}
