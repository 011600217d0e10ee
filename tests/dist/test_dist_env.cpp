// Torch-free parts of data parallelism: SLURM host lists, launch environments,
// the flat bucket layout, the checkpoint marker and the local launcher.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include "xdistill/dist/checkpoint_marker.h"
#include "xdistill/dist/flat_layout.h"
#include "xdistill/dist/hostlist.h"
#include "xdistill/dist/launch_env.h"
#include "xdistill/dist/launcher.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"

namespace {
using namespace xd::dist;
namespace stdfs = std::filesystem;

using Strings = std::vector<std::string>;

TEST(Hostlist, ExpandsRangesListsAndPadding) {
  EXPECT_EQ(expand_hostlist("node[01-04,07]"), (Strings{"node01", "node02", "node03", "node04", "node07"}));
  EXPECT_EQ(expand_hostlist("a1,b[8-10]-ib,c"), (Strings{"a1", "b8-ib", "b9-ib", "b10-ib", "c"}));
  EXPECT_EQ(expand_hostlist("gpu[098-101]"), (Strings{"gpu098", "gpu099", "gpu100", "gpu101"}));
  EXPECT_EQ(expand_hostlist("r[1-2]n[1,3]"), (Strings{"r1n1", "r1n3", "r2n1", "r2n3"}));
  EXPECT_EQ(expand_hostlist("single"), (Strings{"single"}));
  EXPECT_EQ(expand_hostlist("10.0.0.[5-6]"), (Strings{"10.0.0.5", "10.0.0.6"}));
}

TEST(Hostlist, FirstHostWithoutExpandingTheRest) {
  EXPECT_EQ(first_host("node[07-04]x,other"), "node07x");  // only the first bound is read
  EXPECT_EQ(first_host("node[01-04,07],gpu2"), "node01");
  EXPECT_EQ(first_host("login5,node[1-2]"), "login5");
  EXPECT_EQ(first_host("r[3-4]n[009-010]"), "r3n009");
}

TEST(Hostlist, RejectsMalformedLists) {
  EXPECT_THROW(expand_hostlist("node[01-04"), xd::Error);
  EXPECT_THROW(expand_hostlist("node01-04]"), xd::Error);
  EXPECT_THROW(expand_hostlist("node[04-01]"), xd::Error);
  EXPECT_THROW(expand_hostlist("node[a-b]"), xd::Error);
  EXPECT_THROW(expand_hostlist("n[1-100000]", 1000), xd::Error);
  EXPECT_THROW(first_host(""), xd::Error);
}

EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end() || it->second.empty()) return std::nullopt;
    return it->second;
  };
}

TEST(LaunchEnv, SingleProcessWhenNothingIsSet) {
  const LaunchEnv e = detect_launch_env(fake_env({}));
  EXPECT_EQ(e.world_size, 1);
  EXPECT_EQ(e.rank, 0);
  EXPECT_EQ(e.source, "single");
  EXPECT_FALSE(e.distributed());
}

TEST(LaunchEnv, TorchrunVariables) {
  const LaunchEnv e = detect_launch_env(fake_env(
      {{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "host7"}, {"MASTER_PORT", "1234"}}));
  EXPECT_EQ(e.source, "torchrun");
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "host7");
  EXPECT_EQ(e.master_port, 1234);
}

TEST(LaunchEnv, SlurmVariablesWithHostlistAndJobPort) {
  const LaunchEnv e = detect_launch_env(fake_env({{"SLURM_PROCID", "6"},
                                                  {"SLURM_NTASKS", "8"},
                                                  {"SLURM_LOCALID", "2"},
                                                  {"SLURM_JOB_ID", "4242424"},
                                                  {"SLURM_NODELIST", "gpu[07-08]"}}));
  EXPECT_EQ(e.source, "slurm");
  EXPECT_EQ(e.rank, 6);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 2);
  EXPECT_EQ(e.master_addr, "gpu07");
  EXPECT_EQ(e.master_port, 20000 + 4242424 % 20000);
}

TEST(LaunchEnv, SlurmStepValuesAndExplicitMasterWin) {
  const LaunchEnv e = detect_launch_env(fake_env({{"SLURM_PROCID", "1"},
                                                  {"SLURM_NTASKS", "16"},
                                                  {"SLURM_STEP_NUM_TASKS", "2"},
                                                  {"SLURM_STEP_NODELIST", "b[3-4]"},
                                                  {"SLURM_JOB_NODELIST", "a[1-9]"},
                                                  {"MASTER_PORT", "4000"}}));
  EXPECT_EQ(e.world_size, 2);
  EXPECT_EQ(e.master_addr, "b3");
  EXPECT_EQ(e.master_port, 4000);
}

TEST(LaunchEnv, TorchrunWinsInsideSlurm) {
  const LaunchEnv e = detect_launch_env(fake_env({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"},
                                                  {"MASTER_ADDR", "127.0.0.1"}, {"SLURM_PROCID", "0"},
                                                  {"SLURM_NTASKS", "1"}}));
  EXPECT_EQ(e.source, "torchrun");
  EXPECT_EQ(e.world_size, 2);
}

TEST(LaunchEnv, RejectsInconsistentValues) {
  EXPECT_THROW(detect_launch_env(fake_env({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}, {"MASTER_ADDR", "h"}})), xd::Error);
  EXPECT_THROW(detect_launch_env(fake_env({{"RANK", "0"}})), xd::Error);
  EXPECT_THROW(detect_launch_env(fake_env({{"RANK", "x"}, {"WORLD_SIZE", "2"}})), xd::Error);
  EXPECT_THROW(detect_launch_env(fake_env({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "0"}})), xd::Error);  // no MASTER_ADDR
  EXPECT_THROW(detect_launch_env(fake_env({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "2"}, {"SLURM_NODELIST", "n1"}})), xd::Error);
  EXPECT_THROW(detect_launch_env(fake_env({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"MASTER_PORT", "70000"}})), xd::Error);
}

