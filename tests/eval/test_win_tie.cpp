// Win-and-tie math on hand-computed cases (method.md §4).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "xdistill/eval/win_tie.h"
#include "xdistill/util/error.h"

using namespace xd::eval;

TEST(WinTie, ThresholdHigherIsBetter) {
  EXPECT_DOUBLE_EQ(tie_threshold(0.8, 0.9, true), 0.0);   // student better
  EXPECT_DOUBLE_EQ(tie_threshold(0.8, 0.8, true), 0.0);   // tie
  EXPECT_NEAR(tie_threshold(0.5, 0.45, true), 0.1, 1e-15);
  EXPECT_NEAR(tie_threshold(0.8, 0.2, true), 0.75, 1e-15);
  EXPECT_DOUBLE_EQ(tie_threshold(0.8, 0.0, true), 1.0);   // a zero student wins only at α = 1
}

TEST(WinTie, ThresholdLowerIsBetter) {
  // Perplexity: the student wins or ties when S ≤ (1 + α)·T.
  EXPECT_DOUBLE_EQ(tie_threshold(10.0, 9.0, false), 0.0);
  EXPECT_NEAR(tie_threshold(10.0, 11.0, false), 0.1, 1e-12);
  EXPECT_NEAR(tie_threshold(4.0, 10.0, false), 1.5, 1e-12);  // beyond [0, 1]: never within the paper's range
  EXPECT_TRUE(wins_or_ties(10.0, 11.0, false, 0.1));
  EXPECT_FALSE(wins_or_ties(10.0, 11.0, false, 0.0999));
  EXPECT_FALSE(wins_or_ties(10.0, 9.0, true, 0.05));  // 9 ≥ 0.95·10 fails the higher-is-better test
}

TEST(WinTie, TeacherScoresZero) {
  // Higher is better: S ≥ (1 − α)·0 holds for any S ≥ 0, so the student always wins.
  EXPECT_DOUBLE_EQ(tie_threshold(0.0, 0.0, true), 0.0);
  EXPECT_DOUBLE_EQ(tie_threshold(0.0, 0.3, true), 0.0);
  EXPECT_FALSE(recovery(0.0, 0.3, true).has_value());
  // Lower is better: only a zero student ties.
  EXPECT_DOUBLE_EQ(tie_threshold(0.0, 0.0, false), 0.0);
  EXPECT_TRUE(std::isinf(tie_threshold(0.0, 0.1, false)));
  EXPECT_FALSE(wins_or_ties(0.0, 0.1, false, 1.0));
}

TEST(WinTie, BoundaryCounts) {
  // (1 − 0.1)·0.8 is 0.7200000000000001 in binary floating point; the boundary still counts.
  EXPECT_TRUE(wins_or_ties(0.8, 0.72, true, 0.1));
  EXPECT_FALSE(wins_or_ties(0.8, 0.7199, true, 0.1));
  EXPECT_TRUE(wins_or_ties(0.5, 0.45, true, 0.1));
  EXPECT_DOUBLE_EQ(c_alpha({tie_threshold(0.8, 0.72, true)}, 0.1), 1.0);
  EXPECT_NEAR(*alpha_star({tie_threshold(0.8, 0.72, true)}), 0.1, 1e-12);
}

TEST(WinTie, RejectsNegativeOrNonFiniteScores) {
  EXPECT_THROW(tie_threshold(-0.1, 0.5, true, "x"), xd::Error);
  EXPECT_THROW(tie_threshold(0.5, std::nan(""), true, "x"), xd::Error);
  try {
    tie_threshold(0.5, -1.0, true, "mcc_task");
    FAIL();
  } catch (const xd::Error& e) {
    EXPECT_NE(std::string(e.what()).find("mcc_task"), std::string::npos);
  }
}

