// The options of the student block (method.md §2), as saved in the "student" block
// of a student's config.json. Every "we decide" choice of the spec is a field here.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

namespace xd::student {

struct StudentConfig {
  int64_t window = 512;               // local branch: last `window` positions ...
  int64_t sinks = 4;                  // ... plus the first `sinks` of the row
  std::string feature_map = "hedgehog";  // "hedgehog": softmax(xW); "hedgehog_pm": [softmax(xW), softmax(-xW)]
  int64_t feature_dim = 0;            // d_feat; 0 = head_dim
  double gate_softcap = 15.0;         // a * tanh(x / a) on the gate pre-activations (0 = off)
  double forget_init_min = 0.9;       // sigma(b_f) at init, spread over heads from min ...
  double forget_init_max = 0.999;     // ... to max
  double input_gate_bias = -2.0;      // b_i at init
  double output_gate_bias = -2.0;     // c_h at init: sigma(-2) = 0.12, the local branch dominates
  int64_t chunk_size = 64;            // mLSTM chunk size

  void validate(int64_t head_dim) const;  // throws xd::Error naming the bad field
  int64_t resolved_feature_dim(int64_t head_dim) const { return feature_dim > 0 ? feature_dim : head_dim; }
  // mLSTM key dimension: d_feat, doubled by the "pm" map.
  int64_t key_dim(int64_t head_dim) const {
    return resolved_feature_dim(head_dim) * (feature_map == "hedgehog_pm" ? 2 : 1);
  }
  nlohmann::json to_json() const;
  static StudentConfig from_json(const nlohmann::json& j, const std::string& source);
};

// For a student's config.json (model_type "xlstm_hybrid"): the teacher family's
// config.json it embeds (model_type restored, the student block removed); nullopt
// for any other model_type. Throws xd::Error naming `source` when the block is broken.
std::optional<nlohmann::json> teacher_config_of(const nlohmann::json& config, const std::string& source);
// One line describing a student's block, for `xdistill info`.
std::string describe_student(const nlohmann::json& config);

}  // namespace xd::student
