// Each module registers its subcommands here. A command file (cmd_*.cpp) only
// declares options and calls into the libraries; it holds no logic of its own.
#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "xdistill/config/config.h"

namespace xd::cli {

void add_config_command(CLI::App& app);     // src/cli/cmd_config.cpp
void add_train_command(CLI::App& app);      // src/train/cmd_train.cpp
void add_merge_command(CLI::App& app);      // src/merge/cmd_merge.cpp
void add_eval_command(CLI::App& app);       // src/eval/cmd_eval.cpp
void add_model_commands(CLI::App& app);     // src/models/cmd_models.cpp: info, logits, generate
void add_tokenizer_command(CLI::App& app);  // src/tokenizer/cmd_tokenizer.cpp
void add_data_command(CLI::App& app);       // src/data/cmd_data.cpp
void add_launch_command(CLI::App& app);
void add_bench_command(CLI::App& app);      // src/infer/cmd_infer.cpp: bench inference
void add_niah_command(CLI::App& eval);      // src/infer/cmd_infer.cpp: eval niah (under `eval`)
void add_demo_command(CLI::App& app);       // src/demo/cmd_demo.cpp     // src/dist/cmd_launch.cpp

// Recipe schemas by name ("train", "data", "merge", ...), for `config show`.
const config::Schema& recipe_schema(const std::string& kind);
std::vector<std::string> recipe_kinds();

// The common recipe options of a command: --config FILE (repeatable, later wins)
// and --set key=value (repeatable).
struct RecipeArgs {
  std::vector<std::string> files;
  std::vector<std::string> overrides;
};
void add_recipe_options(CLI::App& cmd, RecipeArgs& args, bool required = true);

}  // namespace xd::cli
