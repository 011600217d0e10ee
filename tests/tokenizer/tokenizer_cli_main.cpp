// A torch-free executable with only the `tokenizer` command, for fast test and
// benchmark loops (the full xdistill binary links LibTorch). Same options, same
// files, same exit codes as `xdistill tokenizer ...`.
#include <CLI/CLI.hpp>

#include <iostream>

#include "xdistill/cli/commands.h"
#include "xdistill/util/error.h"
#include "xdistill/util/log.h"

int main(int argc, char** argv) {
  CLI::App app{"xdistill tokenizer commands (torch-free test build)"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off");
  app.parse_complete_callback([&] { xd::log::set_level(xd::log::parse_level(log_level)); });
  xd::cli::add_tokenizer_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const xd::UsageError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
