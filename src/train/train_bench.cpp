// `xdistill bench-train`: the training step of Stage I or II on random-weight models
// of a named shape, built directly on the device (no checkpoint on disk). Prints
// tokens/s, model-FLOPs utilisation and peak memory (the figures of anchors.md).
#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include <chrono>
#include <cstdio>

#include "session.h"
#include "xdistill/runtime/device.h"
#include "xdistill/runtime/kernel_profile.h"
#include "xdistill/student/hybrid_mixer.h"
#include "xdistill/train/trainer.h"
#include "xdistill/util/error.h"
#include "xdistill/util/log.h"

namespace xd::train {

nlohmann::json shape_config(const std::string& shape) {
  nlohmann::json llama3_rope = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  nlohmann::json c = {{"model_type", "llama"}, {"rms_norm_eps", 1e-5}, {"rope_theta", 500000.0},
                      {"hidden_act", "silu"}, {"max_position_embeddings", 131072}, {"vocab_size", 128256},
                      {"rope_scaling", llama3_rope}, {"bos_token_id", 128000}, {"eos_token_id", 128001}};
  if (shape == "llama-8b") {  // Llama-3.1-8B
    c.update({{"hidden_size", 4096}, {"intermediate_size", 14336}, {"num_hidden_layers", 32},
              {"num_attention_heads", 32}, {"num_key_value_heads", 8}, {"tie_word_embeddings", false}});
  } else if (shape == "llama-3b") {  // Llama-3.2-3B
    llama3_rope["factor"] = 32.0;
    c.update({{"hidden_size", 3072}, {"intermediate_size", 8192}, {"num_hidden_layers", 28},
              {"num_attention_heads", 24}, {"num_key_value_heads", 8}, {"head_dim", 128},
              {"tie_word_embeddings", true}, {"rope_scaling", llama3_rope}});
  } else if (shape == "tiny") {  // for trying the benchmark on a CPU
    c.update({{"hidden_size", 64}, {"intermediate_size", 160}, {"num_hidden_layers", 2},
              {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"vocab_size", 512},
              {"tie_word_embeddings", false}});
  } else {
    throw UsageError("--shape: '" + shape + "' is not one of llama-8b, llama-3b, tiny");
  }
  return c;
}

namespace {

// Where a step's GPU time goes: one step under the kernel profiler.
void print_kernel_profile(const std::function<void()>& step, const at::Device& device, int top) {
  if (!device.is_cuda()) {
    std::printf("bench-train --profile: needs a CUDA device\n");
    return;
  }
  runtime::KernelProfile profiler;
  profiler.start();
  const auto start = std::chrono::steady_clock::now();
  step();
  torch::cuda::synchronize();
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const auto times = profiler.stop();
  std::printf("%s", runtime::format_kernel_times(times, "profile of one step: wall " + std::to_string(wall_ms) +
                                                            " ms (profiler on)", top).c_str());
  std::fflush(stdout);
}

}  // namespace

void run_train_benchmark(const TrainBenchmark& b) {
  XD_CHECK(b.stage == "align" || b.stage == "distill", "--stage: '", b.stage, "' is not one of align, distill");
  XD_CHECK(b.batch >= 1 && b.seq >= 2 && b.steps >= 1 && b.warmup >= 0, "bench-train: batch, seq, steps must be positive");
  student::register_student();
  TrainSession s;
  s.device = at::Device(runtime::resolve_device(b.device));
  s.compute_dtype = s.device.is_cuda() ? at::kBFloat16 : at::kFloat;
  TrainRecipe& r = s.recipe;
  r.stage = b.stage == "align" ? Stage::Align : Stage::Distill;
  r.seq_len = b.seq;
  r.micro_batch = b.batch;
  r.activation_checkpointing = b.activation_checkpointing && r.stage == Stage::Distill;
  r.peak_tflops = b.peak_tflops;
  if (b.chunk_size != 0) r.student.chunk_size = b.chunk_size;  // checked with the student config below
  r.schedule = LrSchedule{ScheduleKind::WarmupConstant, r.stage == Stage::Align ? 1e-3 : 1e-5, 0.0, 0, 1 << 30};

  const models::ModelConfig config = models::parse_model_config(shape_config(b.shape), b.shape);
  r.synthetic_vocab = config.vocab_size;
  const auto options = at::TensorOptions().device(s.device).dtype(s.compute_dtype);
  auto teacher = std::make_shared<models::Decoder>(config, models::plan_from_config(config), options);
  init_random_weights(*teacher, 1);
  for (auto& p : teacher->parameters(true)) p.set_requires_grad(false);
  s.model = student::student_from_teacher(*teacher, r.student);
  if (r.stage == Stage::Align) {
    s.teacher = teacher;
  } else {
    teacher.reset();  // Stage II's figure takes the teacher's top-k as given
    const int64_t k = r.top_k;
    auto ids = torch::randint(0, config.vocab_size, {b.batch, b.seq, k}, at::TensorOptions().device(s.device).dtype(at::kLong));
    auto lp = torch::log_softmax(torch::randn({b.batch, b.seq, k}, at::TensorOptions().device(s.device)), -1);
    s.fixed_top_k = {ids, lp};
  }
  s.model->train();
  for (const auto& item : s.model->named_parameters(true)) {
    const bool trained = r.stage != Stage::Align || student::is_new_parameter(item.key());
    item.value().set_requires_grad(trained);
    if (trained) s.trained.emplace_back(item.key(), item.value());
  }
  AdamWOptions adam;
  adam.fp32_gradient_buffers = false;  // one micro-batch per step, as the trainer on one rank
  s.optimizer = std::make_unique<AdamW>(s.trained, adam);
  s.data = synthetic_source(config.vocab_size, b.seq, 1, 0, 1);
  const double flops_token = flops_per_token(s);
  log::info("bench-train: ", b.stage, " at ", b.shape, " shapes, batch ", b.batch, ", seq ", b.seq, ", ",
            s.optimizer->num_parameters(), " trained parameters, ", runtime::describe_device(s.device.str()));

  auto one_step = [&] {
    const data::Batch batch = s.data->next(b.batch);
    const MicroLosses m = run_micro_batch(s, batch, 1.0);
    s.optimizer->accumulate_gradients();
    s.optimizer->clip_grad_norm(1.0);
    s.optimizer->step(r.schedule.at(s.step++));
    return m.total;
  };
  auto sync = [&] {
    if (s.device.is_cuda()) torch::cuda::synchronize();
  };
  for (int64_t i = 0; i < b.warmup; ++i) one_step();
  sync();
  const auto start = std::chrono::steady_clock::now();
  at::Tensor last;
  for (int64_t i = 0; i < b.steps; ++i) last = one_step();
  sync();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double tokens = static_cast<double>(b.batch * b.seq * b.steps);
  const double tok_s = tokens / seconds;
  const double mfu = tok_s * flops_token / (b.peak_tflops * 1e12);
  const double peak_gib = static_cast<double>(peak_memory_bytes(s.device)) / (1024.0 * 1024.0 * 1024.0);
  // One stable line for scripts (tools/bench_train.sh).
  std::printf("bench-train stage=%s shape=%s batch=%lld seq=%lld steps=%lld: %.0f tok/s, %.1f ms/step, MFU %.1f %%, "
              "peak %.1f GiB, loss %.4g\n",
              b.stage.c_str(), b.shape.c_str(), static_cast<long long>(b.batch), static_cast<long long>(b.seq),
              static_cast<long long>(b.steps), tok_s, 1000.0 * seconds / static_cast<double>(b.steps), 100.0 * mfu,
              peak_gib, last.item<double>());
  std::fflush(stdout);
  if (b.profile_top > 0) print_kernel_profile([&] { one_step(); }, s.device, b.profile_top);
}

}  // namespace xd::train
