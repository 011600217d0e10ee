// Incremental decoding on any LanguageModel: greedy, temperature and top-p
// sampling, stop tokens. (No torch in this header: command files include it.)
#pragma once
#include <cstdint>
#include <vector>

namespace at { class Tensor; }

namespace xd::models {

class LanguageModel;

struct GenerationOptions {
  int64_t max_new_tokens = 32;
  double temperature = 0.0;  // 0: greedy (arg-max, first index on ties, as torch.argmax)
  double top_p = 1.0;        // nucleus: smallest set of tokens whose probability reaches top_p
  uint64_t seed = 0;         // sampling is reproducible for a seed, on any device
  std::vector<int64_t> stop_ids;  // a row ends after emitting one of these (it is included)
  int64_t batch_size = 8;    // rows of equal prompt length decoded together
};

// For each prompt, the new tokens (at most max_new_tokens; ends at a stop token,
// which is kept). Prompts of equal length are decoded as one batch.
std::vector<std::vector<int64_t>> generate(LanguageModel& model, const std::vector<std::vector<int64_t>>& prompts,
                                           const GenerationOptions& options);

// Picks the next token of each row from float32 logits [B, vocab] (any device).
// Exposed for tests; `rng_state` is advanced (one draw per sampled row).
std::vector<int64_t> pick_next_tokens(const at::Tensor& logits, const GenerationOptions& options, uint64_t& rng_state);

}  // namespace xd::models
