// Loading and saving models: the model_type registry, teacher checkpoints into a
// Decoder (names through weight_names, every problem in one error), save_model.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "xdistill/io/safetensors.h"
#include "xdistill/io/torch_io.h"
#include "xdistill/models/decoder.h"
#include "xdistill/models/weight_names.h"
#include "xdistill/runtime/device.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"

namespace xd::models {
namespace {

// The optional sub-modules exist when their weights exist (layer 0 decides, the
// tensor check then holds every layer to it); the q-norm's shape tells per-head
// (Qwen3) from full-projection (OLMo) norms. A disagreement with what config.json
// implies is logged, never silent.
void refine_from_weights(ModelConfig& c, const io::Checkpoint& ck, const std::string& dir) {
  const std::string layer0 = "model.layers.0.";
  auto refine = [&](bool& flag, const std::string& name, const char* what) {
    const bool present = ck.has(layer0 + name);
    if (present != flag)
      log::warn(dir, ": config.json implies ", flag ? "" : "no ", what, ", but the weights ",
                present ? "have" : "lack", " '", layer0 + name, "'; following the weights");
    flag = present;
  };
  refine(c.qkv_bias, "self_attn.q_proj.bias", "q/k/v biases");
  refine(c.o_bias, "self_attn.o_proj.bias", "an output-projection bias");
  refine(c.mlp_bias, "mlp.gate_proj.bias", "MLP biases");

  QkNorm found = QkNorm::none;
  const std::string q_norm = layer0 + "self_attn.q_norm.weight";
  if (ck.has(q_norm)) {
    const auto& shape = ck.info(q_norm).shape;
    if (shape.size() == 1 && shape[0] == c.q_size() && c.q_size() != c.head_dim) found = QkNorm::full;
    else if (shape.size() == 1 && shape[0] == c.head_dim) found = QkNorm::per_head;
    else found = c.qk_norm == QkNorm::none ? QkNorm::per_head : c.qk_norm;  // the shape check will report it
  }
  if (found != c.qk_norm)
    log::warn(dir, ": model_type '", c.model_type, "' implies ", to_string(c.qk_norm), " q/k norms, the weights have ",
              to_string(found), "; following the weights");
  c.qk_norm = found;
}

// Copies checkpoint bytes into GPU parameters of the same dtype through per-thread
// pinned staging buffers, several tensors at once: reading the mapped pages and the
// host-to-device copies overlap across threads.
void copy_to_gpu_parallel(const io::Checkpoint& ck, const std::vector<std::pair<std::string, at::Tensor>>& todo) {
  constexpr int64_t kChunk = 64ll << 20;
  const int threads = std::min<int>(8, std::max<int>(1, todo.size()));
  std::atomic<size_t> next{0};
  std::mutex error_mutex;
  std::string first_error;
  auto worker = [&] {
    at::NoGradGuard no_grad;  // grad mode is per thread
    try {
      at::Tensor pinned = at::empty({kChunk}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
      for (size_t i = next++; i < todo.size(); i = next++) {
        const auto& [name, param] = todo[i];
        const at::Tensor src = io::load_tensor(ck, name, std::nullopt, at::kCPU).reshape({-1}).view(at::kByte);
        const at::Tensor dst = param.view({-1}).view(at::kByte);
        for (int64_t off = 0; off < src.numel(); off += kChunk) {
          const int64_t n = std::min(kChunk, src.numel() - off);
          at::Tensor stage = pinned.narrow(0, 0, n);
          stage.copy_(src.narrow(0, off, n));
          dst.narrow(0, off, n).copy_(stage);
        }
      }
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (first_error.empty()) first_error = e.what();
      next = todo.size();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  if (!first_error.empty()) throw Error("loading weights to the GPU: " + first_error);
}

void load_weights_from(Decoder& model, const io::Checkpoint& ck, const LoadOptions& options) {
  const ModelConfig& c = model.config();
  std::map<std::string, std::vector<int64_t>> expected;
  std::vector<std::pair<std::string, at::Tensor>> params;  // HF name -> parameter
  for (const auto& item : model.named_parameters(/*recurse=*/true)) {
    const std::string hf = to_hf_name(item.key(), c.norm_placement);
    if (options.may_be_missing && !ck.has(hf) && options.may_be_missing(item.key())) continue;
    expected[hf] = item.value().sizes().vec();
    params.emplace_back(hf, item.value());
  }
  // Tied checkpoints sometimes also store the (identical) head; it is checked, not used.
  if (c.tie_word_embeddings && ck.has("lm_head.weight")) expected["lm_head.weight"] = {c.vocab_size, c.hidden_size};
  ck.check_tensors(expected, options.allow_unexpected);

  at::NoGradGuard no_grad;
  const at::ScalarType dtype = model.dtype();
  std::vector<std::pair<std::string, at::Tensor>> gpu_raw;
  for (auto& [name, param] : params) {
    const bool same_dtype = io::to_scalar_type(ck.info(name).dtype) == dtype;
    if (param.is_cuda() && same_dtype && param.is_contiguous()) {
      gpu_raw.emplace_back(name, param);
    } else {
      param.copy_(io::load_tensor(ck, name, dtype, param.is_cuda() ? param.device() : at::Device(at::kCPU)));
    }
  }
  if (!gpu_raw.empty()) copy_to_gpu_parallel(ck, gpu_raw);
}

std::mutex& model_type_registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, ModelFactory>& registry() {
  static std::map<std::string, ModelFactory> r = [] {
    std::map<std::string, ModelFactory> built_in;
    for (const auto& type : supported_model_types())
      built_in[type] = [](const std::string& dir, const nlohmann::json&, const at::Device& device, at::ScalarType dtype) {
        return std::static_pointer_cast<LanguageModel>(load_decoder(dir, device, dtype));
      };
    return built_in;
  }();
  return r;
}

}  // namespace

std::shared_ptr<Decoder> load_decoder(const std::string& dir, const at::Device& device, at::ScalarType dtype) {
  ModelConfig config = load_model_config(dir);
  const io::Checkpoint ck = io::Checkpoint::open(dir);
  refine_from_weights(config, ck, dir);
  auto plan = plan_from_config(config);
  auto model = std::make_shared<Decoder>(config, plan, at::TensorOptions().dtype(dtype).device(device));
  load_weights_from(*model, ck, LoadOptions{});
  model->eval();
  return model;
}

void load_weights(Decoder& model, const std::string& dir, const LoadOptions& options) {
  load_weights_from(model, io::Checkpoint::open(dir), options);
}

void register_model_type(const std::string& model_type, ModelFactory factory) {
  std::lock_guard<std::mutex> lock(model_type_registry_mutex());
  registry()[model_type] = std::move(factory);
}

std::vector<std::string> registered_model_types() {
  std::lock_guard<std::mutex> lock(model_type_registry_mutex());
  std::vector<std::string> out;
  for (const auto& [name, f] : registry()) out.push_back(name);
  return out;
}

std::shared_ptr<LanguageModel> load_model(const std::string& dir, const std::string& device, at::ScalarType dtype) {
  const std::string path = (std::filesystem::path(dir) / "config.json").string();
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(fs::read_text(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": invalid JSON: " + e.what());
  }
  const std::string type = config.value("model_type", "");
  ModelFactory factory;
  {
    std::lock_guard<std::mutex> lock(model_type_registry_mutex());
    auto it = registry().find(type);
    if (it != registry().end()) factory = it->second;
  }
  if (!factory) {
    std::string known;
    for (const auto& t : registered_model_types()) known += (known.empty() ? "" : ", ") + t;
    throw Error(path + ": model_type '" + type + "' is not supported; supported: " + known);
  }
  const at::Device target(runtime::resolve_device(device));
  if (target.is_cuda()) at::empty({1}, at::TensorOptions().device(target));  // CUDA start-up outside the timing
  const auto start = std::chrono::steady_clock::now();
  auto model = factory(dir, config, target, dtype);
  if (target.is_cuda()) torch::cuda::synchronize();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t bytes = 0;
  for (const auto& p : model->parameters()) bytes += p.numel() * p.element_size();
  // A stable line (tools/bench_teacher.py parses it).
  log::info("model loaded: ", bytes, " bytes in ", seconds, " s (", bytes / seconds / 1e9, " GB/s) to ",
            target.str(), " from ", dir);
  return model;
}

void save_model(const LanguageModel& model, const std::string& dir) {
  const std::filesystem::path dest(dir);
  const std::filesystem::path staging = fs::temp_sibling(dest);
  try {
    io::save_tensors(staging.string(), model.export_tensors());
    fs::write_atomic(staging / "config.json", model.config_json().dump(2) + "\n");
    fs::replace_directory(staging, dest);
  } catch (...) {
    fs::remove_tree_noexcept(staging);
    throw;
  }
}

at::ScalarType parse_dtype_name(const std::string& name) {
  if (name == "f32" || name == "float32" || name == "fp32") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  if (name == "f16" || name == "float16" || name == "fp16") return at::kHalf;
  throw UsageError("dtype '" + name + "' is not one of f32, bf16, f16");
}

}  // namespace xd::models
