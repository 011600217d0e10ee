// Data parallelism on CPU with Gloo, two processes on this machine (the worker is
// xd_dist_worker, see dist_worker.cpp). What must hold:
//  - 2 ranks x 1 micro-batch == 1 process x 2 accumulated micro-batches, bit for bit
//    without clipping: the reduce-scatter adds the same two fp32 numbers the
//    accumulation adds, and (g0 + g1) / 2 == g0 / 2 + g1 / 2 exactly (halving is
//    exact). With clipping the global norm is summed from per-rank pieces, in
//    another order than in one process, so the clip factor may differ in its last
//    bit: relative difference <= 1e-6;
//  - the sharded optimizer equals an unsharded one (torch::optim::AdamW in one
//    process, clip_grad_norm_) up to fp32 rounding of the norm and the accumulation
//    order: relative difference <= 1e-6;
//  - a run resumed from a sharded checkpoint ends with the weights of the
//    uninterrupted run, bit for bit (same world size), or within 1e-6 after
//    resharding to another world size (clipping on, see above);
//  - SLURM's variables (srun, simulated) start the same training.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "xdistill/dist/checkpoint_marker.h"
#include "xdistill/dist/launcher.h"

namespace {
namespace stdfs = std::filesystem;
using xd::dist::LocalLaunch;

using Args = std::vector<std::string>;

class DataParallel : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = stdfs::temp_directory_path() /
           ("xd_dp_" + std::to_string(::getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    stdfs::remove_all(dir_);
    stdfs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) stdfs::remove_all(dir_);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // One process, no launcher variables.
  int run_single(const Args& args) { return spawn_with_env({}, args); }
  // `nproc` processes through the torchrun-style launcher.
  int run_launched(int nproc, const Args& args) {
    LocalLaunch launch;
    launch.nproc = nproc;
    launch.executable = XD_DIST_WORKER;
    launch.args = args;
    return xd::dist::launch_local(launch);
  }
  // One process per rank with the variables srun sets, launched by hand.
  int run_as_slurm(int ntasks, int job_id, const Args& args) {
    std::vector<pid_t> pids;
    for (int r = 0; r < ntasks; ++r)
      pids.push_back(start({{"SLURM_PROCID", std::to_string(r)},
                            {"SLURM_NTASKS", std::to_string(ntasks)},
                            {"SLURM_LOCALID", std::to_string(r)},
                            {"SLURM_JOB_ID", std::to_string(job_id)},
                            {"SLURM_JOB_NODELIST", "127.0.0.[1-4]"}},
                           args));
    int worst = 0;
    for (pid_t pid : pids) worst = std::max(worst, wait_for(pid));
    return worst;
  }

  static std::vector<float> weights(const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    std::vector<float> w;
    float x;
    while (in.read(reinterpret_cast<char*>(&x), sizeof x)) w.push_back(x);
    return w;
  }
  // max |a - b| / max |b|
  static double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    double diff = 0, scale = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
      diff = std::max(diff, std::fabs(double(a[i]) - double(b[i])));
      scale = std::max(scale, std::fabs(double(b[i])));
    }
    return diff / scale;
  }
  // The per-step "step loss grad_norm" lines of two runs agree within `tolerance`
  // (relative). Adam's update hardly depends on the gradient's scale, so a wrong
  // averaging over ranks shows in the norm much more than in the weights.
  static void expect_same_log(const std::string& a, const std::string& b, double tolerance) {
    std::ifstream fa(a), fb(b);
    double sa, la, na, sb, lb, nb;
    int lines = 0;
    while (fa >> sa >> la >> na) {
      ASSERT_TRUE(fb >> sb >> lb >> nb) << b << " has fewer steps than " << a;
      EXPECT_EQ(sa, sb);
      EXPECT_NEAR(la, lb, tolerance * std::fabs(lb)) << "loss at step " << sa;
      EXPECT_NEAR(na, nb, tolerance * std::fabs(nb)) << "gradient norm at step " << sa;
      ++lines;
    }
    EXPECT_GT(lines, 0) << a << " holds no steps";
  }
  static void expect_identical(const std::vector<float>& a, const std::vector<float>& b) {
    ASSERT_EQ(a.size(), b.size());
    ASSERT_FALSE(a.empty());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "first difference at weight " << i;
  }

 private:
  static pid_t start(const std::map<std::string, std::string>& env, const Args& args) {
    const pid_t pid = fork();
    if (pid == 0) {
      for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                            "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_NODELIST", "SLURM_STEP_NODELIST"})
        unsetenv(v);
      for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      std::vector<char*> argv{const_cast<char*>(XD_DIST_WORKER)};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(XD_DIST_WORKER, argv.data());
      _exit(127);
    }
    return pid;
  }
  static int wait_for(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  int spawn_with_env(const std::map<std::string, std::string>& env, const Args& args) { return wait_for(start(env, args)); }

  stdfs::path dir_;
};