// Every element of every parameter is owned by exactly one rank, once; buckets
// respect the cap; the shard pieces tile each rank's shard without overlap.
TEST(FlatLayout, ShardsCoverEveryElementOnce) {
  const std::vector<int64_t> numels{5, 100, 1, 0, 37, 64};
  for (int world : {1, 2, 3, 8}) {
    for (int64_t cap : {1, 7, 37, 64, 1000}) {
      const FlatLayout layout(numels, world, cap);
      std::vector<std::vector<int>> owners(numels.size());
      for (size_t i = 0; i < numels.size(); ++i) owners[i].assign(static_cast<size_t>(numels[i]), 0);
      for (const Bucket& b : layout.buckets()) {
        EXPECT_LE(b.numel, cap);
        EXPECT_EQ(b.padded_numel % world, 0);
        EXPECT_LT(b.padded_numel - b.numel, world);
      }
      for (int r = 0; r < world; ++r) {
        std::vector<int> used(static_cast<size_t>(layout.shard_numel()), 0);
        for (const ShardPiece& p : layout.shard_pieces(r))
          for (int64_t k = 0; k < p.length; ++k) {
            ++owners[p.param][static_cast<size_t>(p.param_offset + k)];
            ++used[static_cast<size_t>(p.shard_offset + k)];
          }
        for (int u : used) EXPECT_LE(u, 1);
      }
      for (const auto& o : owners)
        for (int count : o) ASSERT_EQ(count, 1) << "world " << world << " cap " << cap;
      EXPECT_EQ(layout.fingerprint(), layout.with_world_size(world + 1).fingerprint());
    }
  }
}

TEST(FlatLayout, BucketsStartFromTheLastParameter) {
  const FlatLayout layout({4, 4, 4}, 2, 6);
  ASSERT_EQ(layout.buckets().size(), 2u);
  EXPECT_EQ(layout.buckets()[0].pieces[0].param, 2u);
  EXPECT_EQ(layout.buckets()[0].pieces[1].param, 1u);
  EXPECT_EQ(layout.buckets()[0].pieces[1].length, 2);  // parameter 1 spans two buckets
  EXPECT_EQ(layout.buckets()[1].pieces[0].param, 1u);
  EXPECT_EQ(layout.buckets()[1].pieces[0].param_offset, 2);
  EXPECT_NE(layout.fingerprint(), FlatLayout({4, 4, 4}, 2, 5).fingerprint());
}

TEST(CheckpointMarker, CountsOnlyWithMarkerAndAllShards) {
  const stdfs::path dir = stdfs::temp_directory_path() / ("xd_marker_" + std::to_string(::getpid()));
  stdfs::remove_all(dir);
  stdfs::create_directories(dir / "optim");
  std::ofstream(dir / expected_shards(2)[0]) << "x";
  EXPECT_FALSE(checkpoint_complete(dir));  // no marker yet
  write_complete_marker(dir, 10, 2);
  EXPECT_FALSE(checkpoint_complete(dir));  // marker names a missing shard
  std::ofstream(dir / expected_shards(2)[1]) << "x";
  EXPECT_TRUE(checkpoint_complete(dir));
  EXPECT_EQ(checkpoint_world_size(dir), 2);
  stdfs::remove_all(dir);
}

std::string read_file(const stdfs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(Launcher, SetsTheRankVariablesForEachChild) {
  const stdfs::path dir = stdfs::temp_directory_path() / ("xd_launch_" + std::to_string(::getpid()));
  stdfs::remove_all(dir);
  stdfs::create_directories(dir);
  LocalLaunch launch;
  launch.nproc = 3;
  launch.master_port = 4567;
  launch.executable = "/bin/sh";
  launch.args = {"-c", "echo $RANK $WORLD_SIZE $LOCAL_RANK $MASTER_ADDR $MASTER_PORT > " + dir.string() + "/$RANK"};
  EXPECT_EQ(launch_local(launch), 0);
  for (int r = 0; r < 3; ++r)
    EXPECT_EQ(read_file(dir / std::to_string(r)),
              std::to_string(r) + " 3 " + std::to_string(r) + " 127.0.0.1 4567\n");
  stdfs::remove_all(dir);
}

TEST(Launcher, StopsTheOthersWhenOneFails) {
  const stdfs::path dir = stdfs::temp_directory_path() / ("xd_launch_fail_" + std::to_string(::getpid()));
  stdfs::remove_all(dir);
  stdfs::create_directories(dir);
  LocalLaunch launch;
  launch.nproc = 2;
  launch.executable = "/bin/sh";
  launch.grace_seconds = 20;
  // Rank 1 fails at once; rank 0 would sleep for a minute unless the launcher
  // sends it SIGTERM, which its trap records.
  launch.args = {"-c", "if [ $RANK = 1 ]; then sleep 0.2; exit 3; fi; trap 'echo stopped > " + dir.string() +
                           "/r0; kill $!; exit 143' TERM; sleep 60 & wait"};
  EXPECT_EQ(launch_local(launch), 3);
  EXPECT_EQ(read_file(dir / "r0"), "stopped\n");
  stdfs::remove_all(dir);
}

TEST(Launcher, RejectsEmptyCommands) {
  LocalLaunch launch;
  EXPECT_THROW(launch_local(launch), xd::UsageError);
  launch.args = {"x"};
  launch.nproc = 0;
  EXPECT_THROW(launch_local(launch), xd::UsageError);
}

}  // namespace
