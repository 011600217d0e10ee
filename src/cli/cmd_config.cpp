// `xdistill config show`: print the fully resolved configuration of a recipe.
// `xdistill config options`: list every declared option with its default and help.
#include <iostream>

#include "xdistill/cli/commands.h"
#include "xdistill/merge/recipe.h"
#include "xdistill/util/error.h"

namespace xd::cli {

void add_config_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("config", "inspect recipes: resolved values and declared options");
  cmd->require_subcommand(1);

  struct ShowArgs {
    RecipeArgs recipe;
    std::string kind = "train";
  };
  auto show_args = std::make_shared<ShowArgs>();
  auto* show = cmd->add_subcommand("show", "print the fully resolved configuration of a recipe");
  show->add_option("recipe", show_args->recipe.files, "recipe YAML file(s); later files win")->required();
  show->add_option("--set", show_args->recipe.overrides, "override one key: --set a.b=value");
  show->add_option("--kind", show_args->kind, "which recipe schema to resolve against")
      ->check(CLI::IsMember(recipe_kinds()))->capture_default_str();
  show->callback([show_args] {
    const config::Schema& schema = recipe_schema(show_args->kind);
    // A merge recipe may use mergekit's nested models[].parameters: read it the way
    // `xdistill merge` does, so that what is shown is what a merge would run.
    auto cfg = show_args->kind == "merge"
                   ? merge::load_recipe(show_args->recipe.files, show_args->recipe.overrides)
                   : config::Config::load(schema, show_args->recipe.files, show_args->recipe.overrides);
    std::cout << cfg.dump();
  });

  auto kind = std::make_shared<std::string>("train");
  auto* options = cmd->add_subcommand("options", "list every option of a recipe kind with default and help");
  options->add_option("--kind", *kind, "recipe kind")->check(CLI::IsMember(recipe_kinds()))->capture_default_str();
  options->callback([kind] { std::cout << recipe_schema(*kind).describe(); });
}

}  // namespace xd::cli
