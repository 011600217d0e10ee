// The mixture loader: packing, epochs, proportions, determinism, rank split, exact resume.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "xdistill/data/loader.h"
#include "xdistill/data/shard_writer.h"
#include "xdistill/util/error.h"

namespace fs = std::filesystem;
using namespace xd::data;

namespace {

// Removes this process's scratch directory when the test binary exits.
struct ScratchCleanup {
  ~ScratchCleanup() {
    std::error_code ec;
    fs::remove_all(fs::temp_directory_path() / ("xd_data_loader_" + std::to_string(::getpid())), ec);
  }
} scratch_cleanup;

// A shard set whose token i of the stream is `base + i`, so a row tells where it
// came from; its loss mask is 0 on every third token. Several shards, uneven documents.
std::string make_set(const std::string& name, int64_t base, int64_t tokens, const std::string& fingerprint = "fp") {
  const fs::path dir = fs::temp_directory_path() / ("xd_data_loader_" + std::to_string(::getpid())) / name;
  ShardWriterOptions o;
  o.tokenizer.fingerprint = fingerprint;
  o.tokens_per_shard = 97;
  ShardWriter w(dir.string(), o);
  int64_t next = 0, doc = 0;
  while (next < tokens) {
    const int64_t length = std::min<int64_t>(tokens - next, 1 + (doc++ * 37) % 50);
    std::vector<int32_t> ids;
    std::vector<uint8_t> mask;
    for (int64_t i = 0; i < length; ++i, ++next) {
      ids.push_back(static_cast<int32_t>(base + next));
      mask.push_back(next % 3 != 0);
    }
    w.add_document(ids, mask);
  }
  w.finish();
  return dir.string();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const xd::Error& e) {
    return e.what();
  }
  return "<no error>";
}

constexpr int64_t kBase[3] = {0, 1000000, 2000000};

class LoaderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    set_a = make_set("a", kBase[0], 1000);
    set_b = make_set("b", kBase[1], 700);
    set_c = make_set("c", kBase[2], 1300);
  }
  static std::vector<MixtureSource> mixture(double wa = 0.5, double wb = 0.3, double wc = 0.2) {
    return {{set_a, wa, "a"}, {set_b, wb, "b"}, {set_c, wc, "c"}};
  }
  static std::string set_a, set_b, set_c;
};
std::string LoaderTest::set_a, LoaderTest::set_b, LoaderTest::set_c;

// Row start of every row of a batch, as "source:stream offset".
std::vector<int64_t> row_starts(const Batch& b) {
  std::vector<int64_t> starts;
  for (int64_t r = 0; r < b.rows; ++r) starts.push_back(b.inputs[r * b.seq_len]);
  return starts;
}

bool same_batch(const Batch& x, const Batch& y) {
  return x.inputs == y.inputs && x.targets == y.targets && x.loss_mask == y.loss_mask && x.source == y.source;
}

}  // namespace

TEST_F(LoaderTest, RowsArePackedStreamWindowsWithShiftedTargets) {
  const int64_t L = 16;
  MixtureLoader loader({{set_a, 1.0, "a"}}, L, 7, 0, 1, "fp");
  EXPECT_EQ(loader.rows_per_epoch(0), (1000 - 1) / L);
  const Batch b = loader.next(5);
  ASSERT_EQ(b.inputs.size(), size_t(5 * L));
  for (int64_t r = 0; r < b.rows; ++r) {
    const int64_t start = b.inputs[r * L];
    EXPECT_EQ(start % L, 0) << "rows start on the row grid";
    for (int64_t t = 0; t < L; ++t) {
      EXPECT_EQ(b.inputs[r * L + t], start + t);
      EXPECT_EQ(b.targets[r * L + t], start + t + 1);
      EXPECT_EQ(b.loss_mask[r * L + t], (start + t + 1) % 3 != 0) << "the mask is the target's";
    }
  }
}

TEST_F(LoaderTest, EachEpochVisitsEveryRowOnceInANewOrder) {
  const int64_t L = 10;
  MixtureLoader loader({{set_b, 1.0, "b"}}, L, 3, 0, 1, "");
  const int64_t rows = loader.rows_per_epoch(0);
  ASSERT_EQ(rows, 69);
  const auto first = row_starts(loader.next(rows));
  const auto second = row_starts(loader.next(rows));
  std::set<int64_t> expected;
  for (int64_t j = 0; j < rows; ++j) expected.insert(kBase[1] + j * L);
  EXPECT_EQ(std::set<int64_t>(first.begin(), first.end()), expected);
  EXPECT_EQ(std::set<int64_t>(second.begin(), second.end()), expected);
  EXPECT_NE(first, second);
}

TEST_F(LoaderTest, MixtureProportionsWithinSamplingError) {
  MixtureLoader loader(mixture(), 4, 11, 0, 1, "fp");
  const int64_t n = 30000;
  std::vector<int64_t> counts(3, 0);
  const Batch b = loader.next(n);
  for (int64_t r = 0; r < n; ++r) {
    const int32_t s = b.source[r];
    ++counts[s];
    ASSERT_EQ(b.inputs[r * 4] / 1000000, s) << "the row came from the source it is labelled with";
  }
  const double p[3] = {0.5, 0.3, 0.2};
  for (int i = 0; i < 3; ++i) {
    const double sigma = std::sqrt(n * p[i] * (1 - p[i]));
    EXPECT_LT(std::abs(counts[i] - n * p[i]), 4 * sigma) << "source " << i << " count " << counts[i];
    EXPECT_EQ(loader.rows_taken(i), counts[i]);
  }
  // A weight of zero is never drawn.
  MixtureLoader none_of_b(mixture(0.5, 0.0, 0.5), 4, 11, 0, 1, "fp");
  const Batch nb = none_of_b.next(2000);
  for (int32_t s : nb.source) ASSERT_NE(s, 1);
}

