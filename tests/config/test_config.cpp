#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "xdistill/config/config.h"
#include "xdistill/train/options.h"
#include "xdistill/util/error.h"

using namespace xd::config;

namespace {
Schema test_schema() {
  Schema s("test recipe");
  s.add("optim.lr", Type::Float, "1e-3", "learning rate");
  s.add("optim.lr_decay", Type::Float, "0.5", "decay");
  s.add("optim.steps", Type::Int, "10", "steps");
  s.add("model.name", Type::String, "tiny", "name", {"tiny", "small"});
  s.add("model.tied", Type::Bool, "false", "tied embeddings");
  s.add("model.dims", Type::IntList, "[1, 2]", "dims");
  s.add_required("run.dir", Type::String, "run directory");
  s.add_records("data.mixture",
                {field("path", Type::String, "~", "shards"), field("weight", Type::Float, "1.0", "weight")},
                "mixture");
  return s;
}

std::string write_file(const std::string& name, const std::string& text) {
  auto dir = std::filesystem::temp_directory_path() / "xd_config_test";
  std::filesystem::create_directories(dir);
  auto p = dir / name;
  std::ofstream(p) << text;
  return p.string();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const xd::UsageError& e) {
    return e.what();
  }
  return "<no error>";
}
}  // namespace

TEST(Config, DefaultsThenFileThenOverride) {
  Schema s = test_schema();
  auto f = write_file("a.yaml", "run:\n  dir: /tmp/x\noptim:\n  lr: 0.25\n");
  auto c = Config::load(s, {f}, {"optim.steps=42"});
  EXPECT_DOUBLE_EQ(c.get<double>("optim.lr"), 0.25);
  EXPECT_EQ(c.get<int64_t>("optim.steps"), 42);
  EXPECT_DOUBLE_EQ(c.get<double>("optim.lr_decay"), 0.5);
  EXPECT_EQ(c.get<std::string>("model.name"), "tiny");
  EXPECT_EQ(c.where("optim.lr"), f + ":4");
  EXPECT_EQ(c.where("optim.steps"), "--set");
  EXPECT_EQ(c.where("optim.lr_decay"), "default");
  EXPECT_EQ(c.get<std::vector<int64_t>>("model.dims"), (std::vector<int64_t>{1, 2}));
}

TEST(Config, LaterFilesWin) {
  Schema s = test_schema();
  auto a = write_file("l1.yaml", "run: {dir: a}\noptim: {lr: 1.0, steps: 3}\n");
  auto b = write_file("l2.yaml", "optim: {lr: 2.0}\n");
  auto c = Config::load(s, {a, b});
  EXPECT_DOUBLE_EQ(c.get<double>("optim.lr"), 2.0);
  EXPECT_EQ(c.get<int64_t>("optim.steps"), 3);
  EXPECT_EQ(c.get<std::string>("run.dir"), "a");
}

