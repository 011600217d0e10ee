// The command line as a user meets it: exit codes and messages of the real binary.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace {
struct Result {
  int code;
  std::string out;
};
Result run(const std::string& args) {
  const std::string cmd = std::string(XD_BINARY) + " " + args + " 2>&1";
  Result r{0, ""};
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}
}  // namespace

TEST(Cli, HelpListsSubcommands) {
  auto r = run("--help");
  EXPECT_EQ(r.code, 0);
  for (const char* sub : {"train", "merge", "eval", "config"})
    EXPECT_NE(r.out.find(sub), std::string::npos) << sub << "\n" << r.out;
}

TEST(Cli, VersionAndUsageErrors) {
  auto v = run("--version");
  EXPECT_EQ(v.code, 0);
  EXPECT_NE(v.out.find("xdistill "), std::string::npos);
  auto bad = run("no-such-command");
  EXPECT_EQ(bad.code, 2) << bad.out;
  auto none = run("");
  EXPECT_EQ(none.code, 2) << none.out;
  auto missing = run("train");
  EXPECT_EQ(missing.code, 2) << missing.out;
  EXPECT_NE(missing.out.find("--config"), std::string::npos) << missing.out;
}

TEST(Cli, MisspeltRecipeKeyIsRejectedWithSuggestion) {
  auto dir = std::filesystem::temp_directory_path() / "xd_cli_test";
  std::filesystem::create_directories(dir);
  auto recipe = dir / "typo.yaml";
  std::ofstream(recipe) << "run:\n  dir: /tmp/r\nteacher:\n  path: /tmp/t\nschedule:\n  steps: 3\noptim:\n  weight_decya: 0.1\n";
  auto r = run("config show " + recipe.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("unknown key 'optim.weight_decya'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("did you mean 'optim.weight_decay'"), std::string::npos) << r.out;
  auto t = run("train --config " + recipe.string());
  EXPECT_EQ(t.code, 2) << t.out;
  EXPECT_NE(t.out.find("did you mean 'optim.weight_decay'"), std::string::npos) << t.out;
}

TEST(Cli, ConfigShowPrintsResolvedValues) {
  auto dir = std::filesystem::temp_directory_path() / "xd_cli_test";
  std::filesystem::create_directories(dir);
  auto recipe = dir / "ok.yaml";
  std::ofstream(recipe) << "run:\n  dir: /tmp/r\nteacher:\n  path: /tmp/t\nschedule:\n  steps: 3\n";
  auto r = run("config show " + recipe.string() + " --set optim.lr=0.125");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("lr: 0.125"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("top_k: 256"), std::string::npos) << r.out;
}

TEST(Cli, ConfigShowReadsMergekitNestedParameters) {
  auto dir = std::filesystem::temp_directory_path() / "xd_cli_test";
  std::filesystem::create_directories(dir);
  auto recipe = dir / "merge.yaml";
  std::ofstream(recipe) << "merge_method: ties\nbase_model: /tmp/base\nmodels:\n"
                           "  - model: /tmp/a\n    parameters:\n      weight: 0.75\n      density: 0.5\n"
                           "  - model: /tmp/b\n    parameters:\n      weight: 0.25\n";
  auto r = run("config show --kind merge " + recipe.string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("weight: 0.75"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("density: 0.5"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("parameters:\n      weight"), std::string::npos) << r.out;
  // Anything else nested under a model's parameters is still an error naming the file.
  std::ofstream(recipe, std::ios::app) << "  - model: /tmp/c\n    parameters:\n      wieght: 1\n";
  auto bad = run("config show --kind merge " + recipe.string());
  EXPECT_NE(bad.code, 0) << bad.out;
  EXPECT_NE(bad.out.find("merge.yaml"), std::string::npos) << bad.out;
}
