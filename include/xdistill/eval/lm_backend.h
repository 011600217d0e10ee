// The model side of evaluation, as strings in and scores out (the request types of
// lm-evaluation-harness). Task logic (prompts, few-shot, metrics) is written against
// this interface and stays torch-free; ModelBackend (eval/model_backend.h) implements
// it with a LanguageModel and a Tokenizer, and tests implement it with fakes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace xd::eval {

struct LoglikelihoodQuery {
  std::string context, continuation;
};

struct LoglikelihoodAnswer {
  double logprob = 0;     // Σ log p(continuation tokens | context), natural log
  bool greedy = false;    // every continuation token is the arg-max prediction
  int64_t tokens = 0;     // number of scored tokens
};

struct GenerationQuery {
  std::string prompt;
  std::vector<std::string> until;  // stop sequences; the text is cut before the first one
  int64_t max_new_tokens = 256;
};

class LanguageModelBackend {
 public:
  virtual ~LanguageModelBackend() = default;
  // `label` names the work in the progress bar.
  virtual std::vector<LoglikelihoodAnswer> loglikelihood(const std::vector<LoglikelihoodQuery>& queries,
                                                         const std::string& label) = 0;
  // Log-likelihood of each whole text, in rolling windows of the model's context.
  // `max_length` 0 = the backend's own maximum.
  virtual std::vector<LoglikelihoodAnswer> loglikelihood_rolling(const std::vector<std::string>& texts,
                                                                 int64_t max_length, const std::string& label) = 0;
  // Greedy generations (the text after the prompt, cut at the first stop sequence).
  virtual std::vector<std::string> generate_until(const std::vector<GenerationQuery>& queries,
                                                  const std::string& label) = 0;
  // The prompt as one user turn of the chat template, ready for the assistant's reply.
  virtual std::string apply_chat_template(const std::string& user_message) = 0;
};

}  // namespace xd::eval