TEST(WinTie, HandComputedEightBenchmarks) {
  // Teacher/student pairs with thresholds 0, 0.1, 0.05, 0, 0.2, 0.05, 0.2, 0.1 (last: perplexity).
  const std::vector<double> t = {tie_threshold(0.80, 0.80, true), tie_threshold(0.50, 0.45, true),
                                 tie_threshold(0.80, 0.76, true), tie_threshold(0.80, 0.82, true),
                                 tie_threshold(0.75, 0.60, true), tie_threshold(0.60, 0.57, true),
                                 tie_threshold(0.50, 0.40, true), tie_threshold(10.0, 11.0, false)};
  EXPECT_DOUBLE_EQ(c_alpha(t, 0.0), 2.0 / 8);
  EXPECT_DOUBLE_EQ(c_alpha(t, 0.04), 2.0 / 8);
  EXPECT_DOUBLE_EQ(c_alpha(t, 0.05), 4.0 / 8);
  EXPECT_DOUBLE_EQ(c_alpha(t, 0.1), 6.0 / 8);
  EXPECT_DOUBLE_EQ(c_alpha(t, 0.19), 6.0 / 8);
  EXPECT_DOUBLE_EQ(c_alpha(t, 0.2), 1.0);
  // C_α ≥ 0.5 first at the 4th smallest threshold.
  EXPECT_NEAR(*alpha_star(t), 0.05, 1e-12);

  const auto curve = c_alpha_curve(t, 0.5);
  ASSERT_EQ(curve.size(), 4u);
  EXPECT_DOUBLE_EQ(curve[0].alpha, 0.0);
  EXPECT_DOUBLE_EQ(curve[0].c, 0.25);
  EXPECT_NEAR(curve[1].alpha, 0.05, 1e-12);
  EXPECT_DOUBLE_EQ(curve[1].c, 0.5);
  EXPECT_NEAR(curve[2].alpha, 0.1, 1e-12);
  EXPECT_DOUBLE_EQ(curve[2].c, 0.75);
  EXPECT_NEAR(curve[3].alpha, 0.2, 1e-12);
  EXPECT_DOUBLE_EQ(curve[3].c, 1.0);
}

TEST(WinTie, AlphaStarOddCountsAndLossless) {
  EXPECT_NEAR(*alpha_star({0.3, 0.1, 0.2}), 0.2, 1e-15);  // needs 2 of 3
  EXPECT_DOUBLE_EQ(*alpha_star({0.0, 0.0, 0.4}), 0.0);    // lossless: C_0 = 2/3
  EXPECT_DOUBLE_EQ(*alpha_star({0.0, 0.4}), 0.0);         // exactly half counts (C_0 = 0.5)
  EXPECT_NEAR(*alpha_star({0.0, 0.4, 0.3}), 0.3, 1e-15);
  EXPECT_DOUBLE_EQ(*alpha_star({0.0}), 0.0);
}

TEST(WinTie, AlphaStarUndefined) {
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(alpha_star({}).has_value());
  EXPECT_FALSE(alpha_star({inf, inf, 0.0}).has_value());
  EXPECT_FALSE(alpha_star({1.5, 1.2}).has_value());              // beyond α = 1
  EXPECT_NEAR(*alpha_star({0.6, 0.7}), 0.6, 1e-15);              // defined on [0, 1] ...
  EXPECT_FALSE(alpha_star({0.6, 0.7}, 0.5).has_value());         // ... but not on [0, 0.5]
  EXPECT_DOUBLE_EQ(*alpha_star({1.0, 1.0}), 1.0);                // all students score 0: α* = 1
}

TEST(WinTie, Recovery) {
  EXPECT_DOUBLE_EQ(*recovery(0.5, 0.45, true), 0.9);
  EXPECT_DOUBLE_EQ(*recovery(10.0, 12.5, false), 0.8);  // lower is better: A_T / A_S
  EXPECT_FALSE(recovery(10.0, 0.0, false).has_value());
}

TEST(WinTie, CurveMergesEqualThresholdsAndClipsAtAlphaMax) {
  const auto curve = c_alpha_curve({0.1, 0.1, 0.3, 0.7}, 0.5);
  ASSERT_EQ(curve.size(), 3u);
  EXPECT_DOUBLE_EQ(curve[0].c, 0.0);
  EXPECT_DOUBLE_EQ(curve[1].alpha, 0.1);
  EXPECT_DOUBLE_EQ(curve[1].c, 0.5);
  EXPECT_DOUBLE_EQ(curve[2].alpha, 0.3);
  EXPECT_DOUBLE_EQ(curve[2].c, 0.75);
}
