// The training-data loader: a weighted mixture of shard sets, cut into packed rows.
//
// Rows. Each shard set is one token stream (documents concatenated, each ending in
// EOS when the set was prepared with append_eos; no resets at document boundaries,
// ../spec/method.md §2.5). Row j of a set holds stream tokens [j*L, j*L + L + 1) for
// context length L: inputs are its first L tokens, targets the last L, so consecutive
// rows overlap by one token and every token is a target exactly once per epoch. The
// tail of fewer than L + 1 tokens is not used.
//
// Order. Global row g goes to the source picked by a counter-based generator
// hash(seed, g) against the normalised weights. Each source is read through a seeded
// permutation of its rows; when it is exhausted the next epoch re-permutes it.
// Rank r of W takes global rows r, r + W, r + 2W, ...; every rank must call next()
// with the same row count, so the state is the same on every rank.
//
// State. state() is the global row counter and, per source, how many rows were
// taken. restore() continues exactly there: no row repeats, none is skipped (also
// with a different world size). Weights may change on restore; seq_len, seed and
// the sources may not.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xdistill/config/config.h"
#include "xdistill/data/manifest.h"

namespace xd::data {

struct MixtureSource {
  std::string path;     // shard-set directory
  double weight = 1.0;  // sampling weight, normalised over the mixture
  std::string name;     // display name; defaults to the directory's name
};

// Row-major [rows, seq_len]. loss_mask[i] = 1 when targets[i] is a training target.
struct Batch {
  std::vector<int32_t> inputs, targets;
  std::vector<uint8_t> loss_mask;
  std::vector<int32_t> source;  // per row: index of the mixture source it came from
  int64_t rows = 0, seq_len = 0;
};

struct LoaderOptions {
  bool verify_checksums = false;  // SHA-256 of every shard file at open (reads all data once)
};

class MixtureLoader {
 public:
  // Opens every set and checks its tokenizer fingerprint against `expected_fingerprint`
  // (empty: the sets only have to agree with each other).
  MixtureLoader(std::vector<MixtureSource> sources, int64_t seq_len, uint64_t seed, int rank, int world,
                const std::string& expected_fingerprint, LoaderOptions options = {});
  ~MixtureLoader();
  MixtureLoader(MixtureLoader&&) noexcept;
  MixtureLoader& operator=(MixtureLoader&&) noexcept;

  // The next `rows` rows of this rank (consumes rows * world global rows).
  Batch next(int64_t rows);

  nlohmann::json state() const;
  // Throws xd::Error if the state belongs to another seed, seq_len or set of sources.
  void restore(const nlohmann::json& state);

  size_t num_sources() const;
  const MixtureSource& source(size_t index) const;
  const Manifest& manifest(size_t index) const;
  int64_t rows_per_epoch(size_t index) const;
  int64_t rows_taken(size_t index) const;  // over all ranks
  int64_t global_rows() const;
  int64_t seq_len() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The `data.mixture` records of a train recipe ({path, weight, name}).
std::vector<MixtureSource> mixture_from_records(const std::vector<config::Record>& records);

}  // namespace xd::data
