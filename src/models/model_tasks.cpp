// `xdistill logits` and `xdistill generate`: load a model, run it over a token file.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "xdistill/io/safetensors.h"
#include "xdistill/models/language_model.h"
#include "xdistill/models/model_tasks.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"

namespace xd::models {
namespace {

void check_ids(const std::vector<std::vector<int64_t>>& lines, int64_t vocab, const std::string& file) {
  for (size_t i = 0; i < lines.size(); ++i)
    for (int64_t id : lines[i])
      if (id >= vocab)
        throw Error(file + ":" + std::to_string(i + 1) + ": token id " + std::to_string(id) +
                    " is outside the model's vocabulary of " + std::to_string(vocab));
}

}  // namespace

void write_logits(const LogitsRequest& r) {
  const auto lines = read_token_file(r.tokens);
  auto model = load_model(r.model, r.device, parse_dtype_name(r.dtype));
  check_ids(lines, model->config().vocab_size, r.tokens);
  at::NoGradGuard no_grad;

  // CheckpointWriter writes a directory; stage it next to OUT and move its single
  // file into place, so OUT appears only when complete.
  const std::filesystem::path out(r.out);
  const std::filesystem::path staging = fs::temp_sibling(out);
  try {
    io::CheckpointWriter writer(staging.string(), /*max_shard_bytes=*/~0ull, {{"format", "pt"}});
    for (size_t i = 0; i < lines.size(); ++i) {
      const at::Tensor ids = at::tensor(lines[i], at::kLong).view({1, -1});
      const auto start = std::chrono::steady_clock::now();
      at::Tensor logits = model->forward(ids);
      if (r.time) {
        if (logits.is_cuda()) torch::cuda::synchronize();
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        log::info("forward: ", ids.size(1), " tokens in ", ms, " ms");  // parsed by tools/bench_teacher.py
      }
      logits = logits.squeeze(0).to(at::kCPU).contiguous();
      writer.add("logits." + std::to_string(i), io::DType::F32, logits.sizes().vec(), logits.data_ptr(),
                 logits.numel() * sizeof(float));
    }
    writer.finish();
    if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
    std::filesystem::rename(staging / "model.safetensors", out);
    fs::remove_tree(staging);
  } catch (...) {
    fs::remove_tree_noexcept(staging);
    throw;
  }
  log::info("wrote logits of ", lines.size(), " sequences to ", r.out);
}

void print_generations(const GenerateRequest& r) {
  const auto prompts = read_token_file(r.tokens);
  auto model = load_model(r.model, r.device, parse_dtype_name(r.dtype));
  check_ids(prompts, model->config().vocab_size, r.tokens);
  GenerationOptions options = r.options;
  if (r.use_model_stop_ids)
    for (int64_t id : model->config().eos_token_ids) options.stop_ids.push_back(id);
  const auto outputs = generate(*model, prompts, options);
  for (const auto& row : outputs) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) line += (i ? " " : "") + std::to_string(row[i]);
    std::printf("%s\n", line.c_str());
  }
  std::fflush(stdout);
}

}  // namespace xd::models
