// `xdistill info` and the token-file reader: no torch needed (config + safetensors headers).
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "xdistill/io/safetensors.h"
#include "xdistill/models/model_config.h"
#include "xdistill/models/model_tasks.h"
#include "xdistill/student/student_config.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/error.h"

namespace xd::models {
namespace {

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string describe_rope(const RopeConfig& r) {
  std::string s = r.type + ", theta " + fixed(r.theta, 0);
  if (r.type != "default") s += ", factor " + fixed(r.factor, 2);
  if (r.type == "llama3" || r.type == "yarn") s += ", original context " + std::to_string(r.original_max_position);
  return s;
}

size_t dtype_bytes(const std::string& name) {
  if (name == "f32" || name == "float32" || name == "fp32") return 4;
  if (name == "bf16" || name == "bfloat16" || name == "f16" || name == "float16" || name == "fp16") return 2;
  throw UsageError("dtype '" + name + "' is not one of f32, bf16, f16");
}

}  // namespace

std::vector<std::vector<int64_t>> read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open the token file");
  std::vector<std::vector<int64_t>> lines;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    std::istringstream words(line);
    std::vector<int64_t> ids;
    std::string word;
    while (words >> word) {
      size_t used = 0;
      int64_t id = -1;
      try {
        id = std::stoll(word, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != word.size() || id < 0)
        throw Error(path + ":" + std::to_string(number) + ": '" + word + "' is not a token id (a non-negative integer)");
      ids.push_back(id);
    }
    if (ids.empty()) throw Error(path + ":" + std::to_string(number) + ": empty line; each line must hold one token sequence");
    lines.push_back(std::move(ids));
  }
  if (lines.empty()) throw Error(path + ": no token sequences");
  return lines;
}

void print_model_info(const InfoRequest& request) {
  // A student (model_type xlstm_hybrid) is described by the teacher config it embeds.
  const nlohmann::json raw = nlohmann::json::parse(fs::read_text(request.model + "/config.json"), nullptr, false);
  const auto teacher_json = raw.is_discarded() ? std::nullopt : student::teacher_config_of(raw, request.model);
  const ModelConfig c = teacher_json ? parse_model_config(*teacher_json, request.model + "/config.json")
                                     : load_model_config(request.model);
  const io::Checkpoint ck = io::Checkpoint::open(request.model);
  // Count what the checkpoint holds (a tied checkpoint's duplicate head excluded).
  int64_t params = 0;
  uint64_t stored_bytes = 0;
  std::map<std::string, int64_t> dtypes;
  for (const auto& name : ck.names()) {
    if (c.tie_word_embeddings && name == "lm_head.weight") continue;
    const auto& info = ck.info(name);
    params += info.numel();
    stored_bytes += info.nbytes();
    dtypes[io::dtype_name(info.dtype)] += info.numel();
  }
  std::string stored;
  for (const auto& [name, n] : dtypes) stored += (stored.empty() ? "" : ", ") + name;
  const uint64_t load_bytes = request.dtype.empty() ? stored_bytes : uint64_t(params) * dtype_bytes(request.dtype);
  std::string sliding;
  for (size_t i = 0; i < c.layers.size(); ++i)
    if (c.layers[i].sliding_window > 0) sliding += (sliding.empty() ? "" : ",") + std::to_string(i);

  std::printf("model        %s\n", request.model.c_str());
  std::printf("family       %s (%s, q/k norm %s, q/k/v bias %s, tied embeddings %s)\n", c.model_type.c_str(),
              to_string(c.norm_placement), to_string(c.qk_norm), c.qkv_bias ? "yes" : "no",
              c.tie_word_embeddings ? "yes" : "no");
  if (teacher_json) std::printf("student      %s\n", student::describe_student(raw).c_str());
  std::printf("parameters   %s (%s B)\n", with_commas(params).c_str(), fixed(params / 1e9, 2).c_str());
  std::printf("layers       %lld\n", (long long)c.num_layers);
  std::printf("heads        %lld (KV heads %lld, head_dim %lld)\n", (long long)c.num_heads, (long long)c.num_kv_heads,
              (long long)c.head_dim);
  std::printf("hidden       %lld (MLP %lld, vocab %lld)\n", (long long)c.hidden_size, (long long)c.intermediate_size,
              (long long)c.vocab_size);
  for (size_t r = 0; r < c.ropes.size(); ++r)
    std::printf("rope%s        %s\n", c.ropes.size() > 1 ? std::to_string(r).c_str() : " ", describe_rope(c.ropes[r]).c_str());
  if (!sliding.empty())
    std::printf("sliding      window %lld on layers %s\n", (long long)c.layers[std::stoi(sliding)].sliding_window,
                sliding.c_str());
  std::printf("dtype        %s (stored: %s)\n", c.dtype.empty() ? "unspecified" : c.dtype.c_str(), stored.c_str());
  const bool small = load_bytes < (1ull << 30);
  std::printf("memory       %s %s to load%s\n", fixed(load_bytes / double(small ? 1ull << 20 : 1ull << 30), 2).c_str(),
              small ? "MiB" : "GiB", request.dtype.empty() ? " as stored" : (" in " + request.dtype).c_str());
}

}  // namespace xd::models
