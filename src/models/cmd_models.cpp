// Placeholder registration; the module's owner replaces it with the real commands.
#include "xdistill/cli/commands.h"
#include "xdistill/util/error.h"

namespace xd::cli {

void add_model_commands(CLI::App& app) {
  for (const char* name : {"info", "logits", "generate"}) {
    auto* cmd = app.add_subcommand(name, std::string(name) + " (teacher or student model)");
    cmd->allow_extras();
    cmd->callback([name] { throw Error(std::string(name) + ": not built yet"); });
  }
}

}  // namespace xd::cli
