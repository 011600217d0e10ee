// xdistill: distil Transformer LLMs into hybrid xLSTM students.
// Exit codes: 0 success, 2 usage error (usage printed), 1 runtime failure (one-line cause).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "xdistill/cli/commands.h"
#include "xdistill/util/error.h"
#include "xdistill/util/log.h"

namespace {
const CLI::App* deepest_selected(const CLI::App* app) {
  for (const CLI::App* sub : app->get_subcommands())
    if (sub->parsed()) return deepest_selected(sub);
  return app;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"xdistill: distil Transformer LLMs (Llama, Qwen, OLMo) into hybrid xLSTM students"};
  app.name("xdistill");
  app.set_version_flag("--version", std::string("xdistill ") + XDISTILL_VERSION);
  app.require_subcommand(1);
  app.failure_message(CLI::FailureMessage::help);
  std::string log_level = "info", log_file;
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off")->capture_default_str();
  app.add_option("--log-file", log_file, "also write the log to this file");
  app.parse_complete_callback([&] {
    xd::log::set_level(xd::log::parse_level(log_level));
    if (!log_file.empty()) xd::log::add_file(log_file);
  });

  xd::cli::add_demo_command(app);
  xd::cli::add_train_command(app);
  xd::cli::add_merge_command(app);
  xd::cli::add_eval_command(app);
  xd::cli::add_model_commands(app);
  xd::cli::add_tokenizer_command(app);
  xd::cli::add_data_command(app);
  xd::cli::add_launch_command(app);
  xd::cli::add_config_command(app);
  xd::cli::add_bench_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const xd::UsageError& e) {
    std::cerr << deepest_selected(&app)->help() << "\nerror: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::cerr << "error: " << xd::message_without_backtrace(e.what()) << "\n";
    return 1;
  }
  return 0;
}
