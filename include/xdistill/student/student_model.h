// The student model: the teacher's decoder with every layer's mixer replaced by
// the hybrid mixer. Saved like a teacher (safetensors + config.json) with its own
// model_type "xlstm_hybrid"; config.json keeps every option of the teacher family
// and adds a "student" block (the block options and the teacher's model_type).
#pragma once
#include "xdistill/models/decoder.h"
#include "xdistill/student/student_config.h"

namespace xd::student {

constexpr const char* kStudentModelType = "xlstm_hybrid";

class StudentModel : public models::Decoder {
 public:
  StudentModel(models::ModelConfig config, StudentConfig student, const at::TensorOptions& options);
  nlohmann::json config_json() const override;
  const StudentConfig& student_config() const { return student_; }

  // (name, tensor) of the new parameters (feature maps, gates) and of all the others.
  std::vector<std::pair<std::string, at::Tensor>> new_parameters() const;
  std::vector<std::pair<std::string, at::Tensor>> copied_parameters() const;

 private:
  StudentConfig student_;
};

// The layer plan of a student: the teacher's, every mixer hybrid.
std::vector<models::BlockConfig> student_plan(const models::ModelConfig& config, const StudentConfig& student);

// Builds a student from a loaded teacher: copies every teacher parameter (same
// names), initialises the new ones as the spec says (deterministic, no randomness).
std::shared_ptr<StudentModel> student_from_teacher(const models::Decoder& teacher, const StudentConfig& student);

// The model_type factory: DIR holds a student's config.json and safetensors.
std::shared_ptr<StudentModel> load_student(const std::string& dir, const nlohmann::json& config,
                                           const at::Device& device, at::ScalarType dtype);

}  // namespace xd::student
