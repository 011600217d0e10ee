#include "xdistill/train/batch_source.h"

#include "xdistill/tokenizer/tokenizer.h"
#include "xdistill/util/error.h"

namespace xd::train {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class SyntheticSource : public BatchSource {
 public:
  SyntheticSource(int64_t vocab, int64_t seq_len, uint64_t seed, int rank, int world, int64_t period)
      : vocab_(vocab), seq_len_(seq_len), seed_(seed), rank_(rank), world_(world), period_(period) {
    XD_CHECK(vocab >= 8, "data.synthetic_vocab: must be >= 8 (got ", vocab, ")");
  }

  data::Batch next(int64_t rows) override {
    data::Batch b;
    b.rows = rows;
    b.seq_len = seq_len_;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t index = global_ + r * world_ + rank_;
      if (period_ > 0) index %= period_;
      const uint64_t g = static_cast<uint64_t>(index);
      const uint64_t h = splitmix64(seed_ * 0x100000001b3ull ^ g);
      const int64_t start = static_cast<int64_t>(h % static_cast<uint64_t>(vocab_));
      const int64_t stride = 1 + static_cast<int64_t>((h >> 32) % 7);
      for (int64_t t = 0; t <= seq_len_; ++t) {
        const int32_t token = static_cast<int32_t>((start + stride * t) % vocab_);
        if (t < seq_len_) b.inputs.push_back(token);
        if (t > 0) b.targets.push_back(token);
      }
      b.source.push_back(0);
    }
    b.loss_mask.assign(static_cast<size_t>(rows * seq_len_), 1);
    global_ += rows * world_;
    return b;
  }

  nlohmann::json state() const override {
    return {{"kind", "synthetic"}, {"global_rows", global_}, {"seed", seed_}, {"seq_len", seq_len_}, {"vocab", vocab_}};
  }

  void restore(const nlohmann::json& s) override {
    XD_CHECK(s.value("kind", "") == "synthetic" && s.value("seed", uint64_t{0}) == seed_ &&
                 s.value("seq_len", int64_t{0}) == seq_len_ && s.value("vocab", int64_t{0}) == vocab_,
             "data state: the checkpoint's synthetic data (", s.dump(), ") differs from the recipe's");
    global_ = s.at("global_rows").get<int64_t>();
  }

  std::string describe() const override { return "synthetic rows over " + std::to_string(vocab_) + " ids"; }

 private:
  int64_t vocab_, seq_len_;
  uint64_t seed_;
  int rank_, world_;
  int64_t period_;
  int64_t global_ = 0;
};

class MixtureSource : public BatchSource {
 public:
  explicit MixtureSource(data::MixtureLoader loader) : loader_(std::move(loader)) {}
  data::Batch next(int64_t rows) override { return loader_.next(rows); }
  nlohmann::json state() const override { return loader_.state(); }
  void restore(const nlohmann::json& s) override { loader_.restore(s); }
  std::string describe() const override {
    std::string out;
    for (size_t i = 0; i < loader_.num_sources(); ++i)
      out += (i ? ", " : "") + loader_.source(i).name + " (" + std::to_string(loader_.source(i).weight) + ")";
    return "mixture: " + out;
  }

 private:
  data::MixtureLoader loader_;
};

}  // namespace

std::unique_ptr<BatchSource> synthetic_source(int64_t vocab, int64_t seq_len, uint64_t seed, int rank, int world,
                                              int64_t period) {
  return std::make_unique<SyntheticSource>(vocab, seq_len, seed, rank, world, period);
}

std::unique_ptr<BatchSource> make_batch_source(const TrainRecipe& r, int rank, int world) {
  if (r.synthetic_vocab > 0)
    return synthetic_source(r.synthetic_vocab, r.seq_len, r.seed, rank, world, r.synthetic_rows);
  std::vector<data::MixtureSource> sources;
  for (const auto& s : r.mixture) sources.push_back({s.path, s.weight, s.name});
  // The fingerprint check is the loader's; an empty one only makes the sets agree.
  const std::string fingerprint = r.tokenizer.empty() ? std::string() : tok::Tokenizer::load(r.tokenizer).fingerprint();
  return std::make_unique<MixtureSource>(
      data::MixtureLoader(std::move(sources), r.seq_len, r.seed, rank, world, fingerprint));
}

int64_t row_key(const data::Batch& b, int64_t row) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a over the row's tokens, then mixed
  auto add = [&](int32_t token) {
    const auto u = static_cast<uint32_t>(token);
    for (int byte = 0; byte < 4; ++byte) {
      h ^= (u >> (8 * byte)) & 0xffu;
      h *= 0x100000001b3ull;
    }
  };
  const size_t begin = static_cast<size_t>(row * b.seq_len);
  for (int64_t t = 0; t < b.seq_len; ++t) add(b.inputs[begin + t]);
  add(b.targets[begin + b.seq_len - 1]);
  return static_cast<int64_t>(splitmix64(h) >> 1);
}

}  // namespace xd::train
