// One rank of the data-parallel tests (test_data_parallel.cpp starts several).
// Trains a small MLP with ShardedAdamW on deterministic micro-batches and writes
// rank 0's final weights as raw float32, plus the per-step loss and gradient norm.
//
//   xd_dist_worker mode=dp|torch|allreduce steps=N accum=A clip=C lr=L bucket=K out=FILE
//                  [save_at=S ckpt=DIR] [resume=DIR] [stop_at=S] [sometimes_unused=1]
// sometimes_unused=1 adds a parameter that only even-numbered micro-batches use,
// so some ranks' backward passes produce no gradient for it.
// mode=dp uses the launch environment (RANK.. or SLURM_..); mode=torch is the
// independent single-process reference: torch::optim::AdamW, autograd's own
// gradient accumulation and torch::nn::utils::clip_grad_norm_. mode=allreduce is
// unsharded data parallelism: autograd's gradients averaged by all_reduce_mean,
// then torch::optim::AdamW on every rank.
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>

#include "xdistill/dist/checkpoint.h"
#include "xdistill/dist/grad_reducer.h"
#include "xdistill/dist/launch_env.h"
#include "xdistill/dist/process_group.h"
#include "xdistill/dist/sharded_adamw.h"

namespace {
namespace stdfs = std::filesystem;
using namespace xd::dist;

struct Args {
  std::map<std::string, std::string> kv;
  std::string get(const std::string& k, const std::string& fallback = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? fallback : it->second;
  }
  double num(const std::string& k, double fallback) const { return std::stod(get(k, std::to_string(fallback))); }
};

torch::nn::Sequential make_model(uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Linear(8, 16), torch::nn::Tanh(), torch::nn::Linear(16, 16),
                               torch::nn::Tanh(), torch::nn::Linear(16, 4));
}

// Micro-batch `index` of optimizer step `step`: the same on every rank and run.
at::Tensor micro_loss(torch::nn::Sequential& model, int64_t step, int64_t index) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(1000 * step + index + 1));
  auto x = at::randn({3, 8}, gen);
  auto y = at::randn({3, 4}, gen);
  return torch::mse_loss(model->forward(x), y);
}

void write_weights(const std::vector<at::Tensor>& params, const std::string& file) {
  std::ofstream out(file, std::ios::binary);
  for (const auto& p : params) {
    auto c = p.detach().to(at::kFloat).contiguous();
    out.write(reinterpret_cast<const char*>(c.data_ptr<float>()), static_cast<std::streamsize>(c.numel() * 4));
  }
}

void read_weights(std::vector<at::Tensor>& params, const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  torch::NoGradGuard no_grad;
  for (auto& p : params) {
    auto c = at::empty_like(p);
    in.read(reinterpret_cast<char*>(c.data_ptr<float>()), static_cast<std::streamsize>(c.numel() * 4));
    p.copy_(c);
  }
  if (!in) throw std::runtime_error(file + ": too short");
}

// Single process (pg == nullptr), or unsharded data parallelism over `pg`.
int run_torch_reference(const Args& a, std::shared_ptr<ProcessGroup> pg = nullptr) {
  const int steps = static_cast<int>(a.num("steps", 4)), accum = static_cast<int>(a.num("accum", 2));
  const int rank = pg ? pg->rank() : 0, world = pg ? pg->size() : 1;
  auto model = make_model(1234);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(a.num("lr", 1e-2))
                                                   .betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  std::ofstream log;
  if (rank == 0) log.open(a.get("out") + ".log");
  log.precision(17);  // the test compares at 1e-6: the default 6 digits would round that away
  for (int step = 0; step < steps; ++step) {
    double loss_sum = 0;
    for (int i = 0; i < accum; ++i) {
      auto loss = micro_loss(model, step, rank * accum + i);
      (loss / accum).backward();
      loss_sum += loss.item<double>();
    }
    if (pg) {
      std::vector<at::Tensor> grads;
      for (auto& p : model->parameters()) grads.push_back(p.mutable_grad());
      all_reduce_mean(*pg, grads, /*bucket_numel=*/100);
      loss_sum = pg->all_reduce_sum({loss_sum})[0] / world;
    }
    double norm = torch::nn::utils::clip_grad_norm_(model->parameters(), a.num("clip", 0) > 0 ? a.num("clip", 0) : 1e30);
    opt.step();
    opt.zero_grad();
    log << step << " " << loss_sum / accum << " " << norm << "\n";
  }
  if (rank == 0) write_weights(model->parameters(), a.get("out"));
  return 0;
}