TEST_F(DataParallel, TwoRanksEqualOneProcessWithGradientAccumulation) {
  ASSERT_EQ(run_single({"steps=5", "accum=2", "clip=0", "out=" + path("single.bin")}), 0);
  ASSERT_EQ(run_launched(2, {"steps=5", "accum=1", "clip=0", "out=" + path("dp.bin")}), 0);
  expect_identical(weights(path("dp.bin")), weights(path("single.bin")));
  expect_same_log(path("dp.bin.log"), path("single.bin.log"), 1e-6);

  // A parameter that rank 1 never uses: its bucket is still reduced (as zeros there).
  ASSERT_EQ(run_single({"steps=4", "accum=2", "sometimes_unused=1", "out=" + path("single_unused.bin")}), 0);
  ASSERT_EQ(run_launched(2, {"steps=4", "accum=1", "sometimes_unused=1", "out=" + path("dp_unused.bin")}), 0);
  expect_identical(weights(path("dp_unused.bin")), weights(path("single_unused.bin")));
  EXPECT_EQ(weights(path("dp_unused.bin")).size(), weights(path("dp.bin")).size() + 5);

  ASSERT_EQ(run_single({"steps=5", "accum=2", "clip=0.3", "out=" + path("single_clip.bin")}), 0);
  ASSERT_EQ(run_launched(2, {"steps=5", "accum=1", "clip=0.3", "out=" + path("dp_clip.bin")}), 0);
  EXPECT_LE(relative_difference(weights(path("dp_clip.bin")), weights(path("single_clip.bin"))), 1e-6);
  // Clipping was active: the clipped run differs from the unclipped one.
  EXPECT_GT(relative_difference(weights(path("dp_clip.bin")), weights(path("dp.bin"))), 1e-4);
}

TEST_F(DataParallel, ShardedAdamWMatchesTorchAdamW) {
  ASSERT_EQ(run_single({"mode=torch", "steps=5", "accum=4", "clip=0", "out=" + path("torch.bin")}), 0);
  ASSERT_EQ(run_launched(2, {"steps=5", "accum=2", "clip=0", "out=" + path("dp.bin")}), 0);
  const auto reference = weights(path("torch.bin")), sharded = weights(path("dp.bin"));
  ASSERT_EQ(reference.size(), 16u * 8 + 16 + 16 * 16 + 16 + 4 * 16 + 4);
  EXPECT_LE(relative_difference(sharded, reference), 1e-6);
  expect_same_log(path("dp.bin.log"), path("torch.bin.log"), 1e-6);
  // The runs must have moved the weights: a no-op optimizer would fail here.
  ASSERT_EQ(run_single({"mode=torch", "steps=1", "accum=4", "lr=0", "out=" + path("init.bin")}), 0);
  EXPECT_GT(relative_difference(weights(path("init.bin")), reference), 1e-3);
}

