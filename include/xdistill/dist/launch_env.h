// Who am I in a multi-process run? Reads the launcher's environment variables:
// torchrun style (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, set by
// `xdistill launch` too) or SLURM's (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID,
// first host of SLURM_NODELIST), set by `srun` for each task. Torch-free.
#pragma once
#include <functional>
#include <optional>
#include <string>

namespace xd::dist {

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;        // index of this process on its node: picks the GPU
  int local_world_size = 1;  // processes on this node (informational)
  std::string master_addr = "127.0.0.1";  // host of rank 0, where the TCPStore listens
  int master_port = 29500;
  std::string source = "single";  // "torchrun" (incl. `xdistill launch`), "slurm" or "single"

  bool distributed() const { return world_size > 1; }
  std::string describe() const;  // "rank 1/8 (local 1) via slurm, rendezvous node01:29500"
};

// Looks up an environment variable; std::nullopt when unset or empty.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();

// Precedence: RANK/WORLD_SIZE when both are set (an explicit launcher wins, also
// inside a SLURM allocation); else SLURM_PROCID with SLURM_STEP_NUM_TASKS or
// SLURM_NTASKS (so a job step started by srun); else a single process.
// Under SLURM without MASTER_PORT the port is 20000 + SLURM_JOB_ID % 20000, the
// same for every task of the job. Throws xd::Error naming a malformed variable.
LaunchEnv detect_launch_env(const EnvLookup& env = process_env());

}  // namespace xd::dist
