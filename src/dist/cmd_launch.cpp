// `xdistill launch --nproc N [--master-port P] -- train --config ...`
#include <cstdlib>

#include "xdistill/cli/commands.h"
#include "xdistill/dist/launcher.h"

namespace xd::cli {

void add_launch_command(CLI::App& app) {
  auto launch = std::make_shared<dist::LocalLaunch>();
  auto* cmd = app.add_subcommand(
      "launch", "start N processes on this node for data-parallel training (one per GPU): launch --nproc N -- train ...");
  cmd->add_option("--nproc", launch->nproc, "processes to start (usually the number of GPUs)")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--master-port", launch->master_port, "rendezvous port (default: $MASTER_PORT, else a free port)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--master-addr", launch->master_addr, "rendezvous address")->capture_default_str();
  cmd->add_option("--grace", launch->grace_seconds, "seconds between SIGTERM and SIGKILL when a rank fails")
      ->capture_default_str();
  cmd->add_option("args", launch->args, "the xdistill command each process runs (after --)")->required();
  cmd->callback([launch] {
    const int code = dist::launch_local(*launch);
    if (code != 0) std::exit(code);  // the failing rank's code, for schedulers and scripts
  });
}

}  // namespace xd::cli
