// `xdistill bench inference`: time to first token, prefill and decode throughput and
// peak GPU memory of teachers and students over batch sizes and context lengths.
// Models come from directories or are built with random weights of a named shape (a
// teacher and the student made from it), so that no download is needed.
#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "xdistill/infer/bench.h"
#include "xdistill/infer/engine.h"
#include "xdistill/runtime/device.h"
#include "xdistill/runtime/kernel_profile.h"
#include "xdistill/student/register.h"
#include "xdistill/student/student_model.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"

namespace xd::infer {
namespace {

struct Entry {
  std::string label, kind;
  std::shared_ptr<models::Decoder> model;
};

nlohmann::json shape_config(const std::string& shape) {
  nlohmann::json rope = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  nlohmann::json c = {{"model_type", "llama"}, {"rms_norm_eps", 1e-5}, {"rope_theta", 500000.0},
                      {"hidden_act", "silu"}, {"max_position_embeddings", 131072}, {"vocab_size", 128256},
                      {"bos_token_id", 128000}, {"eos_token_id", 128001}};
  if (shape == "llama-3.1-8b") {
    c.update({{"hidden_size", 4096}, {"intermediate_size", 14336}, {"num_hidden_layers", 32},
              {"num_attention_heads", 32}, {"num_key_value_heads", 8}, {"tie_word_embeddings", false}});
  } else if (shape == "llama-3.2-1b") {
    rope["factor"] = 32.0;
    c.update({{"hidden_size", 2048}, {"intermediate_size", 8192}, {"num_hidden_layers", 16},
              {"num_attention_heads", 32}, {"num_key_value_heads", 8}, {"head_dim", 64},
              {"tie_word_embeddings", true}});
  } else if (shape == "tiny") {  // for trying the benchmark on a CPU
    c.update({{"hidden_size", 64}, {"intermediate_size", 160}, {"num_hidden_layers", 2},
              {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"vocab_size", 512},
              {"tie_word_embeddings", false}});
  } else {
    throw UsageError("--shape: '" + shape + "' is not one of llama-3.1-8b, llama-3.2-1b, tiny");
  }
  c["rope_scaling"] = rope;
  return c;
}

// A random-weight teacher of the shape on the device (HF's Llama init: normal(0,
// 0.02), unit norms) and the student made from it (the spec's initialisation).
std::vector<Entry> random_pair(const std::string& shape, const at::Device& device, at::ScalarType dtype, uint64_t seed) {
  const auto config = models::parse_model_config(shape_config(shape), shape);
  auto teacher = std::make_shared<models::Decoder>(config, models::plan_from_config(config),
                                                   at::TensorOptions().device(device).dtype(dtype));
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& item : teacher->named_parameters(true)) {
    if (item.key().find("norm") != std::string::npos) item.value().fill_(1.0);
    else if (item.value().dim() == 1) item.value().zero_();
    else item.value().normal_(0.0, 0.02);
  }
  teacher->eval();
  auto student = student::student_from_teacher(*teacher, student::StudentConfig{});
  return {{"teacher", "teacher", teacher}, {"student", "student", student}};
}

Entry load_entry(const std::string& dir, const std::string& device, at::ScalarType dtype) {
  auto model = std::dynamic_pointer_cast<models::Decoder>(models::load_model(dir, device, dtype));
  XD_CHECK(model != nullptr, dir, ": not a decoder model (teacher or student)");
  const bool is_student = std::dynamic_pointer_cast<student::StudentModel>(model) != nullptr;
  return {std::filesystem::path(dir).lexically_normal().filename().string(), is_student ? "student" : "teacher", model};
}

void synchronize(const at::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool is_out_of_memory(const std::exception& e) {
  const std::string what = e.what();
  return what.find("out of memory") != std::string::npos || what.find("CUBLAS_STATUS_ALLOC_FAILED") != std::string::npos;
}

BenchResult measure(const Entry& e, int64_t batch, int64_t context, const BenchInferenceCommand& c,
                    bool profile = false) {
  BenchResult r;
  r.model = e.label;
  r.kind = e.kind;
  r.batch = batch;
  r.context = context;
  r.gen = c.gen;
  const at::Device device = e.model->device();
  release_cached_memory(device);
  const int64_t baseline = allocated_memory_bytes(device);
  reset_peak_memory(device);
  try {
    at::NoGradGuard no_grad;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(c.seed + context);
    const at::Tensor ids = at::randint(0, e.model->config().vocab_size, {batch, context}, gen, at::kLong);
    std::vector<std::vector<int64_t>> prompts(batch);
    for (int64_t b = 0; b < batch; ++b) prompts[b].assign(ids[b].data_ptr<int64_t>(), ids[b].data_ptr<int64_t>() + context);
    InferenceEngine engine(e.model, batch, context + c.gen, {c.prefill_chunk, c.cuda_graph, c.fused_step});
    r.cuda_graph = engine.uses_cuda_graph();
    r.fused_step = engine.uses_fused_step();
    synchronize(device);
    runtime::KernelProfile profiler;
    const std::string where = e.label + " B=" + std::to_string(batch) + " ctx=" + std::to_string(context);
    if (profile) profiler.start();
    auto t0 = std::chrono::steady_clock::now();
    at::Tensor next = engine.prefill(prompts).argmax(-1);
    (void)next.to(at::kCPU);
    r.ttft_s = seconds_since(t0);
    r.prefill_tok_s = batch * context / r.ttft_s;
    if (profile) {
      std::cout << runtime::format_kernel_times(profiler.stop(), "GPU time of the prefill, " + where) << std::flush;
      profiler.start();
    }
    t0 = std::chrono::steady_clock::now();
    for (int64_t i = 1; i < c.gen; ++i) next = engine.step(next).argmax(-1);
    (void)next.to(at::kCPU);
    const double decode_s = seconds_since(t0);
    if (profile)
      std::cout << runtime::format_kernel_times(profiler.stop(), "GPU time of one decode step, " + where, 25,
                                                static_cast<double>(std::max<int64_t>(1, c.gen - 1)))
                << std::flush;
    r.decode_tok_s = c.gen > 1 ? batch * (c.gen - 1) / decode_s : 0.0;
    r.peak_bytes = peak_memory_bytes(device);
    r.extra_bytes = r.peak_bytes - baseline;
  } catch (const c10::OutOfMemoryError&) {
    r.status = "oom";
  } catch (const std::exception& ex) {
    if (!is_out_of_memory(ex)) {
      std::string what = ex.what();
      r.status = "error: " + what.substr(0, what.find('\n'));
    } else {
      r.status = "oom";
    }
  }
  release_cached_memory(device);
  return r;
}

// First calls initialise cuBLAS, flash attention and the allocator: keep them out
// of the first measured setting.
void warm_up(const Entry& e, const BenchInferenceCommand& c) {
  BenchInferenceCommand small = c;
  small.gen = 3;
  (void)measure(e, 1, 64, small);
}

void write_lines(const std::string& path, const std::vector<BenchResult>& results) {
  std::string text;
  for (const auto& r : results) text += r.to_json().dump() + "\n";
  fs::write_atomic(path, text);
}

}  // namespace

void run_bench_inference(const BenchInferenceCommand& c) {
  if (c.models.empty() == c.shape.empty()) throw UsageError("give either --model (once or twice) or --shape");
  if (c.gen < 1) throw UsageError("--gen must be >= 1");
  if (c.prefill_chunk < 0) throw UsageError("--prefill-chunk must be >= 0");
  for (int64_t b : c.batches)
    if (b < 1) throw UsageError("--batch: sizes must be >= 1");
  const std::vector<int64_t> contexts = parse_contexts(c.contexts);
  const std::string device = runtime::resolve_device(c.device);
  const std::string dtype_name = c.dtype != "auto" ? c.dtype : device.rfind("cuda", 0) == 0 ? "bf16" : "f32";
  const at::ScalarType dtype = models::parse_dtype_name(dtype_name);
  student::register_student();
  std::vector<Entry> entries;
  if (!c.shape.empty()) entries = random_pair(c.shape, at::Device(device), dtype, c.seed);
  for (const auto& dir : c.models) entries.push_back(load_entry(dir, device, dtype));
  log::info("bench inference: ", runtime::describe_device(device), ", ", dtype_name, ", ", entries.size(),
            " model(s), gen ", c.gen, ", prefill chunk ", c.prefill_chunk);
  for (const auto& e : entries) warm_up(e, c);

  std::vector<BenchResult> results;
  for (int64_t batch : c.batches)
    for (int64_t context : contexts)
      for (const auto& e : entries) {
        results.push_back(measure(e, batch, context, c, c.profile_kernels && e.model->device().is_cuda()));
        const BenchResult& r = results.back();
        if (r.status == "ok")
          log::info("bench ", r.model, " B=", batch, " ctx=", context, ": ttft ", r.ttft_s, " s, prefill ",
                    r.prefill_tok_s, " tok/s, decode ", r.decode_tok_s, " tok/s, peak ", r.peak_bytes >> 20, " MiB");
        else
          log::warn("bench ", r.model, " B=", batch, " ctx=", context, ": ", r.status);
        if (!c.out.empty()) write_lines(c.out, results);
      }
  std::cout << format_results(results) << std::flush;
  if (!c.plot.empty()) {
    fs::write_atomic(c.plot, render_bench_svg(results));
    log::info("wrote ", c.plot);
  }
}

}  // namespace xd::infer