TEST_F(LoaderTest, DeterministicGivenSeed) {
  MixtureLoader x(mixture(), 8, 42, 0, 1, "fp"), y(mixture(), 8, 42, 0, 1, "fp"), z(mixture(), 8, 43, 0, 1, "fp");
  for (int i = 0; i < 5; ++i) {
    const Batch bx = x.next(7), by = y.next(7), bz = z.next(7);
    EXPECT_TRUE(same_batch(bx, by));
    if (i == 0) {
      EXPECT_FALSE(same_batch(bx, bz));
    }
  }
}

TEST_F(LoaderTest, ExactResumeAfterStateRoundTrip) {
  const int64_t L = 8, rows = 9;
  MixtureLoader reference(mixture(), L, 5, 0, 1, "fp");
  MixtureLoader first(mixture(), L, 5, 0, 1, "fp");
  // Run through several epochs of the small sources before saving.
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(same_batch(reference.next(rows), first.next(rows)));
  const std::string saved = first.state().dump();
  MixtureLoader resumed(mixture(), L, 5, 0, 1, "fp");
  resumed.restore(nlohmann::json::parse(saved));
  EXPECT_EQ(resumed.state(), first.state());
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(same_batch(reference.next(rows), resumed.next(rows))) << "batch " << i;
}

TEST_F(LoaderTest, RanksTakeInterleavedGlobalRowsAndShareOneState) {
  const int64_t L = 8, rows = 4;
  const int world = 3;
  MixtureLoader single(mixture(), L, 9, 0, 1, "fp");
  std::vector<MixtureLoader> ranks;
  for (int r = 0; r < world; ++r) ranks.emplace_back(mixture(), L, 9, r, world, "fp");
  for (int step = 0; step < 6; ++step) {
    const Batch all = single.next(rows * world);
    for (int r = 0; r < world; ++r) {
      const Batch b = ranks[r].next(rows);
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t global = i * world + r;  // rank r of W takes every W-th global row
        ASSERT_TRUE(std::equal(b.inputs.begin() + i * L, b.inputs.begin() + (i + 1) * L,
                               all.inputs.begin() + global * L));
        ASSERT_EQ(b.source[i], all.source[global]);
      }
    }
  }
  EXPECT_EQ(ranks[0].state(), ranks[2].state());
  EXPECT_EQ(ranks[0].state(), single.state());
  // The state resumes under another world size too: no global row repeats or is skipped.
  MixtureLoader two(mixture(), L, 9, 1, 2, "fp");
  two.restore(ranks[1].state());
  const Batch next_two = two.next(3), next_single = single.next(6);
  for (int64_t i = 0; i < 3; ++i)
    ASSERT_TRUE(std::equal(next_two.inputs.begin() + i * L, next_two.inputs.begin() + (i + 1) * L,
                           next_single.inputs.begin() + (2 * i + 1) * L));
}

TEST_F(LoaderTest, ClearErrors) {
  EXPECT_NE(error_of([&] { MixtureLoader({{set_a, 1.0, "a"}}, 8, 1, 0, 1, "other-fp"); }).find("different tokenizer"),
            std::string::npos);
  const std::string odd = make_set("odd_fingerprint", 0, 100, "fp2");
  EXPECT_NE(error_of([&] { MixtureLoader({{set_a, 1.0, "a"}, {odd, 1.0, "odd"}}, 8, 1, 0, 1, ""); })
                .find("different tokenizers"),
            std::string::npos);
  EXPECT_NE(error_of([&] { MixtureLoader({{set_a, 1.0, "a"}}, 1000, 1, 0, 1, "fp"); }).find("fewer than one row"),
            std::string::npos);
  EXPECT_NE(error_of([&] { MixtureLoader({{set_a, 1.0, "a"}}, 8, 1, 2, 2, "fp"); }).find("rank"), std::string::npos);
  EXPECT_NE(error_of([&] { MixtureLoader(mixture(0, 0, 0), 8, 1, 0, 1, "fp"); }).find("sum to 0"),
            std::string::npos);
  MixtureLoader loader(mixture(), 8, 1, 0, 1, "fp");
  MixtureLoader other_len(mixture(), 16, 1, 0, 1, "fp");
  EXPECT_NE(error_of([&] { loader.restore(other_len.state()); }).find("seq_len"), std::string::npos);
  MixtureLoader other_seed(mixture(), 8, 2, 0, 1, "fp");
  EXPECT_NE(error_of([&] { loader.restore(other_seed.state()); }).find("seed"), std::string::npos);
  MixtureLoader fewer({{set_a, 1.0, "a"}}, 8, 1, 0, 1, "fp");
  EXPECT_NE(error_of([&] { loader.restore(fewer.state()); }).find("mixture sources"), std::string::npos);
}
