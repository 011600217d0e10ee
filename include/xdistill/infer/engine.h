// Fast inference for a teacher or a student: chunked prefill (the prompt in chunks,
// each continuing from the cache of the previous ones), then batched one-token
// decode steps with per-row lengths, replayed from a CUDA graph where available.
//   teacher: flash-attention prefill into a K/V cache preallocated to prompt + new
//            tokens; decode attends over the cache with a per-row length mask.
//   student: chunkwise mLSTM prefill handing its state on, window attention over the
//            cached window + sinks; decode with the recurrent step and the window
//            ring buffer. Memory does not depend on the context length.
// Rows of different lengths decode together and give exactly the tokens they give
// alone (each row has its own position; nothing is padded).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "xdistill/models/decoder.h"

namespace xd::infer {

class DecodeState;
class GraphedStep;

struct EngineOptions {
  int64_t prefill_chunk = 4096;  // prompt tokens per forward (0 = the whole prompt at once)
  bool cuda_graph = true;        // replay the decode step from a CUDA graph (CUDA builds and devices)
  // Decode with the fused step kernels where they cover the model (CUDA builds and
  // devices): the student mixer in one launch per layer, RMSNorm with the residual add
  // and SiLU * up in one each. XDISTILL_FUSED_STEP=0 switches them off too.
  bool fused_step = true;
};

class InferenceEngine {
 public:
  // batch: rows decoded together; capacity: the most positions any row reaches
  // (prompt + new tokens). Buffers are allocated (and the step captured) here.
  InferenceEngine(std::shared_ptr<models::Decoder> model, int64_t batch, int64_t capacity,
                  EngineOptions options = {});
  ~InferenceEngine();

  // One prompt per row (lengths may differ). Returns next-token logits [B, V] float32.
  at::Tensor prefill(const std::vector<std::vector<int64_t>>& prompts);
  // Feeds one token per row (tokens [B] int64, any device) and returns the logits
  // [B, V] float32 of the next position (a buffer overwritten by the next step).
  at::Tensor step(const at::Tensor& tokens);

  bool uses_cuda_graph() const { return graph_ != nullptr; }
  // Whether the decode step runs fused kernels (for at least the norms).
  bool uses_fused_step() const;
  bool is_student() const;
  int64_t batch() const;

 private:
  std::shared_ptr<models::Decoder> model_;
  EngineOptions options_;
  std::unique_ptr<DecodeState> state_;
  std::unique_ptr<GraphedStep> graph_;
};

struct GreedyOptions {
  int64_t max_new_tokens = 32;
  std::vector<int64_t> stop_ids;  // a row ends after emitting one (it is included)
  int64_t batch_size = 8;         // prompts decoded together (any lengths)
  EngineOptions engine;
};

// Greedy decoding (arg-max, first index on ties) of prompts of any lengths; the new
// tokens of each prompt, in the prompts' order.
std::vector<std::vector<int64_t>> generate_greedy(std::shared_ptr<models::Decoder> model,
                                                  const std::vector<std::vector<int64_t>>& prompts,
                                                  const GreedyOptions& options);

// Runs on CUDA when this build and device allow; memory accounting (0 elsewhere).
bool cuda_graphs_available(const at::Device& device);
void reset_peak_memory(const at::Device& device);
int64_t peak_memory_bytes(const at::Device& device);
int64_t allocated_memory_bytes(const at::Device& device);
void release_cached_memory(const at::Device& device);

}  // namespace xd::infer
