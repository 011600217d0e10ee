// The work behind `xdistill info | logits | generate` (the command file only parses
// options). No torch in this header.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "xdistill/models/generation.h"

namespace xd::models {

// One token sequence per line of FILE, whitespace-separated ids; errors name file:line.
std::vector<std::vector<int64_t>> read_token_file(const std::string& path);

struct InfoRequest {
  std::string model;
  std::string dtype;  // memory estimate in this dtype; empty: as stored
};
// Prints family, parameter count, layers/heads/KV heads, dtype, memory to load.
void print_model_info(const InfoRequest& request);

struct LogitsRequest {
  std::string model, tokens, out;
  std::string dtype = "f32";
  std::string device = "auto";
  bool time = false;  // log each forward's wall time (synchronised): "forward: T tokens in X ms"
};
// Writes OUT.safetensors with one float32 tensor `logits.<i>` [T_i, vocab] per line.
void write_logits(const LogitsRequest& request);

struct GenerateRequest {
  std::string model, tokens;
  std::string dtype = "f32";
  std::string device = "auto";
  GenerationOptions options;
  bool use_model_stop_ids = true;  // add the model's eos ids to options.stop_ids
};
// Prints the new token ids, one line per input line.
void print_generations(const GenerateRequest& request);

}  // namespace xd::models
