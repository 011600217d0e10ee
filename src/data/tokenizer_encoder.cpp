// The data module's Encoder over the project's tokenizer (xd::tok).
#include "xdistill/data/encoder.h"
#include "xdistill/tokenizer/chat_template.h"
#include "xdistill/tokenizer/tokenizer.h"

namespace xd::data {
namespace {

class TokenizerEncoder : public Encoder {
 public:
  TokenizerEncoder(const std::string& dir, bool add_special_tokens)
      : tokenizer_(tok::Tokenizer::load(dir)), dir_(dir), add_special_tokens_(add_special_tokens) {}

  std::vector<int32_t> encode_text(const std::string& text) const override {
    return tokenizer_.encode(text, add_special_tokens_);
  }

  EncodedChat encode_chat(const std::vector<ChatTurn>& messages) const override {
    std::vector<tok::ChatMessage> chat;
    chat.reserve(messages.size());
    for (const ChatTurn& m : messages) chat.push_back({m.role, m.content});
    tok::RenderedChat rendered = tok::render_chat(tokenizer_, chat, /*add_generation_prompt=*/false);
    return {std::move(rendered.ids), std::move(rendered.assistant_mask)};
  }

  TokenizerInfo info() const override {
    return {tokenizer_.fingerprint(), tokenizer_.vocab_size(), tokenizer_.eos_id(), dir_};
  }

 private:
  tok::Tokenizer tokenizer_;
  std::string dir_;
  bool add_special_tokens_;
};

}  // namespace

std::unique_ptr<Encoder> tokenizer_encoder(const std::string& dir, bool add_special_tokens) {
  return std::make_unique<TokenizerEncoder>(dir, add_special_tokens);
}

}  // namespace xd::data
