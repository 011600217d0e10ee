#include "xdistill/student/student_config.h"

#include "xdistill/util/error.h"

namespace xd::student {

void StudentConfig::validate(int64_t head_dim) const {
  XD_CHECK(window >= 1, "student.window: must be >= 1 (got ", window, ")");
  XD_CHECK(sinks >= 0, "student.sinks: must be >= 0 (got ", sinks, ")");
  XD_CHECK(feature_map == "hedgehog" || feature_map == "hedgehog_pm", "student.feature_map: '", feature_map,
           "' is not one of hedgehog, hedgehog_pm");
  XD_CHECK(feature_dim >= 0, "student.feature_dim: must be >= 0 (got ", feature_dim, ")");
  XD_CHECK(gate_softcap >= 0, "student.gate_softcap: must be >= 0 (got ", gate_softcap, ")");
  XD_CHECK(forget_init_min > 0 && forget_init_min <= forget_init_max && forget_init_max < 1,
           "student.forget_init_min/max: need 0 < min <= max < 1 (got ", forget_init_min, ", ", forget_init_max, ")");
  XD_CHECK(chunk_size == 64 || chunk_size == 128, "student.chunk_size: must be 64 or 128 (got ", chunk_size, ")");
  XD_CHECK(head_dim > 0, "student: head_dim must be positive");
}

nlohmann::json StudentConfig::to_json() const {
  return {{"window", window},
          {"sinks", sinks},
          {"feature_map", feature_map},
          {"feature_dim", feature_dim},
          {"gate_softcap", gate_softcap},
          {"forget_init_min", forget_init_min},
          {"forget_init_max", forget_init_max},
          {"input_gate_bias", input_gate_bias},
          {"output_gate_bias", output_gate_bias},
          {"chunk_size", chunk_size}};
}

StudentConfig StudentConfig::from_json(const nlohmann::json& j, const std::string& source) {
  XD_CHECK(j.is_object(), source, ": \"student\" must be an object");
  StudentConfig c;
  try {
    c.window = j.value("window", c.window);
    c.sinks = j.value("sinks", c.sinks);
    c.feature_map = j.value("feature_map", c.feature_map);
    c.feature_dim = j.value("feature_dim", c.feature_dim);
    c.gate_softcap = j.value("gate_softcap", c.gate_softcap);
    c.forget_init_min = j.value("forget_init_min", c.forget_init_min);
    c.forget_init_max = j.value("forget_init_max", c.forget_init_max);
    c.input_gate_bias = j.value("input_gate_bias", c.input_gate_bias);
    c.output_gate_bias = j.value("output_gate_bias", c.output_gate_bias);
    c.chunk_size = j.value("chunk_size", c.chunk_size);
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": invalid \"student\" block: " + e.what());
  }
  return c;
}

std::optional<nlohmann::json> teacher_config_of(const nlohmann::json& config, const std::string& source) {
  if (config.value("model_type", "") != "xlstm_hybrid") return std::nullopt;
  XD_CHECK(config.contains("student") && config["student"].is_object() &&
               config["student"].contains("teacher_model_type"),
           source, ": model_type 'xlstm_hybrid' needs a \"student\" block with teacher_model_type");
  nlohmann::json teacher = config;
  teacher["model_type"] = config["student"]["teacher_model_type"];
  teacher.erase("student");
  teacher.erase("architectures");
  return teacher;
}

std::string describe_student(const nlohmann::json& config) {
  if (!teacher_config_of(config, "config.json")) return "";
  const StudentConfig s = StudentConfig::from_json(config["student"], "config.json");
  return "xlstm_hybrid student of a " + config["student"]["teacher_model_type"].get<std::string>() +
         " teacher: mLSTM (" + s.feature_map + " feature map) + sliding window " + std::to_string(s.window) +
         " + " + std::to_string(s.sinks) + " sinks in every layer";
}

}  // namespace xd::student
