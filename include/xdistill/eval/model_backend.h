// LanguageModelBackend over a LanguageModel (teacher or student) and a Tokenizer.
//  - Log-likelihoods: token requests sorted by length (longest first), batched,
//    right-padded (exact for causal models: padding only follows the scored
//    positions), one parallel forward per batch; log-softmax only at the scored
//    positions. Memory: the float32 logits of a batch, B·T·V·4 bytes.
//  - Generation: greedy through models::generate, which decodes prompts of equal
//    length together through the model's cache (the teacher's KV cache, the
//    student's recurrent state and window cache); the text is cut at the first stop
//    sequence afterwards.
// (No torch in this header: the command and tests include it.)
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xdistill/eval/lm_backend.h"
#include "xdistill/eval/token_requests.h"

namespace xd::models { class LanguageModel; }

namespace xd::eval {

struct BackendOptions {
  int64_t batch_size = 0;   // 0 = auto: from a budget of logits memory, halved on out-of-memory
  bool add_bos = false;
  int64_t max_length = 0;   // 0 = the model's max_position_embeddings
};

class ModelBackend : public LanguageModelBackend {
 public:
  ModelBackend(std::shared_ptr<models::LanguageModel> model, tok::Tokenizer tokenizer, BackendOptions options);

  std::vector<LoglikelihoodAnswer> loglikelihood(const std::vector<LoglikelihoodQuery>& queries,
                                                 const std::string& label) override;
  std::vector<LoglikelihoodAnswer> loglikelihood_rolling(const std::vector<std::string>& texts, int64_t max_length,
                                                         const std::string& label) override;
  std::vector<std::string> generate_until(const std::vector<GenerationQuery>& queries,
                                          const std::string& label) override;
  std::string apply_chat_template(const std::string& user_message) override;

  // Scores token requests (exposed for tests).
  std::vector<LoglikelihoodAnswer> score(const std::vector<TokenRequest>& requests, const std::string& label);
  int64_t max_length() const { return max_length_; }

 private:
  int64_t batch_for(int64_t tokens) const;

  std::shared_ptr<models::LanguageModel> model_;
  RequestEncoder encoder_;
  BackendOptions options_;
  int64_t max_length_ = 0;
  int64_t batch_cap_ = 0;  // lowered after an out-of-memory error
};

}  // namespace xd::eval
