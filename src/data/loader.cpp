#include "xdistill/data/loader.h"

#include <cmath>
#include <filesystem>
#include <limits>

#include "data/random.h"
#include "xdistill/data/shard_set.h"
#include "xdistill/util/error.h"
#include "xdistill/util/log.h"

namespace xd::data {
using nlohmann::json;

namespace {
constexpr const char* kStateFormat = "xdistill-loader-state";
constexpr int kStateVersion = 1;
// Distinct streams derived from the one user seed.
constexpr uint64_t kPickStream = 0x70696b6bull, kPermutationStream = 0x7065726dull;
}  // namespace

struct MixtureLoader::Impl {
  struct Source {
    MixtureSource spec;
    ShardSet set;
    int64_t rows = 0;              // rows per epoch
    int64_t taken = 0;             // rows taken so far, all ranks together
    int64_t permutation_epoch = -1;
    std::vector<int64_t> permutation;
  };

  std::vector<Source> sources;
  std::vector<double> cumulative;  // normalised cumulative weights, last == 1
  int64_t seq_len = 0;
  uint64_t seed = 0;
  int rank = 0, world = 1;
  int64_t global_rows = 0;
  std::vector<uint32_t> row_tokens;
  std::vector<uint8_t> row_mask;

  void set_weights() {
    double total = 0;
    for (const Source& s : sources) {
      if (!(s.spec.weight >= 0) || !std::isfinite(s.spec.weight))
        throw Error("data mixture: source '" + s.spec.name + "' has weight " + std::to_string(s.spec.weight) +
                    "; weights must be finite and >= 0");
      total += s.spec.weight;
    }
    if (!(total > 0)) throw Error("data mixture: the weights sum to 0; give at least one source a positive weight");
    cumulative.clear();
    double running = 0;
    for (const Source& s : sources) cumulative.push_back((running += s.spec.weight) / total);
    cumulative.back() = 1.0;
    for (const Source& s : sources)
      if (s.spec.weight > 0 && s.rows == 0)
        throw Error(s.spec.path + ": source '" + s.spec.name + "' has " + std::to_string(s.set.tokens()) +
                    " tokens, fewer than one row of seq_len + 1 = " + std::to_string(seq_len + 1));
  }

  size_t pick(int64_t global_row) const {
    const double u = unit_interval(hash2(seed ^ kPickStream, uint64_t(global_row)));
    for (size_t i = 0; i < cumulative.size(); ++i)
      if (u < cumulative[i]) return i;
    return cumulative.size() - 1;
  }

  int64_t row_index(size_t index, int64_t cursor) {
    Source& s = sources[index];
    const int64_t epoch = cursor / s.rows;
    if (epoch != s.permutation_epoch) {
      s.permutation = seeded_permutation(s.rows, hash2(hash2(seed ^ kPermutationStream, index), epoch));
      s.permutation_epoch = epoch;
    }
    return s.permutation[cursor % s.rows];
  }

