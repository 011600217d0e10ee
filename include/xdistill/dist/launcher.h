// `xdistill launch`: starts one process per GPU on this node, torchrun style.
#pragma once
#include <string>
#include <vector>

namespace xd::dist {

struct LocalLaunch {
  int nproc = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: MASTER_PORT from the environment, else a free port
  std::string executable;         // empty: this program (/proc/self/exe)
  std::vector<std::string> args;  // arguments after the program name
  double grace_seconds = 30.0;    // after a failure, SIGTERM the others, SIGKILL after this
};

// Forks `nproc` children with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT set (the rest of the environment, NCCL_* included,
// is inherited as is). SIGINT, SIGTERM, SIGUSR1, SIGUSR2 and SIGHUP are forwarded
// to all children. When one child fails, the others are stopped. Returns 0 when
// all succeed, else the first failure's exit code (128 + signal when killed).
int launch_local(const LocalLaunch& launch);

// A TCP port that was free a moment ago on this host.
int free_port();

}  // namespace xd::dist
