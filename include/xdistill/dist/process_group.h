// The ranks of a data-parallel run and their collectives, over LibTorch's c10d:
// ProcessGroupNCCL for CUDA tensors, ProcessGroupGloo for CPU tensors, a
// TCPStore on rank 0's host for the rendezvous. c10d's headers stay inside
// src/dist/process_group.cpp; this header only needs ATen's Tensor.
//
// Every collective must be called by all ranks in the same order. A group of one
// rank needs no store: its collectives are copies or no-ops.
#pragma once
#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "xdistill/dist/launch_env.h"

namespace xd::dist {

// A collective in flight. wait(): on CUDA the current stream waits for it (the host
// does not block); on CPU the host blocks until it is done.
class Work {
 public:
  struct Impl;
  Work() = default;
  explicit Work(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  void wait();
  bool pending() const { return impl_ != nullptr; }

 private:
  std::shared_ptr<Impl> impl_;
};

class ProcessGroup {
 public:
  // Connects the ranks described by `env`. `device` is "cpu" (Gloo) or "cuda" /
  // "cuda:N" (NCCL; the process must already use its GPU, see use_local_gpu).
  // Rank 0 hosts the TCPStore at env.master_addr:env.master_port; the others wait
  // up to `timeout` for it. NCCL_* variables the user set are left untouched.
  static std::shared_ptr<ProcessGroup> create(const LaunchEnv& env, const std::string& device,
                                              std::chrono::milliseconds timeout = std::chrono::minutes(30));
  // A world of one process (no store, no backend).
  static std::shared_ptr<ProcessGroup> single(const std::string& device = "cpu");
  ~ProcessGroup();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_main() const { return rank_ == 0; }
  const std::string& backend() const { return backend_; }  // "nccl", "gloo" or "single"
  const std::string& device() const { return device_; }

  // In place: t = sum over ranks of t.
  void all_reduce_sum(at::Tensor& t);
  Work all_reduce_sum_async(at::Tensor& t);
  // input has size() * output.numel() elements; rank r receives the sum over ranks
  // of input[r * n, (r + 1) * n).
  Work reduce_scatter_sum_async(at::Tensor& output, at::Tensor& input);
  // output has size() * input.numel() elements; slice r receives rank r's input.
  Work all_gather_async(at::Tensor& output, at::Tensor& input);
  void broadcast(at::Tensor& t, int root = 0);
  void barrier();

  // Scalars and strings for metrics and agreement (host values, synchronous).
  std::vector<double> all_reduce_sum(std::vector<double> values);
  double all_reduce_max(double value);
  bool any(bool flag) { return all_reduce_max(flag ? 1.0 : 0.0) > 0.0; }
  std::string broadcast_string(const std::string& value, int root = 0);

  struct Impl;

 private:
  ProcessGroup() = default;
  int rank_ = 0, size_ = 1;
  std::string backend_ = "single", device_ = "cpu";
  std::unique_ptr<Impl> impl_;
  int64_t string_round_ = 0;
};

// Under CUDA: makes "cuda:<local_rank>" the current device and returns its name;
// for "cpu" returns "cpu". Call before building the model and the process group.
std::string use_local_gpu(const LaunchEnv& env, const std::string& device);

// Everything a trainer needs to join a run: who it is, its device, its group.
struct DataParallel {
  LaunchEnv env;
  std::string device;  // "cpu" or "cuda:<local_rank>"
  std::shared_ptr<ProcessGroup> group;
};
// detect_launch_env() + use_local_gpu() + ProcessGroup::create(), for a resolved
// device ("cpu", "cuda", "cuda:N"). A single process gets a group of one.
DataParallel init_data_parallel(const std::string& device,
                                std::chrono::milliseconds timeout = std::chrono::minutes(30));

}  // namespace xd::dist
