// From text requests to token requests, as lm-evaluation-harness's HF backend does,
// so that scores are comparable with the harness's:
//  - context/continuation: trailing white space of the context moves to the front of
//    the continuation; the continuation's tokens are those of encode(context +
//    continuation) after the tokens of encode(context) (so merges across the seam
//    are kept); an empty context becomes the prefix token (BOS, else EOS).
//  - rolling windows: disjoint chunks of at most max_length predicted tokens, each
//    conditioned on the max_length tokens before it (the first on the prefix token).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "xdistill/tokenizer/tokenizer.h"

namespace xd::eval {

using TokenIds = std::vector<int64_t>;

struct TokenRequest {
  TokenIds context, continuation;  // the model reads (context + continuation)[:-1]
};

class RequestEncoder {
 public:
  RequestEncoder(tok::Tokenizer tokenizer, bool add_bos);
  // Plain text to ids; with add_bos, BOS is put first unless the text already starts with it.
  TokenIds encode(const std::string& text) const;
  TokenRequest encode_pair(const std::string& context, const std::string& continuation) const;
  int64_t prefix_token() const { return prefix_; }
  const tok::Tokenizer& tokenizer() const { return tokenizer_; }

 private:
  tok::Tokenizer tokenizer_;
  bool add_bos_;
  int64_t prefix_;
};

std::vector<TokenRequest> rolling_windows(const TokenIds& tokens, int64_t prefix_token, int64_t max_length);

// The first position at which `text` contains any of `stops` (npos if none), and the
// text cut there.
std::string cut_at_stop(const std::string& text, const std::vector<std::string>& stops);

}  // namespace xd::eval
