#include "xdistill/student/student_model.h"

#include <torch/torch.h>

#include <map>

#include "xdistill/student/hybrid_mixer.h"
#include "xdistill/util/error.h"

namespace xd::student {
namespace {

models::QkNorm parse_qk_norm(const std::string& name, const std::string& source) {
  for (auto q : {models::QkNorm::none, models::QkNorm::per_head, models::QkNorm::full})
    if (name == models::to_string(q)) return q;
  throw Error(source + ": student.qk_norm '" + name + "' is not one of none, per-head, full-projection");
}

}  // namespace

std::vector<models::BlockConfig> student_plan(const models::ModelConfig& config, const StudentConfig& student) {
  student.validate(config.head_dim);
  auto plan = models::plan_from_config(config);
  for (auto& block : plan) {
    block.mixer = kHybridMixerName;
    block.mixer_options = student.to_json();
  }
  return plan;
}

StudentModel::StudentModel(models::ModelConfig config, StudentConfig student, const at::TensorOptions& options)
    : models::Decoder(config, (register_student(), student_plan(config, student)), options),
      student_(std::move(student)) {}

nlohmann::json StudentModel::config_json() const {
  nlohmann::json j = models::Decoder::config_json();
  const models::ModelConfig& c = config();
  nlohmann::json block = student_.to_json();
  // The teacher family and what the loader refined from the teacher's weights, so
  // that the student rebuilds the same layers without the teacher at hand.
  block["teacher_model_type"] = c.model_type;
  block["qkv_bias"] = c.qkv_bias;
  block["o_bias"] = c.o_bias;
  block["mlp_bias"] = c.mlp_bias;
  block["qk_norm"] = models::to_string(c.qk_norm);
  j["student"] = block;
  j["model_type"] = kStudentModelType;
  j["architectures"] = nlohmann::json::array({"XlstmHybridForCausalLM"});
  return j;
}

std::vector<std::pair<std::string, at::Tensor>> StudentModel::new_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : named_parameters(true))
    if (is_new_parameter(item.key())) out.emplace_back(item.key(), item.value());
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> StudentModel::copied_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : named_parameters(true))
    if (!is_new_parameter(item.key())) out.emplace_back(item.key(), item.value());
  return out;
}

std::shared_ptr<StudentModel> student_from_teacher(const models::Decoder& teacher, const StudentConfig& student) {
  auto options = at::TensorOptions().device(teacher.device()).dtype(teacher.dtype());
  auto model = std::make_shared<StudentModel>(teacher.config(), student, options);
  std::map<std::string, at::Tensor> source;
  for (const auto& item : teacher.named_parameters(true)) source[item.key()] = item.value();
  torch::NoGradGuard no_grad;
  for (const auto& [name, param] : model->copied_parameters()) {
    auto it = source.find(name);
    XD_CHECK(it != source.end(), "student: the teacher has no parameter '", name, "'");
    XD_CHECK(it->second.sizes() == param.sizes(), "student: teacher parameter '", name, "' has shape ",
             it->second.sizes(), ", the student expects ", param.sizes());
    param.copy_(it->second);
  }
  model->eval();
  return model;
}

std::shared_ptr<StudentModel> load_student(const std::string& dir, const nlohmann::json& config_in,
                                           const at::Device& device, at::ScalarType dtype) {
  const std::string source = dir + "/config.json";
  XD_CHECK(config_in.contains("student") && config_in["student"].is_object(), source,
           ": model_type '", kStudentModelType, "' needs a \"student\" block");
  const nlohmann::json& block = config_in["student"];
  XD_CHECK(block.contains("teacher_model_type"), source, ": student.teacher_model_type is missing");
  models::ModelConfig config = models::parse_model_config(*teacher_config_of(config_in, source), source);
  config.qkv_bias = block.value("qkv_bias", config.qkv_bias);
  config.o_bias = block.value("o_bias", config.o_bias);
  config.mlp_bias = block.value("mlp_bias", config.mlp_bias);
  if (block.contains("qk_norm")) config.qk_norm = parse_qk_norm(block["qk_norm"].get<std::string>(), source);
  const StudentConfig student = StudentConfig::from_json(block, source);
  auto model = std::make_shared<StudentModel>(config, student, at::TensorOptions().device(device).dtype(dtype));
  models::load_weights(*model, dir);
  model->eval();
  return model;
}

}  // namespace xd::student
