// Inference against the full forward (CPU, float32): chunked prefill with several
// chunk sizes plus decode steps, for the student and the teacher; a batch of
// mixed-length requests against the same requests one at a time.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "ops/window_heads.h"
#include "xdistill/infer/engine.h"
#include "xdistill/infer/window_prefill.h"
#include "xdistill/models/decoder.h"
#include "xdistill/ops/window_attention.h"
#include "xdistill/student/student_model.h"

using namespace xd;

namespace {

std::shared_ptr<models::Decoder> tiny_teacher(int64_t sliding_window = 0) {
  nlohmann::json c = {{"model_type", "llama"},    {"hidden_size", 32},       {"intermediate_size", 48},
                      {"num_hidden_layers", 2},   {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                      {"vocab_size", 61},         {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-5},
                      {"rope_theta", 10000.0},    {"tie_word_embeddings", false}};
  auto config = models::parse_model_config(c, "test");
  auto plan = models::plan_from_config(config);
  for (auto& b : plan) b.sliding_window = sliding_window;
  auto model = std::make_shared<models::Decoder>(config, plan, at::TensorOptions().dtype(at::kFloat));
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  for (auto& item : model->named_parameters(true)) {
    if (item.key().find("norm") != std::string::npos) item.value().uniform_(0.8, 1.2);
    else item.value().normal_(0, 0.3);
  }
  model->eval();
  return model;
}

// A student away from its initialisation (every new parameter matters), with a
// short window so that rows slide past it and the sinks take part.
std::shared_ptr<models::Decoder> tiny_student() {
  student::StudentConfig s;
  s.window = 7;
  s.sinks = 3;
  auto model = student::student_from_teacher(*tiny_teacher(), s);
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  for (auto& [name, p] : model->new_parameters()) p.add_(torch::randn_like(p) * 0.3);
  return model;
}

// n ids from torch's global generator (tests seed it first).
std::vector<int64_t> random_ids(int64_t n) {
  auto t = torch::randint(0, 61, {n}, at::TensorOptions().dtype(at::kLong));
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + n);
}

at::Tensor as_tensor(const std::vector<int64_t>& ids) { return torch::tensor(ids, at::kLong).view({1, -1}); }

// Prefill `prompt` in chunks, then feed `rest` one token at a time; the logits of
// every fed position after the prompt's last, [1 + rest, V].
at::Tensor incremental_logits(std::shared_ptr<models::Decoder> model, const std::vector<int64_t>& prompt,
                              const std::vector<int64_t>& rest, int64_t chunk) {
  infer::InferenceEngine engine(model, 1, prompt.size() + rest.size() + 1, {chunk, true});
  std::vector<at::Tensor> out{engine.prefill({prompt}).clone()};
  for (int64_t t : rest) out.push_back(engine.step(torch::tensor({t}, at::kLong)).clone());
  return torch::cat(out, 0);
}

void expect_incremental_equals_full(std::shared_ptr<models::Decoder> model) {
  torch::manual_seed(11);
  const auto ids = random_ids(40);
  const std::vector<int64_t> prompt(ids.begin(), ids.begin() + 29), rest(ids.begin() + 29, ids.end());
  torch::NoGradGuard no_grad;
  const at::Tensor full = model->forward(as_tensor(ids)).squeeze(0).narrow(0, 28, 12);  // positions 28..39
  for (int64_t chunk : {0, 1, 7, 16}) {
    const at::Tensor inc = incremental_logits(model, prompt, rest, chunk);
    // The full forward runs the mLSTM chunkwise, decoding runs it step by step: the
    // two orders of float32 rounding differ by ~1e-5 relative.
    const double tolerance = 1e-4 * std::max(1.0, full.abs().max().item<double>());
    EXPECT_LE((inc - full).abs().max().item<double>(), tolerance)
        << "chunk " << chunk << ": max |diff| " << (inc - full).abs().max().item<double>();
  }
}

}  // namespace

TEST(WindowPrefill, ContinuingFromTheCacheEqualsTheFullWindowAttention) {
  torch::manual_seed(5);
  const int64_t B = 2, H = 6, S = 37, D = 8, window = 6, sinks = 2;
  for (int64_t Hk : {H, int64_t{2}}) {  // one key/value head per query head, and groups of 3
    const auto q = torch::randn({B, H, S, D}), k = torch::randn({B, Hk, S, D}), v = torch::randn({B, Hk, S, D});
    const auto full = ops::reference::window_attention_dense(q, ops::repeat_kv(k, H), ops::repeat_kv(v, H), window, sinks);
    for (int64_t chunk : {1, 2, 5, 9, 37}) {
      ops::WindowCache cache(B, Hk, D, window, sinks, q.options());
      std::vector<at::Tensor> parts;
      for (int64_t s = 0; s < S; s += chunk) {
        const int64_t n = std::min(chunk, S - s);
        parts.push_back(infer::window_attention_continue(q.narrow(2, s, n), k.narrow(2, s, n), v.narrow(2, s, n), cache));
      }
      const auto got = torch::cat(parts, 2);
      EXPECT_TRUE(torch::allclose(got, full, 1e-5, 1e-6)) << "Hk " << Hk << ", chunk " << chunk;
      EXPECT_EQ(cache.length, S);
    }
  }
}

