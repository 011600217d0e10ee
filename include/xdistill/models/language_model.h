// What every model (the teacher decoder, the student) offers to tasks: a forward
// to float32 logits, an incremental-decoding cache, loading by config.json's
// model_type and saving in Hugging Face layout.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "xdistill/models/model_config.h"

namespace xd::models {

// Incremental-decoding state of one model for a batch of rows that advance
// together (equal lengths). Created by LanguageModel::new_cache.
class Cache {
 public:
  virtual ~Cache() = default;
  int64_t length() const { return length_; }  // positions already consumed
  int64_t batch() const { return batch_; }
  void advance(int64_t tokens) { length_ += tokens; }

 protected:
  explicit Cache(int64_t batch) : batch_(batch) {}

 private:
  int64_t batch_ = 0, length_ = 0;
};

// Optional outputs of a forward, for layer-wise training (Stage I): what enters each
// layer (the residual stream before the block) and each mixer's output before its
// output projection W_o. Collected only for what is switched on.
struct ForwardTrace {
  bool collect_layer_inputs = true;
  bool collect_mixer_outputs = true;
  bool detach = true;  // store detached tensors (the teacher side of Stage I)
  std::vector<at::Tensor> layer_inputs;   // [num_layers] of [B, T, hidden]
  std::vector<at::Tensor> mixer_outputs;  // [num_layers] of [B, T, heads * head_dim]
};

class LanguageModel : public torch::nn::Module {
 public:
  // ids: [B, T] int64 on any device. With a cache, ids continue the cached rows (and
  // the cache advances by T). Returns float32 logits [B, T, vocab].
  virtual at::Tensor forward(const at::Tensor& ids, Cache* cache = nullptr, ForwardTrace* trace = nullptr) = 0;
  // Logits of the last position only, [B, vocab] float32: what decoding needs,
  // without projecting every prompt position onto the vocabulary.
  virtual at::Tensor next_token_logits(const at::Tensor& ids, Cache* cache) {
    return forward(ids, cache).select(1, -1);
  }
  // capacity: positions to preallocate per row (grows as needed; 0 = a default).
  virtual std::unique_ptr<Cache> new_cache(int64_t batch, int64_t capacity = 0) = 0;

  // The teacher's configuration (the student keeps its teacher's).
  virtual const ModelConfig& config() const = 0;
  // config.json as save_model writes it.
  virtual nlohmann::json config_json() const = 0;
  // Tensors as saved, under their Hugging Face names (tied weights once).
  virtual std::vector<std::pair<std::string, at::Tensor>> export_tensors() const = 0;

  virtual at::Device device() const = 0;
  virtual at::ScalarType dtype() const = 0;
};

// Builds a model from a directory: (dir, parsed config.json, device, dtype).
using ModelFactory = std::function<std::shared_ptr<LanguageModel>(
    const std::string& dir, const nlohmann::json& config, const at::Device& device, at::ScalarType dtype)>;

// Registers a model_type (e.g. "xlstm_hybrid"). Call it from code that runs before
// load_model (not from a static initialiser: the linker drops unreferenced objects of
// a static library). Registering a name twice replaces the factory.
void register_model_type(const std::string& model_type, ModelFactory factory);
std::vector<std::string> registered_model_types();

// Loads DIR by its config.json's model_type: the teacher families are built in.
// device: "cpu", "cuda", "cuda:N" or "auto".
std::shared_ptr<LanguageModel> load_model(const std::string& dir, const std::string& device, at::ScalarType dtype);

// Writes config.json and the safetensors (sharded by size) to DIR, atomically.
void save_model(const LanguageModel& model, const std::string& dir);

// "f32"/"float32", "bf16"/"bfloat16", "f16"/"float16" -> dtype (UsageError otherwise).
at::ScalarType parse_dtype_name(const std::string& name);

}  // namespace xd::models
