// load_tensor / save_tensors: dtype conversion, zero-copy views, round trips.
#include <gtest/gtest.h>

#include <filesystem>

#include "xdistill/io/torch_io.h"
#include "xdistill/util/error.h"

namespace stdfs = std::filesystem;
using namespace xd::io;

namespace {
stdfs::path fresh_dir(const std::string& name) {
  const stdfs::path d = stdfs::temp_directory_path() / ("xd_tio_" + name + "_" + std::to_string(getpid()));
  stdfs::remove_all(d);
  return d;
}
}  // namespace

TEST(TorchIO, RoundTripEveryDtype) {
  const auto dir = fresh_dir("rt");
  torch::manual_seed(0);
  std::vector<std::pair<std::string, at::Tensor>> ts = {
      {"f32", torch::randn({3, 5})},
      {"bf16", torch::randn({7}).to(at::kBFloat16)},
      {"f16", torch::randn({2, 3}).to(at::kHalf)},
      {"f64", torch::randn({4}, at::kDouble)},
      {"i64", torch::arange(6, at::kLong).reshape({2, 3})},
      {"i32", torch::arange(5, at::kInt)},
      {"u8", torch::arange(9, at::kByte)},
      {"bool", torch::tensor({true, false, true})},
      {"strided", torch::randn({4, 6}).t()},  // non-contiguous input
      {"empty", torch::zeros({0, 3})},
  };
  save_tensors(dir.string(), ts, {{"note", "x"}}, /*max_shard_bytes=*/64);
  const Checkpoint ck = Checkpoint::open(dir.string());
  EXPECT_GT(ck.files().size(), 1u);
  EXPECT_EQ(ck.metadata().at("format"), "pt");
  EXPECT_EQ(ck.metadata().at("note"), "x");
  for (const auto& [name, t] : ts) {
    const at::Tensor back = load_tensor(ck, name, std::nullopt, at::kCPU);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(back, t)) << name;
  }
}

TEST(TorchIO, ConvertsDtypeAndViewsWithoutCopy) {
  const auto dir = fresh_dir("conv");
  const at::Tensor w = torch::randn({8, 4});
  save_tensors(dir.string(), {{"w", w}});
  at::Tensor view;
  {
    const Checkpoint ck = Checkpoint::open(dir.string());
    view = load_tensor(ck, "w", at::kFloat, at::kCPU);
    EXPECT_EQ(view.data_ptr(), static_cast<const void*>(ck.data("w")));  // zero-copy
    const at::Tensor bf = load_tensor(ck, "w", at::kBFloat16, at::kCPU);
    EXPECT_EQ(bf.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(torch::equal(bf, w.to(at::kBFloat16)));
  }  // the checkpoint object is gone; the view keeps the mapping alive
  EXPECT_TRUE(torch::equal(view, w));
  view.add_(1.0);  // copy-on-write: no crash, file unchanged
  const Checkpoint again = Checkpoint::open(dir.string());
  EXPECT_TRUE(torch::equal(load_tensor(again, "w", std::nullopt, at::kCPU), w));
  EXPECT_THROW(load_tensor(again, "missing", std::nullopt, at::kCPU), xd::Error);
}
