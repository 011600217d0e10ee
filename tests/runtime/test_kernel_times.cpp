#include <gtest/gtest.h>

#include "xdistill/runtime/kernel_profile.h"

using xd::runtime::format_kernel_times;
using xd::runtime::KernelTime;
using xd::runtime::short_kernel_name;

TEST(KernelNames, ReturnTypeAndParametersAreCutTemplatesKept) {
  EXPECT_EQ(short_kernel_name("void xd::mlstm_fwd<__nv_bfloat16, 64>(Params, int)"), "xd::mlstm_fwd<__nv_bfloat16, 64>");
  EXPECT_EQ(short_kernel_name("void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float>(float*, int)"),
            "at::native::cunn_SoftMaxForward<4, float>");
  EXPECT_EQ(short_kernel_name("nvjet_tst_128x256_64x4_2x1_v_bz_coopA_TNT"), "nvjet_tst_128x256_64x4_2x1_v_bz_coopA_TNT");
  EXPECT_EQ(short_kernel_name("Memcpy DtoD (Device -> Device)"), "Memcpy DtoD");
  const std::string long_name(300, 'k');
  EXPECT_EQ(short_kernel_name(long_name).size(), 110u);
}

TEST(KernelTable, SharesPerStepAndTheRestSummed) {
  const std::vector<KernelTime> times = {{"gemm", 600, 6}, {"mixer", 300, 3}, {"norm", 60, 6}, {"copy", 40, 2}};
  const std::string table = format_kernel_times(times, "decode", 2, 2.0);
  // Per step: 300 us of gemm (60 % of 1000), 150 of mixer (30 %), the rest 50 us (10 %) over 4 launches.
  EXPECT_NE(table.find("     300.0  60.0%      3.0  gemm"), std::string::npos) << table;
  EXPECT_NE(table.find("     150.0  30.0%      1.5  mixer"), std::string::npos) << table;
  EXPECT_NE(table.find("      50.0  10.0%      4.0  (2 other kernels)"), std::string::npos) << table;
  EXPECT_NE(table.find("     500.0 100.0%           total GPU time (per step)"), std::string::npos) << table;
}
