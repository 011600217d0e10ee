// Placeholder registration; the module's owner replaces it with the real command.
#include "xdistill/cli/commands.h"
#include "xdistill/util/error.h"

namespace xd::cli {

void add_tokenizer_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenizer", "encode and decode with a Hugging Face tokenizer.json");
  cmd->allow_extras();
  cmd->callback([] { throw Error("tokenizer: not built yet"); });
}

}  // namespace xd::cli
