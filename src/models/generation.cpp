#include "xdistill/models/generation.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "xdistill/models/language_model.h"
#include "xdistill/util/error.h"

namespace xd::models {
namespace {

// splitmix64: a small, portable generator, so that a seed gives the same samples
// on every machine and device.
uint64_t next_random(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
double uniform01(uint64_t& state) { return (next_random(state) >> 11) * (1.0 / 9007199254740992.0); }

// Samples one token from a row of logits with temperature and top-p, as HF's
// TemperatureLogitsWarper + TopPLogitsWarper: sort ascending, drop the tokens whose
// cumulative probability stays <= 1 - top_p (always keeping the most likely one).
int64_t sample_row(const double* logits, int64_t vocab, double temperature, double top_p, uint64_t& rng) {
  std::vector<int64_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[a] < logits[b]; });
  const double max_logit = logits[order.back()] / temperature;
  std::vector<double> probs(vocab);
  double total = 0;
  for (int64_t i = 0; i < vocab; ++i) total += probs[i] = std::exp(logits[order[i]] / temperature - max_logit);
  int64_t first_kept = 0;
  if (top_p < 1.0) {
    double cumulative = 0;
    while (first_kept < vocab - 1 && (cumulative += probs[first_kept] / total) <= 1.0 - top_p) ++first_kept;
  }
  double kept = 0;
  for (int64_t i = first_kept; i < vocab; ++i) kept += probs[i];
  double u = uniform01(rng) * kept;
  for (int64_t i = vocab - 1; i >= first_kept; --i) {  // most likely first: rounding leftovers land there
    if ((u -= probs[i]) < 0) return order[i];
  }
  return order[vocab - 1];
}

}  // namespace

std::vector<int64_t> pick_next_tokens(const at::Tensor& logits, const GenerationOptions& options, uint64_t& rng_state) {
  XD_CHECK(logits.dim() == 2, "next-token logits must be [batch, vocab]");
  if (options.temperature <= 0.0) {
    const at::Tensor ids = logits.argmax(-1).to(at::kCPU, at::kLong).contiguous();
    return std::vector<int64_t>(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + ids.numel());
  }
  const at::Tensor host = logits.to(at::kCPU, at::kDouble).contiguous();
  std::vector<int64_t> out;
  for (int64_t b = 0; b < host.size(0); ++b)
    out.push_back(sample_row(host[b].data_ptr<double>(), host.size(1), options.temperature, options.top_p, rng_state));
  return out;
}

std::vector<std::vector<int64_t>> generate(LanguageModel& model, const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerationOptions& options) {
  if (options.max_new_tokens < 0) throw UsageError("max-new must be >= 0");
  if (options.top_p <= 0.0 || options.top_p > 1.0) throw UsageError("top-p must be in (0, 1]");
  if (options.temperature < 0.0) throw UsageError("temperature must be >= 0");
  at::NoGradGuard no_grad;
  std::vector<std::vector<int64_t>> results(prompts.size());
  // Rows advance together through one cache, so batch prompts of equal length.
  std::map<size_t, std::vector<size_t>> by_length;
  for (size_t i = 0; i < prompts.size(); ++i) {
    XD_CHECK(!prompts[i].empty(), "prompt ", i, " is empty");
    by_length[prompts[i].size()].push_back(i);
  }
  uint64_t rng = options.seed;
  const int64_t batch_size = std::max<int64_t>(1, options.batch_size);
  for (const auto& [length, rows_all] : by_length) {
    for (size_t first = 0; first < rows_all.size(); first += batch_size) {
      const std::vector<size_t> rows(rows_all.begin() + first,
                                     rows_all.begin() + std::min(rows_all.size(), first + batch_size));
      const int64_t B = rows.size(), T = length;
      if (options.max_new_tokens == 0) continue;
      at::Tensor ids = at::empty({B, T}, at::kLong);
      for (int64_t b = 0; b < B; ++b)
        std::copy(prompts[rows[b]].begin(), prompts[rows[b]].end(), ids[b].data_ptr<int64_t>());
      auto cache = model.new_cache(B, T + options.max_new_tokens);
      at::Tensor logits = model.next_token_logits(ids, cache.get());
      std::vector<bool> done(B, false);
      for (int64_t step = 0; step < options.max_new_tokens; ++step) {
        const std::vector<int64_t> next = pick_next_tokens(logits, options, rng);
        bool all_done = true;
        for (int64_t b = 0; b < B; ++b) {
          if (done[b]) continue;
          results[rows[b]].push_back(next[b]);
          const auto& stops = options.stop_ids;
          done[b] = std::find(stops.begin(), stops.end(), next[b]) != stops.end();
          all_done = all_done && done[b];
        }
        if (all_done || step + 1 == options.max_new_tokens) break;
        logits = model.next_token_logits(at::tensor(next, at::kLong).view({B, 1}), cache.get());
      }
    }
  }
  return results;
}

}  // namespace xd::models