TEST(Inference, StudentChunkedPrefillAndStepsEqualTheFullForward) { expect_incremental_equals_full(tiny_student()); }

TEST(Inference, StudentModelCacheContinuesAPrefill) {
  // The model's own cache path (HybridCore::forward_cached) with several chunks.
  auto model = tiny_student();
  torch::manual_seed(12);
  const auto ids = as_tensor(random_ids(30));
  torch::NoGradGuard no_grad;
  const auto full = model->forward(ids);
  auto cache = model->new_cache(1);
  std::vector<at::Tensor> parts;
  for (int64_t s = 0; s < 30; s += 8) parts.push_back(model->forward(ids.narrow(1, s, std::min<int64_t>(8, 30 - s)), cache.get()));
  EXPECT_TRUE(torch::allclose(torch::cat(parts, 1), full, 1e-4, 1e-5));
}

TEST(Inference, TeacherChunkedPrefillAndStepsEqualTheFullForward) { expect_incremental_equals_full(tiny_teacher()); }

TEST(Inference, SlidingWindowTeacherEqualsTheFullForward) { expect_incremental_equals_full(tiny_teacher(5)); }

TEST(Inference, TeacherLongCacheDecodesInKeyBlocks) {
  // Capacity beyond one key block (256): the cache is allocated in blocks and decode
  // sums the blocks' products.
  auto model = tiny_teacher();
  torch::manual_seed(13);
  const auto ids = random_ids(600);
  torch::NoGradGuard no_grad;
  const at::Tensor full = model->forward(as_tensor(ids)).squeeze(0).narrow(0, 589, 11);
  const at::Tensor inc = incremental_logits(model, std::vector<int64_t>(ids.begin(), ids.begin() + 590),
                                            std::vector<int64_t>(ids.begin() + 590, ids.end()), 128);
  EXPECT_TRUE(torch::allclose(inc, full, 1e-4, 1e-5)) << "max |diff| " << (inc - full).abs().max().item<double>();
}

TEST(Inference, MixedLengthBatchEqualsRequestsOneAtATime) {
  for (auto model : {tiny_student(), tiny_teacher()}) {
    torch::manual_seed(21);
    std::vector<std::vector<int64_t>> prompts;
    for (int64_t n : {13, 5, 13, 21, 1}) prompts.push_back(random_ids(n));
    infer::GreedyOptions options;
    options.max_new_tokens = 9;
    options.batch_size = 5;
    options.engine.prefill_chunk = 4;
    const auto batched = infer::generate_greedy(model, prompts, options);
    options.batch_size = 1;
    const auto alone = infer::generate_greedy(model, prompts, options);
    EXPECT_EQ(batched, alone);
    // Logits close too: the first decode step of a batch against each row alone.
    infer::InferenceEngine batch_engine(model, 5, 40, {4, true});
    const auto first = batch_engine.prefill(prompts).argmax(-1);
    const auto logits = batch_engine.step(first).clone();
    for (int64_t r = 0; r < 5; ++r) {
      infer::InferenceEngine one(model, 1, 40, {4, true});
      const auto l0 = one.prefill({prompts[r]});
      EXPECT_TRUE(torch::allclose(l0.argmax(-1), first.narrow(0, r, 1)));
      const auto l1 = one.step(first.narrow(0, r, 1));
      EXPECT_TRUE(torch::allclose(l1, logits.narrow(0, r, 1), 1e-4, 1e-5)) << "row " << r;
    }
  }
}

TEST(Inference, StudentEngineStepsEqualTheModelsOwnCacheSteps) {
  // The engine's batched step (fixed buffers, per-row positions) against the
  // student's own cache path, which it must reproduce operation for operation.
  auto model = tiny_student();
  torch::manual_seed(11);
  const auto ids = random_ids(40);
  torch::NoGradGuard no_grad;
  auto cache = model->new_cache(1);
  std::vector<at::Tensor> parts{model->forward(as_tensor(ids).narrow(1, 0, 29), cache.get()).select(1, -1)};
  for (int i = 29; i < 39; ++i) parts.push_back(model->forward(as_tensor(ids).narrow(1, i, 1), cache.get()).select(1, -1));
  const auto own = torch::cat(parts, 0);
  const std::vector<int64_t> prompt(ids.begin(), ids.begin() + 29), rest(ids.begin() + 29, ids.end() - 1);
  const auto inc = incremental_logits(model, prompt, rest, 0);
  EXPECT_TRUE(torch::allclose(inc, own, 1e-5, 2e-5)) << "max |diff| " << (inc - own).abs().max().item<double>();
}
