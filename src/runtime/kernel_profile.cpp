// KernelProfile over PyTorch's Kineto profiler: CUDA activities only (no CPU op
// records), so the cost to the profiled work is CUPTI's alone.
#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <map>

#include "xdistill/runtime/kernel_profile.h"
#include "xdistill/util/error.h"

namespace xd::runtime {

namespace {
namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

const std::set<ActivityType>& activities() {
  static const std::set<ActivityType> kinds{ActivityType::CUDA};
  return kinds;
}
}  // namespace

void KernelProfile::start() {
  XD_CHECK(!running_, "kernel profile: already running");
  XD_CHECK(prof::isProfilerEnabledInMainThread() == false, "kernel profile: another profiler is running");
  const ProfilerConfig config(ProfilerState::KINETO);
  prof::prepareProfiler(config, activities());
  prof::enableProfiler(config, activities());
  running_ = true;
}

std::vector<KernelTime> KernelProfile::stop() {
  XD_CHECK(running_, "kernel profile: stop() without start()");
  running_ = false;
  const auto result = prof::disableProfiler();
  std::map<std::string, KernelTime> by_name;
  for (const auto& event : result->events()) {
    if (event.deviceType() != c10::DeviceType::CUDA) continue;
    const std::string name = short_kernel_name(event.name());
    auto& t = by_name[name];
    t.name = name;
    t.total_us += event.durationNs() / 1000.0;
    t.launches += 1;
  }
  std::vector<KernelTime> times;
  times.reserve(by_name.size());
  for (auto& [name, t] : by_name) times.push_back(std::move(t));
  std::sort(times.begin(), times.end(), [](const KernelTime& a, const KernelTime& b) { return a.total_us > b.total_us; });
  return times;
}

KernelProfile::~KernelProfile() {
  if (running_) {
    try {
      (void)torch::autograd::profiler::disableProfiler();
    } catch (...) {
    }
  }
}

}  // namespace xd::runtime