  void copy_row(size_t index, int64_t row, Batch& batch, int64_t out_row) {
    const ShardSet& set = sources[index].set;
    set.read(row * seq_len, seq_len + 1, row_tokens.data(), row_mask.data());
    int32_t* inputs = batch.inputs.data() + out_row * seq_len;
    int32_t* targets = batch.targets.data() + out_row * seq_len;
    uint8_t* mask = batch.loss_mask.data() + out_row * seq_len;
    for (int64_t t = 0; t <= seq_len; ++t)
      if (row_tokens[t] > uint32_t(std::numeric_limits<int32_t>::max()))
        throw Error(set.dir() + ": token id " + std::to_string(row_tokens[t]) + " in row " + std::to_string(row) +
                    " does not fit int32 (corrupted shard?)");
    for (int64_t t = 0; t < seq_len; ++t) {
      inputs[t] = static_cast<int32_t>(row_tokens[t]);
      targets[t] = static_cast<int32_t>(row_tokens[t + 1]);
      mask[t] = row_mask[t + 1];
    }
    batch.source[out_row] = static_cast<int32_t>(index);
  }
};

MixtureLoader::MixtureLoader(std::vector<MixtureSource> sources, int64_t seq_len, uint64_t seed, int rank,
                             int world, const std::string& expected_fingerprint, LoaderOptions options)
    : impl_(std::make_unique<Impl>()) {
  if (sources.empty()) throw Error("data mixture: no sources (data.mixture is empty)");
  if (seq_len < 1) throw Error("data loader: seq_len must be >= 1, got " + std::to_string(seq_len));
  if (world < 1 || rank < 0 || rank >= world)
    throw Error("data loader: rank " + std::to_string(rank) + " is not in [0, world=" + std::to_string(world) + ")");
  Impl& d = *impl_;
  d.seq_len = seq_len;
  d.seed = seed;
  d.rank = rank;
  d.world = world;
  d.row_tokens.resize(seq_len + 1);
  d.row_mask.resize(seq_len + 1);
  for (MixtureSource& spec : sources) {
    if (spec.name.empty()) spec.name = std::filesystem::path(spec.path).lexically_normal().filename().string();
    if (spec.name.empty()) spec.name = spec.path;
    ShardSet set = ShardSet::open(spec.path, options.verify_checksums);
    set.check_fingerprint(expected_fingerprint);
    if (!d.sources.empty() && set.manifest().tokenizer.fingerprint != d.sources[0].set.manifest().tokenizer.fingerprint)
      throw Error("data mixture: sources '" + d.sources[0].spec.name + "' and '" + spec.name +
                  "' were tokenized with different tokenizers (fingerprints " +
                  d.sources[0].set.manifest().tokenizer.fingerprint + " and " + set.manifest().tokenizer.fingerprint + ")");
    const int64_t rows = set.tokens() > 0 ? (set.tokens() - 1) / seq_len : 0;
    d.sources.push_back({std::move(spec), std::move(set), rows, 0, -1, {}});
  }
  d.set_weights();
}

MixtureLoader::~MixtureLoader() = default;
MixtureLoader::MixtureLoader(MixtureLoader&&) noexcept = default;
MixtureLoader& MixtureLoader::operator=(MixtureLoader&&) noexcept = default;

Batch MixtureLoader::next(int64_t rows) {
  if (rows < 1) throw Error("data loader: next() needs rows >= 1, got " + std::to_string(rows));
  Impl& d = *impl_;
  Batch batch;
  batch.rows = rows;
  batch.seq_len = d.seq_len;
  batch.inputs.resize(rows * d.seq_len);
  batch.targets.resize(rows * d.seq_len);
  batch.loss_mask.resize(rows * d.seq_len);
  batch.source.resize(rows);
  // Every rank walks all global rows so that the per-source cursors stay identical
  // everywhere; only this rank's rows are read.
  for (int64_t r = 0; r < rows; ++r) {
    for (int w = 0; w < d.world; ++w) {
      const size_t index = d.pick(d.global_rows++);
      const int64_t cursor = d.sources[index].taken++;
      if (w == d.rank) d.copy_row(index, d.row_index(index, cursor), batch, r);
    }
  }
  return batch;
}

json MixtureLoader::state() const {
  const Impl& d = *impl_;
  json sources = json::array();
  for (const auto& s : d.sources)
    sources.push_back({{"name", s.spec.name}, {"path", s.spec.path}, {"weight", s.spec.weight},
                       {"rows_per_epoch", s.rows}, {"rows_taken", s.taken}});
  return {{"format", kStateFormat}, {"version", kStateVersion}, {"seed", d.seed}, {"seq_len", d.seq_len},
          {"global_rows", d.global_rows}, {"sources", sources}};
}

void MixtureLoader::restore(const json& state) {
  Impl& d = *impl_;
  const std::string what = "data loader state";
  try {
    if (state.at("format").get<std::string>() != kStateFormat || state.at("version").get<int>() > kStateVersion)
      throw Error(what + ": unknown format or a newer version");
    if (state.at("seed").get<uint64_t>() != d.seed)
      throw Error(what + ": saved with seed " + std::to_string(state.at("seed").get<uint64_t>()) +
                  ", the loader has seed " + std::to_string(d.seed));
    if (state.at("seq_len").get<int64_t>() != d.seq_len)
      throw Error(what + ": saved with seq_len " + std::to_string(state.at("seq_len").get<int64_t>()) +
                  ", the loader has seq_len " + std::to_string(d.seq_len));
    const json& saved = state.at("sources");
    if (saved.size() != d.sources.size())
      throw Error(what + ": saved with " + std::to_string(saved.size()) + " mixture sources, the loader has " +
                  std::to_string(d.sources.size()));
    std::vector<int64_t> taken;
    for (size_t i = 0; i < d.sources.size(); ++i) {
      const auto& s = d.sources[i];
      const std::string name = saved[i].at("name").get<std::string>();
      if (name != s.spec.name || saved[i].at("rows_per_epoch").get<int64_t>() != s.rows)
        throw Error(what + ": source " + std::to_string(i) + " was '" + name + "' with " +
                    std::to_string(saved[i].at("rows_per_epoch").get<int64_t>()) + " rows per epoch; now it is '" +
                    s.spec.name + "' with " + std::to_string(s.rows) + " (the mixture or its shards changed)");
      if (saved[i].at("weight").get<double>() != s.spec.weight)
        log::warn("data mixture: weight of '", s.spec.name, "' changed on resume: ", saved[i].at("weight").get<double>(),
                  " -> ", s.spec.weight);
      taken.push_back(saved[i].at("rows_taken").get<int64_t>());
      if (taken.back() < 0) throw Error(what + ": negative rows_taken");
    }
    for (size_t i = 0; i < d.sources.size(); ++i) d.sources[i].taken = taken[i];
    d.global_rows = state.at("global_rows").get<int64_t>();
  } catch (const json::exception& e) {
    throw Error(what + ": malformed: " + e.what());
  }
}

size_t MixtureLoader::num_sources() const { return impl_->sources.size(); }
const MixtureSource& MixtureLoader::source(size_t i) const { return impl_->sources.at(i).spec; }
const Manifest& MixtureLoader::manifest(size_t i) const { return impl_->sources.at(i).set.manifest(); }
int64_t MixtureLoader::rows_per_epoch(size_t i) const { return impl_->sources.at(i).rows; }
int64_t MixtureLoader::rows_taken(size_t i) const { return impl_->sources.at(i).taken; }
int64_t MixtureLoader::global_rows() const { return impl_->global_rows; }
int64_t MixtureLoader::seq_len() const { return impl_->seq_len; }

std::vector<MixtureSource> mixture_from_records(const std::vector<config::Record>& records) {
  std::vector<MixtureSource> out;
  for (const config::Record& r : records) {
    MixtureSource s;
    if (!r.has("path")) throw UsageError(r.where() + ": missing 'path'");
    s.path = r.get<std::string>("path");
    if (r.has("weight")) s.weight = r.get<double>("weight");
    if (r.has("name")) s.name = r.get<std::string>("name");
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace xd::data
