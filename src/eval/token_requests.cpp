#include "xdistill/eval/token_requests.h"

#include <algorithm>

#include "xdistill/util/error.h"

namespace xd::eval {

RequestEncoder::RequestEncoder(tok::Tokenizer tokenizer, bool add_bos)
    : tokenizer_(std::move(tokenizer)), add_bos_(add_bos) {
  auto prefix = tokenizer_.bos_id();
  if (!prefix) prefix = tokenizer_.eos_id();
  if (!prefix)
    throw Error("tokenizer " + tokenizer_.directory() + " has neither a BOS nor an EOS token to start an empty context");
  prefix_ = *prefix;
  if (add_bos_ && !tokenizer_.bos_id())
    throw UsageError("--add-bos: tokenizer " + tokenizer_.directory() + " has no BOS token");
}

TokenIds RequestEncoder::encode(const std::string& text) const {
  const auto ids32 = tokenizer_.encode(text, /*add_special_tokens=*/false);
  TokenIds ids;
  ids.reserve(ids32.size() + 1);
  if (add_bos_ && (ids32.empty() || ids32.front() != *tokenizer_.bos_id())) ids.push_back(*tokenizer_.bos_id());
  ids.insert(ids.end(), ids32.begin(), ids32.end());
  return ids;
}

TokenRequest RequestEncoder::encode_pair(const std::string& context, const std::string& continuation) const {
  const size_t kept = context.find_last_not_of(" \t\n\r\f\v");
  const size_t split = kept == std::string::npos ? 0 : kept + 1;
  const std::string ctx = context.substr(0, split);
  const std::string cont = context.substr(split) + continuation;
  TokenRequest r;
  if (ctx.empty() && !add_bos_) {
    r.context = {prefix_};
    r.continuation = encode(cont);
    return r;
  }
  const TokenIds whole = encode(ctx + cont);
  r.context = encode(ctx);
  // The context's tokens normally prefix the whole's; where a merge crosses the seam
  // the harness keeps the context's own tokens and cuts the whole at their count.
  const size_t n = std::min(r.context.size(), whole.size());
  r.continuation.assign(whole.begin() + n, whole.end());
  return r;
}

std::vector<TokenRequest> rolling_windows(const TokenIds& tokens, int64_t prefix_token, int64_t max_length) {
  if (max_length < 1) throw Error("rolling windows need a maximum length >= 1");
  std::vector<TokenRequest> out;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return out;
  const int64_t first = std::min(max_length, n);
  out.push_back({{prefix_token}, TokenIds(tokens.begin(), tokens.begin() + first)});
  for (int64_t done = first; done < n;) {
    const int64_t end = std::min(n, done + max_length);
    // Condition on the tokens just before the chunk so the window reads max_length tokens.
    out.push_back({TokenIds(tokens.begin() + (end - max_length - 1), tokens.begin() + done),
                   TokenIds(tokens.begin() + done, tokens.begin() + end)});
    done = end;
  }
  return out;
}

std::string cut_at_stop(const std::string& text, const std::vector<std::string>& stops) {
  size_t cut = std::string::npos;
  for (const auto& s : stops)
    if (!s.empty()) cut = std::min(cut, text.find(s));
  return cut == std::string::npos ? text : text.substr(0, cut);
}

}  // namespace xd::eval
