// What the command line prints for a LibTorch error: the cause, not its C++ stack trace.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "xdistill/util/error.h"

TEST(ErrorMessages, LibTorchBacktraceIsCutAndTheCauseKept) {
  std::string raw;
  try {
    (void)at::ones({2, 3}).view({4});  // shape '[4]' is invalid for input of size 6
  } catch (const std::exception& e) {
    raw = e.what();
  }
  ASSERT_FALSE(raw.empty()) << "the view should have thrown";
  const std::string shown = xd::message_without_backtrace(raw);
  EXPECT_NE(shown.find("invalid for input of size 6"), std::string::npos) << shown;
  EXPECT_EQ(shown.find("Exception raised from"), std::string::npos) << shown;
  EXPECT_EQ(shown.find("frame #"), std::string::npos) << shown;
}

TEST(ErrorMessages, OurOwnMessagesPassUnchanged) {
  const std::string ours = "model.safetensors: tensor 'x' has offsets [0,8) beyond the file's 4 bytes";
  EXPECT_EQ(xd::message_without_backtrace(ours), ours);
}
