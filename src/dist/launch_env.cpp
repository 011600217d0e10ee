#include "xdistill/dist/launch_env.h"

#include <cstdlib>

#include "xdistill/dist/hostlist.h"
#include "xdistill/util/error.h"

namespace xd::dist {
namespace {

int parse_int(const EnvLookup& env, const std::string& name, long lo, long hi) {
  const auto value = env(name);
  if (!value) throw Error("environment variable " + name + " is not set");
  size_t used = 0;
  long parsed = 0;
  try {
    parsed = std::stol(*value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value->size() || parsed < lo || parsed > hi)
    throw Error("environment variable " + name + "='" + *value + "': expected an integer in [" +
                std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int>(parsed);
}

int parse_int_or(const EnvLookup& env, const std::string& name, long lo, long hi, int fallback) {
  return env(name) ? parse_int(env, name, lo, hi) : fallback;
}

void check_ranks(const LaunchEnv& e, const std::string& rank_var, const std::string& world_var) {
  if (e.rank >= e.world_size)
    throw Error(rank_var + "=" + std::to_string(e.rank) + " is not below " + world_var + "=" +
                std::to_string(e.world_size));
}

LaunchEnv from_torchrun(const EnvLookup& env) {
  LaunchEnv e;
  e.source = "torchrun";
  e.world_size = parse_int(env, "WORLD_SIZE", 1, 1 << 20);
  e.rank = parse_int(env, "RANK", 0, 1 << 20);
  check_ranks(e, "RANK", "WORLD_SIZE");
  e.local_rank = parse_int_or(env, "LOCAL_RANK", 0, 1 << 20, e.world_size == 1 ? 0 : -1);
  if (e.local_rank < 0) throw Error("RANK and WORLD_SIZE are set but LOCAL_RANK is not: which GPU should this process use?");
  e.local_world_size = parse_int_or(env, "LOCAL_WORLD_SIZE", 1, 1 << 20, e.world_size);
  if (auto addr = env("MASTER_ADDR")) e.master_addr = *addr;
  else if (e.world_size > 1) throw Error("WORLD_SIZE=" + std::to_string(e.world_size) + " but MASTER_ADDR is not set");
  e.master_port = parse_int_or(env, "MASTER_PORT", 1, 65535, 29500);
  return e;
}

LaunchEnv from_slurm(const EnvLookup& env) {
  LaunchEnv e;
  e.source = "slurm";
  // srun sets SLURM_STEP_NUM_TASKS for the step; SLURM_NTASKS is the allocation's.
  const std::string world_var = env("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
  e.world_size = parse_int(env, world_var, 1, 1 << 20);
  e.rank = parse_int(env, "SLURM_PROCID", 0, 1 << 20);
  check_ranks(e, "SLURM_PROCID", world_var);
  e.local_rank = parse_int_or(env, "SLURM_LOCALID", 0, 1 << 20, 0);
  if (auto per_node = env("SLURM_STEP_TASKS_PER_NODE")) {
    // "4(x2)" or "4,3": the first number is this layout's common case; informational only.
    e.local_world_size = std::atoi(per_node->c_str()) > 0 ? std::atoi(per_node->c_str()) : 1;
  }
  if (auto addr = env("MASTER_ADDR")) {
    e.master_addr = *addr;
  } else {
    std::optional<std::string> nodes;
    for (const char* var : {"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"})
      if ((nodes = env(var))) break;
    if (!nodes) {
      if (e.world_size > 1) throw Error("SLURM_PROCID is set but neither MASTER_ADDR nor SLURM_NODELIST names the first host");
    } else {
      e.master_addr = first_host(*nodes);
    }
  }
  if (env("MASTER_PORT")) {
    e.master_port = parse_int(env, "MASTER_PORT", 1, 65535);
  } else if (env("SLURM_JOB_ID")) {
    // Every task derives the same port; distinct jobs sharing a node rarely collide.
    const long job = parse_int(env, "SLURM_JOB_ID", 0, 2147483647L);
    e.master_port = 20000 + static_cast<int>(job % 20000);
  }
  return e;
}

}  // namespace

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v || !*v) return std::nullopt;
    return std::string(v);
  };
}

LaunchEnv detect_launch_env(const EnvLookup& env) {
  if (env("RANK") || env("WORLD_SIZE")) {
    if (!env("RANK") || !env("WORLD_SIZE"))
      throw Error(std::string("only one of RANK and WORLD_SIZE is set (") + (env("RANK") ? "RANK" : "WORLD_SIZE") +
                  "): a launcher sets both");
    return from_torchrun(env);
  }
  if (env("SLURM_PROCID") && (env("SLURM_STEP_NUM_TASKS") || env("SLURM_NTASKS"))) return from_slurm(env);
  return LaunchEnv{};
}

std::string LaunchEnv::describe() const {
  return "rank " + std::to_string(rank) + "/" + std::to_string(world_size) + " (local " + std::to_string(local_rank) +
         ") via " + source + ", rendezvous " + master_addr + ":" + std::to_string(master_port);
}

}  // namespace xd::dist
