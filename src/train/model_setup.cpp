// Models without checkpoints (random weights for tiny teachers and benchmarks), and
// the accounting of a step: model FLOPs per token and peak memory.
#include <ATen/CPUGeneratorImpl.h>
#include <sys/resource.h>
#include <torch/torch.h>

#include <filesystem>

#if __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define XD_HAVE_CUDA_ALLOCATOR 1
#endif

#include "session.h"
#include "xdistill/util/log.h"

namespace xd::train {

void init_random_weights(models::Decoder& model, uint64_t seed, double stddev, bool draw_on_device) {
  torch::NoGradGuard no_grad;
  // A generator on the CPU so that the same seed gives the same weights everywhere.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  if (draw_on_device) torch::manual_seed(seed);
  for (auto& item : model.named_parameters(true)) {
    at::Tensor p = item.value();
    const std::string& name = item.key();
    if (name.find("hybrid.") != std::string::npos) continue;  // the student's own init
    if (name.find("norm") != std::string::npos) {
      p.fill_(1.0);
    } else if (p.dim() == 1) {
      p.zero_();
    } else if (draw_on_device) {
      p.normal_(0.0, stddev);
    } else {
      at::Tensor r = at::empty(p.sizes(), at::TensorOptions().dtype(at::kFloat));
      r.normal_(0.0, stddev, gen);
      p.copy_(r);
    }
  }
}

void create_tiny_teacher(const std::string& dir, int64_t vocab, uint64_t seed) {
  const nlohmann::json config = {
      {"model_type", "llama"},        {"architectures", {"LlamaForCausalLM"}},
      {"hidden_size", 64},            {"intermediate_size", 160},
      {"num_hidden_layers", 2},       {"num_attention_heads", 4},
      {"num_key_value_heads", 2},     {"head_dim", 16},
      {"vocab_size", vocab},          {"max_position_embeddings", 4096},
      {"rms_norm_eps", 1e-5},         {"rope_theta", 10000.0},
      {"hidden_act", "silu"},         {"tie_word_embeddings", false},
      {"bos_token_id", nullptr},      {"eos_token_id", nullptr},
  };
  const models::ModelConfig parsed = models::parse_model_config(config, "tiny teacher");
  models::Decoder teacher(parsed, models::plan_from_config(parsed), at::TensorOptions().dtype(at::kFloat));
  init_random_weights(teacher, seed, 0.1);
  models::save_model(teacher, dir);
  log::info("created a tiny random Llama teacher at ", dir, " (vocab ", vocab, ")");
}

namespace {
int64_t non_embedding_parameters(const models::Decoder& m) {
  int64_t n = 0;
  for (const auto& item : m.named_parameters(true))
    if (item.key() != "embed") n += item.value().numel();
  if (m.config().tie_word_embeddings) n += m.embed.numel();  // the head still multiplies
  return n;
}

int64_t parameters_matching(const models::Decoder& m, const std::string& part) {
  int64_t n = 0;
  for (const auto& item : m.named_parameters(true))
    if (item.key().find(part) != std::string::npos) n += item.value().numel();
  return n;
}
}  // namespace

// Model FLOPs per token, the usual 2 per multiply-accumulate and parameter for a
// forward and 4 for a backward (attention-score and mLSTM terms left out, as in the
// 6*N*T convention):
//   pretrain/distill: 6 N_student (+ 2 N_teacher with the teacher online)
//   align:            2 N_teacher (teacher forward) + 2 N_qkv (the student's frozen
//                     projections) + 6 N_new (the new parameters, trained)
double flops_per_token(const TrainSession& s) {
  const double student = static_cast<double>(non_embedding_parameters(*s.model));
  const double teacher = s.teacher ? static_cast<double>(non_embedding_parameters(*s.teacher)) : 0.0;
  switch (s.recipe.stage) {
    case Stage::Pretrain: return 6 * student;
    case Stage::Distill: return 6 * student + 2 * teacher;
    case Stage::Align: {
      const double qkv = static_cast<double>(parameters_matching(*s.model, "q_proj.weight") +
                                             parameters_matching(*s.model, "k_proj.weight") +
                                             parameters_matching(*s.model, "v_proj.weight"));
      const double fresh = static_cast<double>(parameters_matching(*s.model, ".hybrid."));
      return 2 * teacher + 2 * qkv + 6 * fresh;
    }
  }
  return 0.0;
}

int64_t peak_memory_bytes(const at::Device& device) {
#ifdef XD_HAVE_CUDA_ALLOCATOR
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index() < 0 ? 0 : device.index());
    return stats.allocated_bytes[0].peak;
  }
#endif
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

}  // namespace xd::train
