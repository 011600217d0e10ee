// Placeholder registration; the module's owner replaces it with the real command.
#include "xdistill/cli/commands.h"
#include "xdistill/util/error.h"

namespace xd::cli {

void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("eval", "score models on tasks; compare student and teacher (win-and-tie)");
  cmd->allow_extras();
  cmd->callback([] { throw Error("eval: not built yet"); });
}

}  // namespace xd::cli
