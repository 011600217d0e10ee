// The inference engine: prefill of rows grouped by prompt length, the decode step
// (eager or replayed from a CUDA graph), and greedy generation over it.
#include "xdistill/infer/engine.h"

#include <algorithm>
#include <cstdlib>
#include <numeric>

#include "infer/cuda_graph.h"
#include "infer/decode_state.h"
#include "xdistill/util/error.h"
#include "xdistill/util/log.h"

namespace xd::infer {
namespace {

bool switched_off_by_env(const char* name) {
  const char* env = std::getenv(name);
  return env && std::string(env) == "0";
}

}  // namespace

InferenceEngine::InferenceEngine(std::shared_ptr<models::Decoder> model, int64_t batch, int64_t capacity,
                                 EngineOptions options)
    : model_(std::move(model)), options_(options) {
  XD_CHECK(model_ != nullptr, "inference: no model");
  XD_CHECK(options_.prefill_chunk >= 0, "inference: prefill chunk must be >= 0");
  const bool fused = options_.fused_step && !switched_off_by_env("XDISTILL_FUSED_STEP");
  state_ = std::make_unique<DecodeState>(model_, batch, capacity, fused);
  if (options_.cuda_graph && !switched_off_by_env("XDISTILL_CUDA_GRAPH") && cuda_graphs_available(model_->device())) {
    // Captured before any prefill: the warm-up steps only touch buffers that the
    // prefill overwrites (or masks), so no state has to be saved around them.
    DecodeState* s = state_.get();
    graph_ = GraphedStep::capture([s] { s->step(); }, model_->device());
    s->positions.zero_();
  }
}

InferenceEngine::~InferenceEngine() = default;

bool InferenceEngine::is_student() const { return state_->is_student(); }
bool InferenceEngine::uses_fused_step() const { return state_->uses_fused_step(); }
int64_t InferenceEngine::batch() const { return state_->batch(); }

at::Tensor InferenceEngine::prefill(const std::vector<std::vector<int64_t>>& prompts) {
  const int64_t B = state_->batch();
  XD_CHECK(static_cast<int64_t>(prompts.size()) == B, "prefill: ", prompts.size(), " prompts for a batch of ", B);
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> logits;
  // Runs of equal length prefill together (one batched forward per chunk).
  for (int64_t first = 0; first < B;) {
    const size_t length = prompts[first].size();
    XD_CHECK(length >= 1, "prefill: prompt ", first, " is empty");
    int64_t last = first + 1;
    while (last < B && prompts[last].size() == length) ++last;
    at::Tensor ids = at::empty({last - first, static_cast<int64_t>(length)}, at::kLong);
    for (int64_t r = first; r < last; ++r) std::copy(prompts[r].begin(), prompts[r].end(), ids[r - first].data_ptr<int64_t>());
    logits.push_back(state_->prefill_rows(first, ids, options_.prefill_chunk));
    first = last;
  }
  return at::cat(logits, 0);
}

at::Tensor InferenceEngine::step(const at::Tensor& tokens) {
  const int64_t B = state_->batch();
  XD_CHECK(tokens.numel() == B, "decode step: ", tokens.numel(), " tokens for a batch of ", B);
  for (int64_t r = 0; r < B; ++r)
    XD_CHECK(state_->lengths[r] >= 1 && state_->lengths[r] < state_->capacity(), "decode step: row ", r, " at length ",
             state_->lengths[r], " (capacity ", state_->capacity(), "; prefill first)");
  state_->tokens.copy_(tokens.reshape({B}));
  if (graph_) graph_->replay();
  else state_->step();
  for (auto& length : state_->lengths) ++length;
  return state_->logits;
}

std::vector<std::vector<int64_t>> generate_greedy(std::shared_ptr<models::Decoder> model,
                                                  const std::vector<std::vector<int64_t>>& prompts,
                                                  const GreedyOptions& options) {
  XD_CHECK(options.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0");
  std::vector<std::vector<int64_t>> results(prompts.size());
  if (options.max_new_tokens == 0 || prompts.empty()) return results;
  // Longest first, so that equal lengths sit together and batches are similar.
  std::vector<size_t> order(prompts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return prompts[a].size() > prompts[b].size(); });
  const size_t batch_size = std::max<int64_t>(1, options.batch_size);
  for (size_t first = 0; first < order.size(); first += batch_size) {
    const std::vector<size_t> rows(order.begin() + first, order.begin() + std::min(order.size(), first + batch_size));
    std::vector<std::vector<int64_t>> batch_prompts;
    int64_t capacity = 0;
    for (size_t r : rows) {
      batch_prompts.push_back(prompts[r]);
      capacity = std::max<int64_t>(capacity, prompts[r].size() + options.max_new_tokens);
    }
    const int64_t B = rows.size();
    InferenceEngine engine(model, B, capacity, options.engine);
    at::Tensor logits = engine.prefill(batch_prompts);
    std::vector<bool> done(B, false);
    for (int64_t step = 0; step < options.max_new_tokens; ++step) {
      const at::Tensor next = logits.argmax(-1);
      const at::Tensor host = next.to(at::kCPU).contiguous();
      bool all_done = true;
      for (int64_t b = 0; b < B; ++b) {
        if (done[b]) continue;
        const int64_t token = host.data_ptr<int64_t>()[b];
        results[rows[b]].push_back(token);
        done[b] = std::find(options.stop_ids.begin(), options.stop_ids.end(), token) != options.stop_ids.end();
        all_done = all_done && done[b];
      }
      if (all_done || step + 1 == options.max_new_tokens) break;
      logits = engine.step(next);
    }
  }
  return results;
}

}  // namespace xd::infer
