// `xdistill eval niah`: the same haystacks for every model, greedy answers through
// the inference engine (batched, any prompt lengths), exact-match accuracy per task
// and context, printed side by side and written as JSON.
#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>

#include "xdistill/infer/engine.h"
#include "xdistill/infer/niah_run.h"
#include "xdistill/runtime/device.h"
#include "xdistill/student/register.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"

namespace xd::infer {

void run_niah_command(const NiahCommand& c) {
  if (c.models.empty()) throw UsageError("--model is required");
  if (c.options.samples < 1) throw UsageError("--samples must be >= 1");
  if (c.max_new_tokens < 1) throw UsageError("--max-new must be >= 1");
  for (int n : c.options.needles)
    if (n < 1) throw UsageError("--needles: counts must be >= 1");
  const auto tokenizer = tok::Tokenizer::load(c.tokenizer_dir.empty() ? c.models.front() : c.tokenizer_dir);
  const std::vector<NiahItem> items = make_niah_items(tokenizer, c.options);
  std::vector<std::vector<int64_t>> prompts;
  for (const auto& item : items) prompts.emplace_back(item.ids.begin(), item.ids.end());

  const std::string device = runtime::resolve_device(c.device);
  const std::string dtype_name = c.dtype != "auto" ? c.dtype : device.rfind("cuda", 0) == 0 ? "bf16" : "f32";
  student::register_student();
  nlohmann::json report = {{"task", "niah"}, {"device", device}, {"dtype", dtype_name},
                           {"contexts", c.options.contexts}, {"needles", c.options.needles},
                           {"samples", c.options.samples}, {"models", nlohmann::json::array()}};
  std::vector<std::string> names;
  std::vector<std::vector<NiahScore>> scores;
  for (const auto& dir : c.models) {
    auto model = std::dynamic_pointer_cast<models::Decoder>(
        models::load_model(dir, device, models::parse_dtype_name(dtype_name)));
    XD_CHECK(model != nullptr, dir, ": not a decoder model (teacher or student)");
    log::info("niah: ", dir, " on ", items.size(), " haystacks");
    GreedyOptions options;
    options.max_new_tokens = c.max_new_tokens;
    options.batch_size = c.batch_size;
    options.engine.prefill_chunk = c.prefill_chunk;
    if (auto eos = tokenizer.eos_id()) options.stop_ids.push_back(*eos);
    const auto generated_ids = generate_greedy(model, prompts, options);
    std::vector<std::string> generated;
    nlohmann::json samples = nlohmann::json::array();
    for (size_t i = 0; i < items.size(); ++i) {
      generated.push_back(tokenizer.decode(std::vector<int32_t>(generated_ids[i].begin(), generated_ids[i].end()), true));
      samples.push_back({{"id", items[i].id}, {"tokens", items[i].ids.size()}, {"depth", items[i].depth},
                         {"target", items[i].value}, {"generated", generated.back()},
                         {"correct", niah_correct(generated.back(), items[i].value)}});
    }
    scores.push_back(score_niah(items, generated));
    nlohmann::json results = nlohmann::json::array();
    for (const auto& s : scores.back())
      results.push_back({{"task", s.task}, {"context", s.context}, {"accuracy", s.accuracy()},
                         {"correct", s.correct}, {"total", s.total}});
    names.push_back(std::filesystem::path(dir).lexically_normal().filename().string());
    report["models"].push_back({{"model", names.back()}, {"path", dir}, {"model_type", model->config().model_type},
                                {"results", results}, {"samples", samples}});
    model.reset();
    release_cached_memory(at::Device(device));
  }
  char line[256];
  std::snprintf(line, sizeof line, "%-10s %8s", "task", "context");
  std::cout << line;
  for (const auto& n : names) std::printf(" %14.14s", n.c_str());
  std::cout << "\n";
  for (size_t row = 0; row < scores.front().size(); ++row) {
    std::snprintf(line, sizeof line, "%-10s %8lld", scores.front()[row].task.c_str(),
                  static_cast<long long>(scores.front()[row].context));
    std::cout << line;
    for (const auto& s : scores) {
      std::snprintf(line, sizeof line, " %8.3f (%d/%d)", s[row].accuracy(), s[row].correct, s[row].total);
      std::cout << line;
    }
    std::cout << "\n";
  }
  std::cout << std::flush;
  if (!c.out.empty()) {
    fs::write_atomic(c.out, report.dump(2) + "\n");
    log::info("wrote ", c.out);
  }
}

}  // namespace xd::infer