// With clipping: unsharded data parallelism (all_reduce_mean of full gradients,
// torch AdamW on every rank), the sharded optimizer and the one-process reference.
TEST_F(DataParallel, ShardedEqualsUnshardedDataParallel) {
  ASSERT_EQ(run_single({"mode=torch", "steps=5", "accum=4", "clip=0.3", "out=" + path("torch.bin")}), 0);
  ASSERT_EQ(run_launched(2, {"mode=allreduce", "steps=5", "accum=2", "clip=0.3", "out=" + path("allreduce.bin")}), 0);
  ASSERT_EQ(run_launched(2, {"steps=5", "accum=2", "clip=0.3", "out=" + path("sharded.bin")}), 0);
  EXPECT_LE(relative_difference(weights(path("allreduce.bin")), weights(path("torch.bin"))), 1e-6);
  EXPECT_LE(relative_difference(weights(path("sharded.bin")), weights(path("allreduce.bin"))), 1e-6);
  EXPECT_LE(relative_difference(weights(path("sharded.bin")), weights(path("torch.bin"))), 1e-6);
  expect_same_log(path("allreduce.bin.log"), path("torch.bin.log"), 1e-6);
  expect_same_log(path("sharded.bin.log"), path("allreduce.bin.log"), 1e-6);
}

// One process: the fp32 gradient accumulation and the update are element for element
// those of autograd and torch::optim::AdamW, so without clipping the weights agree bit
// for bit.
TEST_F(DataParallel, OneRankIsExactlyTorchAdamW) {
  ASSERT_EQ(run_single({"mode=torch", "steps=5", "accum=4", "clip=0", "out=" + path("torch.bin")}), 0);
  ASSERT_EQ(run_single({"steps=5", "accum=4", "clip=0", "out=" + path("mine.bin")}), 0);
  expect_identical(weights(path("mine.bin")), weights(path("torch.bin")));
  expect_same_log(path("mine.bin.log"), path("torch.bin.log"), 1e-6);
}

TEST_F(DataParallel, ShardedCheckpointResumesToIdenticalWeights) {
  ASSERT_EQ(run_launched(2, {"steps=6", "clip=0.3", "out=" + path("straight.bin")}), 0);
  ASSERT_EQ(run_launched(2, {"steps=6", "stop_at=3", "save_at=3", "ckpt=" + path("ckpt"), "clip=0.3",
                             "out=" + path("first.bin")}),
            0);
  const std::string ckpt = path("ckpt/step-3");
  ASSERT_TRUE(xd::dist::checkpoint_complete(ckpt));
  ASSERT_EQ(run_launched(2, {"steps=6", "resume=" + ckpt, "clip=0.3", "out=" + path("resumed.bin")}), 0);
  expect_identical(weights(path("resumed.bin")), weights(path("straight.bin")));
  // Resharded: the 2-rank optimizer state resumed by one process accumulating 2 micro-batches.
  ASSERT_EQ(run_single({"steps=6", "accum=2", "resume=" + ckpt, "clip=0.3", "out=" + path("resharded.bin")}), 0);
  EXPECT_LE(relative_difference(weights(path("resharded.bin")), weights(path("straight.bin"))), 1e-6);
  // A checkpoint without its marker does not count.
  stdfs::remove(stdfs::path(ckpt) / xd::dist::kCompleteMarker);
  EXPECT_FALSE(xd::dist::checkpoint_complete(ckpt));
  EXPECT_NE(run_launched(2, {"steps=6", "resume=" + ckpt, "out=" + path("bad.bin")}), 0);
}

TEST_F(DataParallel, SlurmVariablesStartTheSameTraining) {
  // The rendezvous port comes from SLURM_JOB_ID: 20000 + id % 20000. Pick an id
  // whose port is free now.
  int port = 0;
  for (int i = 0; i < 200 && (port < 20000 || port >= 40000); ++i) port = xd::dist::free_port();
  ASSERT_TRUE(port >= 20000 && port < 40000) << "no free port in 20000..39999";
  const int job_id = 100000 + (port - 20000);
  ASSERT_EQ(run_as_slurm(2, job_id, {"steps=3", "out=" + path("slurm.bin"), "describe=" + path("who")}), 0);
  ASSERT_EQ(run_launched(2, {"steps=3", "out=" + path("launch.bin")}), 0);
  expect_identical(weights(path("slurm.bin")), weights(path("launch.bin")));
  std::ifstream who(path("who.1"));
  std::string line;
  std::getline(who, line);
  EXPECT_EQ(line, "rank 1/2 (local 1) via slurm, rendezvous 127.0.0.1:" + std::to_string(port));
}

}  // namespace
