// Where training rows come from: the data loader's weighted mixture of token
// shards, or synthetic rows (tiny recipes and benchmarks need no data on disk).
// Both are rank-aware and resumable: state() / restore() continue exactly.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>

#include "xdistill/data/loader.h"
#include "xdistill/train/recipe.h"

namespace xd::train {

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual data::Batch next(int64_t rows) = 0;
  virtual nlohmann::json state() const = 0;
  virtual void restore(const nlohmann::json& state) = 0;
  virtual std::string describe() const = 0;
};

// Synthetic rows: each row counts upwards from a random start by a random stride
// (1..7) modulo `vocab`, so the next token is predictable from the context; every
// row is a pure function of (seed, global row index).
// With period > 0 the rows repeat: global row g is row g % period.
std::unique_ptr<BatchSource> synthetic_source(int64_t vocab, int64_t seq_len, uint64_t seed, int rank, int world,
                                              int64_t period = 0);

// The recipe's source: data.mixture through the data loader, or synthetic rows.
std::unique_ptr<BatchSource> make_batch_source(const TrainRecipe& recipe, int rank, int world);

// A stable key of a row's content (its seq_len input tokens and its last target):
// the teacher cache is keyed by it, so it does not depend on the order of rows.
int64_t row_key(const data::Batch& batch, int64_t row);

}  // namespace xd::train
