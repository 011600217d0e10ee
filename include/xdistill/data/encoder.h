// What data preparation needs from a tokenizer. The real one wraps xd::tok::Tokenizer
// (tokenizer_encoder(), src/data/tokenizer_encoder.cpp); tests use small fakes.
// Implementations must be safe to call from several threads at once.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xdistill/data/manifest.h"

namespace xd::data {

struct ChatTurn {
  std::string role, content;
};

struct EncodedChat {
  std::vector<int32_t> ids;
  std::vector<uint8_t> assistant_mask;  // per id: 1 = produced by the assistant
};

class Encoder {
 public:
  virtual ~Encoder() = default;
  virtual std::vector<int32_t> encode_text(const std::string& text) const = 0;
  // The conversation rendered with the tokenizer's chat template, then encoded.
  virtual EncodedChat encode_chat(const std::vector<ChatTurn>& messages) const = 0;
  virtual TokenizerInfo info() const = 0;
};

// The tokenizer in `dir` (tokenizer.json + tokenizer_config.json). Plain text is
// encoded with the tokenizer's special tokens (e.g. BOS) when add_special_tokens.
std::unique_ptr<Encoder> tokenizer_encoder(const std::string& dir, bool add_special_tokens);

}  // namespace xd::data
