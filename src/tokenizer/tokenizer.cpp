// Tokenizer encode / decode: added-token extraction, normalisation,
// pre-tokenisation and BPE per word, then the post-processor; batches on threads.
#include <algorithm>
#include <array>
#include <memory>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>

#include "tokenizer/tokenizer_state.h"
#include "tokenizer/utf8.h"
#include "xdistill/util/error.h"

namespace xd::tok {
namespace {

// Per-thread word caches, one for each of the last few tokenizers used on the
// thread, so that alternating between tokenizers does not flush them.
struct ThreadCache {
  uint64_t serial = 0;
  uint64_t last_use = 0;
  std::unique_ptr<WordCache> words;
};

WordCache& cache_for(const TokenizerState& s) {
  thread_local std::array<ThreadCache, 4> caches;
  thread_local uint64_t clock = 0;
  ++clock;
  ThreadCache* victim = &caches[0];
  for (ThreadCache& c : caches) {
    if (c.serial == s.serial) {
      c.last_use = clock;
      return *c.words;
    }
    if (c.last_use < victim->last_use) victim = &c;
  }
  if (!victim->words) victim->words = std::make_unique<WordCache>();
  else victim->words->clear();
  victim->serial = s.serial;
  victim->last_use = clock;
  return *victim->words;
}

void check_utf8(const std::string& text) {
  const size_t bad = utf8_invalid_offset(text);
  XD_CHECK(bad == text.size(), "tokenizer: text is not valid UTF-8 (invalid byte 0x", std::hex,
           int(static_cast<unsigned char>(text[bad])), std::dec, " at byte ", bad, " of ", text.size(), ")");
}

// Encodes plain text (no added tokens left in it) of the normalised piece
// `piece`; `origin` is where the piece starts in the input, `exact` whether
// positions inside the piece are input positions (not changed by normalisation).
void encode_plain(const TokenizerState& s, std::string_view piece, uint32_t origin, bool exact,
                  std::vector<int32_t>& ids, std::vector<uint32_t>* offsets, WordCache& cache) {
  thread_local std::vector<Piece> words;
  words.clear();
  s.pre_tokenizer.split(piece, words);
  for (const Piece& w : words) {
    const size_t first = ids.size();
    s.model.encode_word(piece.substr(w.begin, w.end - w.begin), ids, cache);
    if (!offsets) continue;
    uint32_t at = exact ? origin + w.begin : origin;
    for (size_t i = first; i < ids.size(); ++i) {
      offsets->push_back(at);
      if (exact) at = std::min(at + s.raw_length[size_t(ids[i])], origin + w.end);
    }
  }
}

void encode_into(const TokenizerState& s, const std::string& text, bool add_special_tokens,
                 std::vector<int32_t>& ids, std::vector<uint32_t>* offsets, WordCache& cache) {
  check_utf8(text);
  if (add_special_tokens) {
    ids.insert(ids.end(), s.post_processor.prefix().begin(), s.post_processor.prefix().end());
    if (offsets) offsets->resize(ids.size(), 0);
  }
  std::vector<TextSplit> splits, inner;
  s.raw_matcher.split(text, splits);
  std::string normalized;
  for (const TextSplit& split : splits) {
    if (split.id >= 0) {
      ids.push_back(split.id);
      if (offsets) offsets->push_back(split.begin);
      continue;
    }
    std::string_view piece = std::string_view(text).substr(split.begin, split.end - split.begin);
    const bool changed = s.normalizer.normalize(piece, normalized);
    if (changed) piece = normalized;
    if (s.normalized_matcher.empty()) {
      encode_plain(s, piece, split.begin, !changed, ids, offsets, cache);
      continue;
    }
    inner.clear();
    s.normalized_matcher.split(piece, inner);
    for (const TextSplit& sub : inner) {
      const uint32_t origin = changed ? split.begin : split.begin + sub.begin;
      if (sub.id >= 0) {
        ids.push_back(sub.id);
        if (offsets) offsets->push_back(origin);
      } else {
        encode_plain(s, piece.substr(sub.begin, sub.end - sub.begin), origin, !changed, ids, offsets, cache);
      }
    }
  }
  if (add_special_tokens) {
    ids.insert(ids.end(), s.post_processor.suffix().begin(), s.post_processor.suffix().end());
    if (offsets) offsets->resize(ids.size(), uint32_t(text.size()));
  }
}

}  // namespace

std::vector<int32_t> Tokenizer::encode(const std::string& text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  encode_into(*state_, text, add_special_tokens, ids, nullptr, cache_for(*state_));
  return ids;
}

std::vector<int32_t> Tokenizer::encode_with_offsets(const std::string& text, bool add_special_tokens,
                                                    std::vector<uint32_t>& offsets) const {
  std::vector<int32_t> ids;
  offsets.clear();
  encode_into(*state_, text, add_special_tokens, ids, &offsets, cache_for(*state_));
  return ids;
}

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                                          bool add_special_tokens, int threads) const {
  std::vector<std::vector<int32_t>> out(texts.size());
  size_t workers = threads > 0 ? size_t(threads) : std::max(1u, std::thread::hardware_concurrency());
  workers = std::min(workers, texts.size());
  if (workers <= 1) {
    for (size_t i = 0; i < texts.size(); ++i) out[i] = encode(texts[i], add_special_tokens);
    return out;
  }
  // Texts are handed out in small chunks so that long texts do not leave
  // threads idle; the first error stops every worker and is rethrown.
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  const size_t chunk = std::max<size_t>(1, std::min<size_t>(64, texts.size() / (workers * 16)));
  auto work = [&] {
    try {
      while (!failed) {
        const size_t begin = next.fetch_add(chunk);
        if (begin >= texts.size()) break;
        for (size_t i = begin; i < std::min(begin + chunk, texts.size()); ++i)
          out[i] = encode(texts[i], add_special_tokens);
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  std::vector<std::thread> pool;
  for (size_t w = 0; w < workers; ++w) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const TokenizerState& s = *state_;
  std::vector<const std::string*> pieces;
  pieces.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    XD_CHECK(id >= 0 && id < s.id_limit && s.exists[size_t(id)],
             "tokenizer: cannot decode id ", id, " (position ", i, "): not in the vocabulary of ", s.directory);
    if (skip_special_tokens && s.special[size_t(id)]) continue;
    pieces.push_back(&s.decoded_bytes[size_t(id)]);
  }
  return s.decoder.join(pieces);
}

int64_t Tokenizer::vocab_size() const { return state_->id_limit; }

std::optional<int32_t> Tokenizer::token_to_id(const std::string& token) const {
  const int32_t added = state_->added_ids.find(token);
  if (added >= 0) return added;
  return state_->model.token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  for (const AddedToken& t : state_->added_tokens)
    if (t.id == id) return t.content;
  if (const std::string* token = state_->model.id_to_token(id)) return *token;
  return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < state_->id_limit && state_->special[size_t(id)] != 0;
}

std::optional<int32_t> Tokenizer::bos_id() const { return state_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return state_->eos; }
std::optional<int32_t> Tokenizer::pad_id() const { return state_->pad; }
const TokenizerConfig& Tokenizer::config() const { return state_->config; }
const std::string& Tokenizer::directory() const { return state_->directory; }
std::string Tokenizer::fingerprint() const { return state_->fingerprint; }

}  // namespace xd::tok
