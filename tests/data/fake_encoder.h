// A byte-level stand-in tokenizer for the data tests: every UTF-8 byte b is token
// b + 3; 1 = BOS, 2 = EOS. Chat renders "<role>:content\n" per message, the
// "content\n" of assistant messages being the assistant tokens.
#pragma once
#include <string>
#include <vector>

#include "xdistill/data/encoder.h"

namespace xd::data::testing {

class ByteEncoder : public Encoder {
 public:
  explicit ByteEncoder(bool bos = true, std::string fingerprint = "bytes-v1")
      : bos_(bos), fingerprint_(std::move(fingerprint)) {}

  std::vector<int32_t> encode_text(const std::string& text) const override {
    std::vector<int32_t> ids;
    if (bos_) ids.push_back(1);
    for (unsigned char c : text) ids.push_back(int32_t(c) + 3);
    return ids;
  }
  EncodedChat encode_chat(const std::vector<ChatTurn>& messages) const override {
    EncodedChat out;
    auto put = [&](const std::string& s, uint8_t mask) {
      for (unsigned char c : s) {
        out.ids.push_back(int32_t(c) + 3);
        out.assistant_mask.push_back(mask);
      }
    };
    for (const ChatTurn& m : messages) {
      put("<" + m.role + ">:", 0);
      put(m.content + "\n", m.role == "assistant" ? 1 : 0);
    }
    return out;
  }
  TokenizerInfo info() const override { return {fingerprint_, 259, 2, "fake-bytes"}; }

  static std::string decode(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids)
      if (id >= 3) s += char(id - 3);
    return s;
  }

 private:
  bool bos_;
  std::string fingerprint_;
};

}  // namespace xd::data::testing