void save_checkpoint(ProcessGroup& pg, ShardedAdamW& opt, const std::vector<at::Tensor>& params,
                     const stdfs::path& root, int64_t step) {
  const stdfs::path final_dir = root / ("step-" + std::to_string(step));
  const stdfs::path staging = agree_on_staging(pg, [&] {
    stdfs::path s = root / ("step-" + std::to_string(step) + ".tmp");
    stdfs::remove_all(s);
    stdfs::create_directories(s);
    return s;
  });
  if (pg.is_main()) write_weights(params, (staging / "model.bin").string());
  opt.save_shard(staging);
  commit_checkpoint(pg, staging, step, [&] {
    stdfs::remove_all(final_dir);
    stdfs::rename(staging, final_dir);
    return final_dir;
  });
}

int run_data_parallel(const Args& a) {
  const LaunchEnv env = detect_launch_env();
  auto pg = ProcessGroup::create(env, "cpu", std::chrono::seconds(60));
  const int steps = static_cast<int>(a.num("steps", 4)), accum = static_cast<int>(a.num("accum", 1));
  // Ranks start from different weights: the optimizer must broadcast rank 0's.
  auto model = make_model(1234 + 7 * static_cast<uint64_t>(pg->rank()));
  std::vector<TrainedParam> trained;
  for (auto& p : model->named_parameters()) trained.push_back({p.key(), p.value(), true});
  const bool sometimes_unused = a.get("sometimes_unused") == "1";
  at::Tensor extra = torch::linspace(-1, 1, 5).requires_grad_(sometimes_unused);
  if (sometimes_unused) trained.insert(trained.begin() + 2, {"extra", extra, false});
  ShardingOptions sharding;
  sharding.bucket_numel = static_cast<int64_t>(a.num("bucket", 37));  // small: many buckets, split tensors
  sharding.max_inflight = 2;
  ShardedAdamW opt(trained, pg, AdamWOptions{0.9, 0.95, 1e-8, 0.1}, sharding);
  auto params = model->parameters();
  if (sometimes_unused) params.push_back(extra);

  int64_t start = 0;
  if (!a.get("resume").empty()) {
    const stdfs::path dir = a.get("resume");
    if (!checkpoint_complete(dir)) throw std::runtime_error(dir.string() + " is not a complete checkpoint");
    read_weights(params, (dir / "model.bin").string());
    opt.load_shard(dir);
    start = opt.step_count();
  }
  std::ofstream log;
  if (pg->is_main()) log.open(a.get("out") + ".log", std::ios::app);
  log.precision(17);
  const int64_t stop_at = static_cast<int64_t>(a.num("stop_at", steps));
  for (int64_t step = start; step < stop_at; ++step) {
    double loss_sum = 0;
    for (int i = 0; i < accum; ++i) {
      const int64_t index = pg->rank() * accum + i;
      auto loss = micro_loss(model, step, index);
      if (sometimes_unused && index % 2 == 0) loss = loss + 0.1 * (extra * extra).sum() * loss.detach();
      (loss / accum).backward();
      opt.finish_backward();
      loss_sum += loss.item<double>();
    }
    const double mean_loss = pg->all_reduce_sum({loss_sum})[0] / (accum * pg->size());
    const StepResult r = opt.step(a.num("lr", 1e-2), a.num("clip", 0));
    if (pg->is_main()) log << step << " " << mean_loss << " " << r.grad_norm << "\n";
    if (a.num("save_at", -1) == step + 1) save_checkpoint(*pg, opt, params, a.get("ckpt"), step + 1);
  }
  if (pg->is_main()) write_weights(params, a.get("out"));
  if (!a.get("describe").empty()) std::ofstream(a.get("describe") + "." + std::to_string(env.rank)) << env.describe() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    const auto eq = s.find('=');
    if (eq == std::string::npos) {
      std::cerr << "xd_dist_worker: expected key=value, got '" << s << "'\n";
      return 2;
    }
    a.kv[s.substr(0, eq)] = s.substr(eq + 1);
  }
  torch::set_num_threads(1);
  try {
    const std::string mode = a.get("mode", "dp");
    if (mode == "torch") return run_torch_reference(a);
    if (mode == "allreduce") return run_torch_reference(a, ProcessGroup::create(detect_launch_env(), "cpu"));
    return run_data_parallel(a);
  } catch (const std::exception& e) {
    std::cerr << "xd_dist_worker: " << e.what() << "\n";
    return 1;
  }
}
