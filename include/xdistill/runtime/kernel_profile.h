// Where the GPU time of a stretch of work goes, kernel by kernel, from PyTorch's own
// profiler (Kineto over CUPTI). Nsight Systems does not run on the lent GPU machines,
// and Nsight Compute serialises every kernel; this reads the kernels' real durations,
// also inside CUDA graph replays, at the cost of a few percent.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace xd::runtime {

struct KernelTime {
  std::string name;       // the kernel's name, templates and arguments cut off
  double total_us = 0;    // summed over its launches
  int64_t launches = 0;
};

class KernelProfile {
 public:
  // Starts collecting CUDA kernel, copy and set activities on this process.
  // Throws xd::Error when a profile is already running.
  void start();
  // Stops and returns the activities summed by name, largest total first.
  std::vector<KernelTime> stop();
  ~KernelProfile();

 private:
  bool running_ = false;
};

// A table of the `top` largest rows (the rest summed into one line), each total
// divided by `per` (e.g. the number of decode steps), with the share of the total.
std::string format_kernel_times(const std::vector<KernelTime>& times, const std::string& title, int top = 25,
                                double per = 1.0);

// Short form of a demangled kernel name: no return type, template arguments or
// parameter list ("void at::native::(anonymous)::foo<float>(int)" -> "at::native::foo").
std::string short_kernel_name(const std::string& name);

}  // namespace xd::runtime
