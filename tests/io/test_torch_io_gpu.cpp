// load_tensor onto a GPU (skips without CUDA).
#include <gtest/gtest.h>

#include <filesystem>

#include "xdistill/io/torch_io.h"

namespace stdfs = std::filesystem;
using namespace xd::io;

TEST(TorchIO, LoadsToGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto dir = stdfs::temp_directory_path() / ("xd_tio_gpu_" + std::to_string(getpid()));
  stdfs::remove_all(dir);
  const at::Tensor w = torch::randn({16, 16});
  save_tensors(dir.string(), {{"w", w}});
  const at::Tensor g = load_tensor(Checkpoint::open(dir.string()), "w", at::kBFloat16, at::Device("cuda:0"));
  EXPECT_TRUE(g.is_cuda());
  EXPECT_TRUE(torch::equal(g.cpu(), w.to(at::kBFloat16)));
}
