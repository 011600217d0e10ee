// Placeholder registration; the module's owner replaces it with the real command.
#include "xdistill/cli/commands.h"
#include "xdistill/util/error.h"

namespace xd::cli {

void add_data_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("data", "prepare packed token shards from text and chat data");
  cmd->allow_extras();
  cmd->callback([] { throw Error("data: not built yet"); });
}

}  // namespace xd::cli
