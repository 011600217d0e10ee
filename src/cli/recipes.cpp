#include "xdistill/cli/commands.h"
#include "xdistill/util/error.h"

namespace xd::cli {

void add_recipe_options(CLI::App& cmd, RecipeArgs& args, bool required) {
  auto* opt = cmd.add_option("-c,--config", args.files,
                             "recipe YAML file; repeat to layer recipes (later files win)");
  if (required) opt->required();
  cmd.add_option("--set", args.overrides, "override one key: --set optim.lr=3e-4 (repeatable)");
}

}  // namespace xd::cli
