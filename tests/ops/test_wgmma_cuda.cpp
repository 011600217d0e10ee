// The wgmma building block (kernels/sm90a/wgmma.cuh) against a float64 product: shared-
// memory descriptors, the K-major core-matrix layout and the accumulator fragment.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cmath>
#include <string>

#include "ops_test_util.h"
#include "wgmma_probe.h"

namespace {

TEST(WgmmaCuda, ProbeProductMatchesFloat64) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::manual_seed(12);
  const auto cuda = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  for (int K : {16, 64, 128, 256}) {
    const auto a = at::randn({64, K}, cuda), b = at::randn({64, K}, cuda);
    auto c = at::full({64, 64}, std::nan(""), cuda.dtype(at::kFloat));
    if (!xd::kernels::wgmma_probe_gemm(a.data_ptr(), b.data_ptr(), c.data_ptr<float>(), K,
                                       at::cuda::getCurrentCUDAStream())) {
      GTEST_SKIP() << "wgmma needs a compute capability 9.0 device";
    }
    // The bf16 products are exact in float32; only the order of the float32 sums differs.
    const auto ref = at::matmul(a.to(at::kDouble), b.to(at::kDouble).t());
    const double err = xd::test::rel_err(c, ref);
    EXPECT_LE(err, 1e-5) << "wgmma m64n64 K=" << K << ": relative L2 error " << err << "; "
                         << xd::test::worst(c, ref);
    if (err > 1e-5) {  // which reading of the descriptor's offsets would have held
      auto swapped = at::full({64, 64}, std::nan(""), cuda.dtype(at::kFloat));
      xd::kernels::wgmma_probe_gemm(a.data_ptr(), b.data_ptr(), swapped.data_ptr<float>(), K,
                                    at::cuda::getCurrentCUDAStream(), /*swap_offsets=*/true);
      ADD_FAILURE() << "with the two offset fields exchanged: relative L2 error " << xd::test::rel_err(swapped, ref);
    }
  }
  // Outside the probe's contract nothing is launched.
  const auto x = at::zeros({64, 24}, cuda);
  auto y = at::zeros({64, 64}, cuda.dtype(at::kFloat));
  EXPECT_FALSE(xd::kernels::wgmma_probe_gemm(x.data_ptr(), x.data_ptr(), y.data_ptr<float>(), 24,
                                             at::cuda::getCurrentCUDAStream()));
}

// b MN-major ("transposed" descriptor), a from shared memory and from registers: the
// forms of the wgmma forward's, scan's and backward's products (64 and 72 columns).
TEST(WgmmaCuda, MnMajorProductsMatchFloat64) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::manual_seed(13);
  const auto cuda = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const auto stream = at::cuda::getCurrentCUDAStream();
  struct Form { int N; bool registers_a; };
  for (const Form form : {Form{72, false}, Form{72, true}, Form{64, false}, Form{64, true}}) {
    for (int K : {16, 64, 128}) {
      const auto a = at::randn({64, K}, cuda), b = at::randn({K, form.N}, cuda);
      auto c = at::full({64, form.N}, std::nan(""), cuda.dtype(at::kFloat));
      if (!xd::kernels::wgmma_probe_mn_major(a.data_ptr(), b.data_ptr(), c.data_ptr<float>(), K, form.N,
                                             form.registers_a, stream))
        GTEST_SKIP() << "wgmma needs a compute capability 9.0 device";
      const auto ref = at::matmul(a.to(at::kDouble), b.to(at::kDouble));
      const double err = xd::test::rel_err(c, ref);
      const std::string label = std::string(form.registers_a ? "a from registers" : "a in shared memory") +
                                " N=" + std::to_string(form.N) + " K=" + std::to_string(K);
      EXPECT_LE(err, 1e-5) << label << ": relative L2 error " << err << "; " << xd::test::worst(c, ref);
      if (err > 1e-5) {
        auto swapped = at::full({64, form.N}, std::nan(""), cuda.dtype(at::kFloat));
        xd::kernels::wgmma_probe_mn_major(a.data_ptr(), b.data_ptr(), swapped.data_ptr<float>(), K, form.N,
                                          form.registers_a, stream, /*swap_offsets=*/true);
        ADD_FAILURE() << label << " with the two offset fields exchanged: relative L2 error "
                      << xd::test::rel_err(swapped, ref);
      }
    }
  }
  // Outside the probe's forms nothing is launched.
  const auto x = at::zeros({64, 16}, cuda);
  auto y = at::zeros({64, 80}, cuda.dtype(at::kFloat));
  EXPECT_FALSE(xd::kernels::wgmma_probe_mn_major(x.data_ptr(), x.data_ptr(), y.data_ptr<float>(), 16, 80, false,
                                                 stream));
}

}  // namespace
