// `xdistill train --config recipe.yaml`: validates the recipe, then runs the stage.
#include <iostream>

#include "xdistill/cli/commands.h"
#include "xdistill/train/options.h"
#include "xdistill/util/error.h"

namespace xd::cli {

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<RecipeArgs>();
  auto* cmd = app.add_subcommand("train", "train a student (Stage I align, Stage II distill) or a teacher (pretrain)");
  add_recipe_options(*cmd, *args);
  cmd->callback([args] {
    auto cfg = config::Config::load(train::recipe_schema(), args->files, args->overrides);
    throw Error("train: the training loop is not built yet (stage '" + cfg.get<std::string>("stage") + "')");
  });
}

}  // namespace xd::cli
