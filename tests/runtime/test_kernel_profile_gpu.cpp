#include <gtest/gtest.h>
#include <torch/torch.h>

#include "xdistill/runtime/kernel_profile.h"
#include "xdistill/util/error.h"

TEST(KernelProfileGpu, CountsTheLaunchesOfAKnownKernel) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto x = torch::randn({1 << 20}, torch::kCUDA);
  (void)x.exp();  // module load outside the profile
  torch::cuda::synchronize();
  xd::runtime::KernelProfile profiler;
  profiler.start();
  EXPECT_THROW(profiler.start(), xd::Error);
  for (int i = 0; i < 7; ++i) x = x.exp().neg();
  torch::cuda::synchronize();
  const auto times = profiler.stop();
  int64_t launches = 0;
  double total_us = 0;
  for (const auto& t : times) {
    total_us += t.total_us;
    if (t.name.find("elementwise") != std::string::npos || t.name.find("vectorized") != std::string::npos)
      launches += t.launches;
  }
  EXPECT_EQ(launches, 14) << xd::runtime::format_kernel_times(times, "profile");
  EXPECT_GT(total_us, 0.0);
}