TEST(Config, UnknownKeySuggestsClosest) {
  Schema s = test_schema();
  auto f = write_file("typo.yaml", "run:\n  dir: x\noptim:\n  lr_decya: 0.1\n");
  const std::string msg = error_of([&] { Config::load(s, {f}); });
  EXPECT_NE(msg.find("unknown key 'optim.lr_decya'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'optim.lr_decay'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(f + ":4"), std::string::npos) << msg;
}

TEST(Config, UnknownSectionSuggestsClosest) {
  Schema s = test_schema();
  auto f = write_file("sec.yaml", "run: {dir: x}\noptm:\n  lr: 1\n");
  const std::string msg = error_of([&] { Config::load(s, {f}); });
  EXPECT_NE(msg.find("unknown key 'optm'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'optim'"), std::string::npos) << msg;
}

TEST(Config, TypeErrorsNameFileLineAndKey) {
  Schema s = test_schema();
  auto f = write_file("type.yaml", "run:\n  dir: x\noptim:\n  steps: ten\n");
  std::string msg = error_of([&] { Config::load(s, {f}); });
  EXPECT_NE(msg.find(f + ":4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("key 'optim.steps'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected int"), std::string::npos) << msg;

  auto g = write_file("type2.yaml", "run: {dir: x}\nmodel:\n  tied: maybe\n");
  msg = error_of([&] { Config::load(s, {g}); });
  EXPECT_NE(msg.find("expected bool"), std::string::npos) << msg;

  auto h = write_file("type3.yaml", "run: {dir: x}\nmodel:\n  name: smal\n");
  msg = error_of([&] { Config::load(s, {h}); });
  EXPECT_NE(msg.find("not one of: tiny, small"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'small'"), std::string::npos) << msg;

  auto k = write_file("type4.yaml", "run: {dir: x}\noptim: 3\n");
  msg = error_of([&] { Config::load(s, {k}); });
  EXPECT_NE(msg.find("is a section"), std::string::npos) << msg;
}

TEST(Config, OverridesAreValidated) {
  Schema s = test_schema();
  EXPECT_NE(error_of([&] { Config::load(s, {}, {"run.dir=x", "optim.lrr=1"}); }).find("did you mean 'optim.lr'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { Config::load(s, {}, {"run.dir=x", "optim.lr=fast"}); }).find("expected float"),
            std::string::npos);
  EXPECT_NE(error_of([&] { Config::load(s, {}, {"nonsense"}); }).find("expected key.path=value"),
            std::string::npos);
  auto c = Config::load(s, {}, {"run.dir=a:b", "model.dims=[4, 5, 6]"});
  EXPECT_EQ(c.get<std::string>("run.dir"), "a:b");
  EXPECT_EQ(c.get<std::vector<int64_t>>("model.dims").size(), 3u);
}

TEST(Config, RequiredKeysAreReported) {
  Schema s = test_schema();
  const std::string msg = error_of([&] { Config::load(s, {}); });
  EXPECT_NE(msg.find("run.dir"), std::string::npos) << msg;
}

TEST(Config, RecordsValidateFieldsAndFillDefaults) {
  Schema s = test_schema();
  auto f = write_file("mix.yaml", "run: {dir: x}\ndata:\n  mixture:\n    - {path: a}\n    - {path: b, weight: 3}\n");
  auto c = Config::load(s, {f});
  auto recs = c.records("data.mixture");
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].get<std::string>("path"), "a");
  EXPECT_DOUBLE_EQ(recs[0].get<double>("weight"), 1.0);
  EXPECT_DOUBLE_EQ(recs[1].get<double>("weight"), 3.0);

  auto g = write_file("mix2.yaml", "run: {dir: x}\ndata:\n  mixture:\n    - {path: a, wieght: 2}\n");
  std::string msg = error_of([&] { Config::load(s, {g}); });
  EXPECT_NE(msg.find("did you mean 'weight'"), std::string::npos) << msg;
  auto h = write_file("mix3.yaml", "run: {dir: x}\ndata:\n  mixture:\n    - {weight: 2}\n");
  msg = error_of([&] { Config::load(s, {h}); });
  EXPECT_NE(msg.find("missing required field 'path'"), std::string::npos) << msg;
}

TEST(Config, DumpRoundTrips) {
  Schema s = test_schema();
  auto c = Config::load(s, {}, {"run.dir=/r", "optim.lr=0.5"});
  auto f = write_file("dump.yaml", c.dump());
  auto d = Config::load(s, {f});
  EXPECT_EQ(d.dump(), c.dump());
  EXPECT_DOUBLE_EQ(d.get<double>("optim.lr"), 0.5);
}

TEST(Config, InvalidYamlNamesTheLine) {
  Schema s = test_schema();
  auto f = write_file("bad.yaml", "run:\n  dir: [unclosed\n");
  const std::string msg = error_of([&] { Config::load(s, {f}); });
  EXPECT_NE(msg.find("invalid YAML"), std::string::npos) << msg;
  EXPECT_NE(msg.find("bad.yaml:"), std::string::npos) << msg;
}

TEST(Config, TrainSchemaResolvesShippedDefaults) {
  // The declared train schema is internally consistent: every default parses as its type.
  Config c(xd::train::recipe_schema());
  c.set("run.dir", "x");
  c.set("teacher.path", "t");
  c.set("schedule.steps", "5");
  EXPECT_NO_THROW(c.check_required());
  EXPECT_DOUBLE_EQ(c.get<double>("loss.ce_weight"), 0.9);
  EXPECT_EQ(c.get<int64_t>("loss.top_k"), 256);
}

TEST(Config, EditDistance) {
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(closest("optim.lr_decya", {"optim.lr", "optim.lr_decay"}), "optim.lr_decay");
  EXPECT_EQ(closest("zzzzzz", {"optim.lr"}), "");
}
