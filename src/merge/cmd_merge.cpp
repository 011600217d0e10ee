// Placeholder registration; the module's owner replaces it with the real command.
#include "xdistill/cli/commands.h"
#include "xdistill/util/error.h"

namespace xd::cli {

void add_merge_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("merge", "merge domain experts into one student (linear, task_arithmetic, ties, dare)");
  cmd->allow_extras();
  cmd->callback([] { throw Error("merge: not built yet"); });
}

}  // namespace xd::cli
