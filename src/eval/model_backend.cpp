#include "xdistill/eval/model_backend.h"

#include <torch/torch.h>

#include <algorithm>
#include <map>
#include <numeric>

#include "xdistill/models/generation.h"
#include "xdistill/models/language_model.h"
#include "xdistill/tokenizer/chat_template.h"
#include "xdistill/util/error.h"
#include "xdistill/util/log.h"
#include "xdistill/util/progress.h"

namespace xd::eval {

ModelBackend::ModelBackend(std::shared_ptr<models::LanguageModel> model, tok::Tokenizer tokenizer,
                           BackendOptions options)
    : model_(std::move(model)), encoder_(std::move(tokenizer), options.add_bos), options_(options) {
  max_length_ = options.max_length > 0 ? options.max_length : model_->config().max_position_embeddings;
  if (max_length_ <= 0) max_length_ = 2048;
  if (encoder_.tokenizer().vocab_size() > model_->config().vocab_size)
    log::warn("the tokenizer has ", encoder_.tokenizer().vocab_size(), " ids but the model's vocabulary only ",
              model_->config().vocab_size, "; texts with the extra ids will fail");
}

int64_t ModelBackend::batch_for(int64_t tokens) const {
  int64_t b = options_.batch_size;
  if (b <= 0) {
    // Auto: the batch's float32 logits within a budget (512 MiB on CPU, 4 GiB on a GPU).
    const double budget = model_->device().is_cuda() ? double(1 << 30) : double(1 << 27);
    const double per_row = double(std::max<int64_t>(tokens, 1)) * model_->config().vocab_size;
    b = std::clamp<int64_t>(static_cast<int64_t>(budget / per_row), 1, 512);
  }
  return batch_cap_ > 0 ? std::min(b, batch_cap_) : b;
}

namespace {

// One row as the model reads it: at most max_length input tokens, the scored
// continuation at its end.
struct Row {
  std::vector<int64_t> input, targets;  // targets: the last targets.size() tokens of input + 1
};

Row make_row(const TokenRequest& r, int64_t max_length) {
  std::vector<int64_t> full = r.context;
  full.insert(full.end(), r.continuation.begin(), r.continuation.end());
  if (static_cast<int64_t>(full.size()) > max_length + 1) full.erase(full.begin(), full.end() - (max_length + 1));
  Row row;
  row.input.assign(full.begin(), full.end() - 1);
  const size_t scored = std::min(r.continuation.size(), row.input.size());
  row.targets.assign(full.end() - scored, full.end());
  return row;
}

// Σ log p(target) and whether each target is the arg-max, for the rows of one batch.
void score_batch(models::LanguageModel& model, const std::vector<const Row*>& rows, int64_t pad,
                 std::vector<LoglikelihoodAnswer*>& out) {
  const int64_t width = static_cast<int64_t>(rows.front()->input.size());
  at::Tensor ids = at::full({static_cast<int64_t>(rows.size()), width}, pad, at::kLong);
  auto acc = ids.accessor<int64_t, 2>();
  for (size_t b = 0; b < rows.size(); ++b)
    for (size_t t = 0; t < rows[b]->input.size(); ++t) acc[b][t] = rows[b]->input[t];
  const at::Tensor logits = model.forward(ids.to(model.device()));
  for (size_t b = 0; b < rows.size(); ++b) {
    const int64_t len = static_cast<int64_t>(rows[b]->input.size());
    const int64_t n = static_cast<int64_t>(rows[b]->targets.size());
    const at::Tensor logp = logits[b].slice(0, len - n, len).log_softmax(-1);
    const at::Tensor targets = at::tensor(rows[b]->targets, at::kLong).to(logp.device());
    const at::Tensor picked = logp.gather(1, targets.unsqueeze(1)).squeeze(1).to(at::kDouble);
    out[b]->logprob = picked.sum().item<double>();
    out[b]->greedy = logp.argmax(-1).eq(targets).all().item<bool>();
    out[b]->tokens = n;
  }
}

}  // namespace

std::vector<LoglikelihoodAnswer> ModelBackend::score(const std::vector<TokenRequest>& requests,
                                                     const std::string& label) {
  at::NoGradGuard no_grad;
  std::vector<Row> rows;
  rows.reserve(requests.size());
  for (const auto& r : requests) rows.push_back(make_row(r, max_length_));
  // An empty continuation scores 0 (log 1) without a forward.
  std::vector<size_t> order;
  for (size_t i = 0; i < rows.size(); ++i)
    if (!rows[i].targets.empty()) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return rows[a].input.size() > rows[b].input.size(); });

  std::vector<LoglikelihoodAnswer> answers(rows.size(), LoglikelihoodAnswer{0.0, true, 0});
  Progress progress(label, static_cast<int64_t>(order.size()), "req");
  for (size_t first = 0; first < order.size();) {
    const int64_t b = batch_for(static_cast<int64_t>(rows[order[first]].input.size()));
    const size_t last = std::min(order.size(), first + static_cast<size_t>(b));
    std::vector<const Row*> batch;
    std::vector<LoglikelihoodAnswer*> out;
    for (size_t i = first; i < last; ++i) batch.push_back(&rows[order[i]]), out.push_back(&answers[order[i]]);
    try {
      score_batch(*model_, batch, encoder_.prefix_token(), out);
    } catch (const c10::OutOfMemoryError&) {
      if (options_.batch_size > 0 || b == 1) throw;
      batch_cap_ = std::max<int64_t>(1, b / 2);
      log::warn("out of memory at batch size ", b, "; retrying with ", batch_cap_);
      continue;
    }
    progress.advance(static_cast<int64_t>(last - first));
    first = last;
  }
  progress.finish();
  return answers;
}

std::vector<LoglikelihoodAnswer> ModelBackend::loglikelihood(const std::vector<LoglikelihoodQuery>& queries,
                                                             const std::string& label) {
  std::vector<TokenRequest> requests;
  for (const auto& q : queries) requests.push_back(encoder_.encode_pair(q.context, q.continuation));
  return score(requests, label);
}

std::vector<LoglikelihoodAnswer> ModelBackend::loglikelihood_rolling(const std::vector<std::string>& texts,
                                                                     int64_t max_length, const std::string& label) {
  const int64_t window = max_length > 0 ? std::min(max_length, max_length_) : max_length_;
  std::vector<TokenRequest> requests;
  std::vector<size_t> owner;
  for (size_t i = 0; i < texts.size(); ++i) {
    // The harness encodes rolling texts without special tokens; the prefix token starts them.
    const auto ids32 = encoder_.tokenizer().encode(texts[i], false);
    for (auto& w : rolling_windows(TokenIds(ids32.begin(), ids32.end()), encoder_.prefix_token(), window)) {
      requests.push_back(std::move(w));
      owner.push_back(i);
    }
  }
  const auto scored = score(requests, label);
  std::vector<LoglikelihoodAnswer> out(texts.size());
  for (auto& a : out) a.greedy = true;
  for (size_t r = 0; r < scored.size(); ++r) {
    auto& a = out[owner[r]];
    a.logprob += scored[r].logprob;
    a.tokens += scored[r].tokens;
    a.greedy = a.greedy && scored[r].greedy;
  }
  return out;
}

std::vector<std::string> ModelBackend::generate_until(const std::vector<GenerationQuery>& queries,
                                                      const std::string& label) {
  std::vector<int64_t> stop_ids = model_->config().eos_token_ids;
  if (auto eos = encoder_.tokenizer().eos_id()) stop_ids.push_back(*eos);
  std::vector<std::vector<int64_t>> prompts(queries.size());
  for (size_t i = 0; i < queries.size(); ++i) {
    prompts[i] = encoder_.encode(queries[i].prompt);
    const int64_t room = std::max<int64_t>(1, max_length_ - queries[i].max_new_tokens);
    if (static_cast<int64_t>(prompts[i].size()) > room) prompts[i].erase(prompts[i].begin(), prompts[i].end() - room);
    if (prompts[i].empty()) prompts[i].push_back(encoder_.prefix_token());
  }
  // Equal budgets and lengths together: models::generate batches rows of equal length.
  std::vector<size_t> order(queries.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::make_pair(queries[a].max_new_tokens, prompts[a].size()) <
           std::make_pair(queries[b].max_new_tokens, prompts[b].size());
  });
  std::vector<std::string> texts(queries.size());
  Progress progress(label, static_cast<int64_t>(queries.size()), "gen");
  for (size_t first = 0; first < order.size();) {
    const int64_t budget = queries[order[first]].max_new_tokens;
    models::GenerationOptions opt;
    opt.max_new_tokens = budget;
    opt.stop_ids = stop_ids;
    opt.batch_size = batch_for(static_cast<int64_t>(prompts[order[first]].size()) + budget);
    size_t last = first;
    std::vector<std::vector<int64_t>> chunk;
    while (last < order.size() && queries[order[last]].max_new_tokens == budget &&
           chunk.size() < static_cast<size_t>(4 * opt.batch_size))
      chunk.push_back(prompts[order[last++]]);
    const auto generated = models::generate(*model_, chunk, opt);
    for (size_t k = 0; k < generated.size(); ++k) {
      std::vector<int32_t> ids(generated[k].begin(), generated[k].end());
      if (!ids.empty() && std::find(stop_ids.begin(), stop_ids.end(), ids.back()) != stop_ids.end()) ids.pop_back();
      const auto& q = queries[order[first + k]];
      texts[order[first + k]] = cut_at_stop(encoder_.tokenizer().decode(ids, /*skip_special_tokens=*/true), q.until);
    }
    progress.advance(static_cast<int64_t>(last - first));
    first = last;
  }
  progress.finish();
  return texts;
}

std::string ModelBackend::apply_chat_template(const std::string& user_message) {
  return tok::render_chat(encoder_.tokenizer(), {{"user", user_message}}, /*add_generation_prompt=*/true).text;
}

}  // namespace xd::eval
