#include "tokenizer/bpe.h"

#include <climits>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <queue>

#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"
#include "xdistill/util/error.h"

namespace xd::tok {
namespace {

// Words longer than this are not cached (they are rare, and would crowd the cache).
constexpr size_t kMaxCachedWord = 256;
// Above this many symbols the merge loop switches to a priority queue.
constexpr size_t kShortWord = 192;

std::string json_string_or_empty(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j.at(key).is_string() ? j.at(key).get<std::string>() : std::string();
}

std::pair<std::string, std::string> parse_merge(const nlohmann::json& m, const std::string& where, size_t index) {
  if (m.is_string()) {
    const std::string s = m.get<std::string>();
    const size_t space = s.find(' ');
    XD_CHECK(space != std::string::npos, where, ": merge #", index, " '", s, "' is not 'left right'");
    return {s.substr(0, space), s.substr(space + 1)};
  }
  XD_CHECK(m.is_array() && m.size() == 2, where, ": merge #", index, " must be \"a b\" or [a, b]");
  return {m[0].get<std::string>(), m[1].get<std::string>()};
}

}  // namespace

BpeModel BpeModel::from_json(const nlohmann::json& model, bool byte_level, const std::string& where) {
  BpeModel m;
  XD_CHECK(model.value("type", std::string("BPE")) == "BPE", where, ": model type '", model.value("type", ""),
           "' is not supported (only BPE)");
  const auto dropout = model.find("dropout");
  XD_CHECK(dropout == model.end() || dropout->is_null() || dropout->get<double>() == 0.0, where,
           ": BPE dropout is not supported");
  m.byte_level_ = byte_level;
  m.ignore_merges_ = model.value("ignore_merges", false);
  m.byte_fallback_ = model.value("byte_fallback", false);
  m.fuse_unk_ = model.value("fuse_unk", false);
  m.prefix_ = json_string_or_empty(model, "continuing_subword_prefix");
  m.suffix_ = json_string_or_empty(model, "end_of_word_suffix");

  const auto& vocab = model.at("vocab");
  XD_CHECK(vocab.is_object(), where, ": model.vocab must be an object of token -> id");
  m.vocab_.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int64_t id = it.value().get<int64_t>();
    XD_CHECK(id >= 0 && id < INT32_MAX, where, ": vocab id ", id, " of '", it.key(), "' out of range");
    if (size_t(id) >= m.id_to_token_.size()) m.id_to_token_.resize(size_t(id) + 1);
    m.id_to_token_[size_t(id)] = it.key();
    m.vocab_.insert(it.key(), int32_t(id));
  }
  const std::string unk = json_string_or_empty(model, "unk_token");
  if (!unk.empty()) {
    m.unk_id_ = m.vocab_.find(unk);
    XD_CHECK(m.unk_id_ >= 0, where, ": unk_token '", unk, "' is not in the vocabulary");
  }

  const auto& merges = model.at("merges");
  m.merges_.reserve(merges.size());
  m.merge_list_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    auto [left, right] = parse_merge(merges[rank], where, rank);
    const int32_t a = m.vocab_.find(left), b = m.vocab_.find(right);
    XD_CHECK(a >= 0 && b >= 0, where, ": merge #", rank, " '", left, " ", right, "' uses a token not in the vocabulary");
    std::string merged = left + right.substr(std::min(m.prefix_.size(), right.size()));
    const int32_t id = m.vocab_.find(merged);
    XD_CHECK(id >= 0, where, ": merge #", rank, " gives '", merged, "', which is not in the vocabulary");
    m.merges_.insert(a, b, PairMap::Value{int32_t(rank), id});
    m.merge_list_.emplace_back(std::move(left), std::move(right));
  }

  if (byte_level) {
    m.raw_vocab_.reserve(m.id_to_token_.size());
    std::string raw;
    for (size_t id = 0; id < m.id_to_token_.size(); ++id)
      if (!m.id_to_token_[id].empty() && byte_level_to_bytes(m.id_to_token_[id], raw))
        m.raw_vocab_.insert(raw, int32_t(id));
    for (int b = 0; b < 256; ++b) {
      std::string single;
      utf8_append(single, byte_to_code_point()[size_t(b)]);
      m.byte_ids_[b] = m.vocab_.find(single);
    }
    m.fast_bytes_ = m.prefix_.empty() && m.suffix_.empty();
  }
  return m;
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  const int32_t id = vocab_.find(token);
  return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= id_to_token_.size() || id_to_token_[size_t(id)].empty()) return nullptr;
  return &id_to_token_[size_t(id)];
}

void BpeModel::describe(std::string& out) const {
  for (size_t id = 0; id < id_to_token_.size(); ++id) {
    out += std::to_string(id) + '\t' + id_to_token_[id] + '\n';
  }
  for (const auto& [a, b] : merge_list_) out += a + ' ' + b + '\n';
  out += "prefix=" + prefix_ + "\tsuffix=" + suffix_ + "\tignore_merges=" + std::to_string(ignore_merges_) +
         "\tbyte_fallback=" + std::to_string(byte_fallback_) + "\tunk=" + std::to_string(unk_id_) + '\n';
}

// The word's characters as vocabulary ids, before any merge (Hugging Face's
// merge_word): prefix on non-first characters, suffix on the last, byte fallback
// or the unknown token for characters missing from the vocabulary.
void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& symbols) const {
  if (fast_bytes_) {
    for (unsigned char b : word) {
      const int32_t id = byte_ids_[b];
      if (id >= 0) symbols.push_back(id);
      else if (unk_id_ >= 0) symbols.push_back(unk_id_);
    }
    return;
  }
  const std::string mapped = byte_level_ ? bytes_to_byte_level(word) : std::string(word);
  bool pending_unk = false;
  std::string piece;
  for (size_t i = 0; i < mapped.size();) {
    const size_t len = utf8_length(static_cast<unsigned char>(mapped[i]));
    piece.clear();
    if (i > 0) piece += prefix_;
    piece.append(mapped, i, len);
    if (i + len >= mapped.size()) piece += suffix_;
    i += len;
    const int32_t id = vocab_.find(piece);
    if (id >= 0) {
      pending_unk = false;
      symbols.push_back(id);
      continue;
    }
    if (byte_fallback_) {
      std::vector<int32_t> bytes;
      for (unsigned char b : piece) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        const int32_t byte_id = vocab_.find(name);
        if (byte_id < 0) break;
        bytes.push_back(byte_id);
      }
      if (bytes.size() == piece.size()) {
        pending_unk = false;
        symbols.insert(symbols.end(), bytes.begin(), bytes.end());
        continue;
      }
    }
    if (unk_id_ >= 0) {
      if (!(fuse_unk_ && pending_unk)) symbols.push_back(unk_id_);
      pending_unk = true;
    }
  }
}

// Short words: repeatedly merge the lowest-ranked adjacent pair (leftmost on ties).
void BpeModel::merge(std::vector<int32_t>& s) const {
  if (s.size() > kShortWord) return merge_long(s);
  size_t n = s.size();
  PairMap::Value pairs[kShortWord];
  for (size_t i = 0; i + 1 < n; ++i) pairs[i] = merges_.find(s[i], s[i + 1]);
  while (n > 1) {
    size_t best = n;
    int32_t best_rank = INT32_MAX;
    for (size_t i = 0; i + 1 < n; ++i)
      if (pairs[i].rank >= 0 && pairs[i].rank < best_rank) best_rank = pairs[i].rank, best = i;
    if (best == n) break;
    s[best] = pairs[best].id;
    for (size_t j = best + 1; j + 1 < n; ++j) s[j] = s[j + 1], pairs[j] = pairs[j + 1];
    --n;
    if (best > 0) pairs[best - 1] = merges_.find(s[best - 1], s[best]);
    if (best + 1 < n) pairs[best] = merges_.find(s[best], s[best + 1]);
  }
  s.resize(n);
}

// Long words: a priority queue of candidate merges over a linked list of
// symbols, O(n log n). Stale queue entries are recognised and skipped.
void BpeModel::merge_long(std::vector<int32_t>& s) const {
  struct Candidate {
    int32_t rank, pos, id;
    bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const int32_t n = int32_t(s.size());
  std::vector<int32_t> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  std::vector<char> alive(static_cast<size_t>(n), 1);
  std::priority_queue<Candidate> queue;
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[size_t(pos)] >= n) return;
    const PairMap::Value v = merges_.find(s[size_t(pos)], s[size_t(next[size_t(pos)])]);
    if (v.rank >= 0) queue.push({v.rank, pos, v.id});
  };
  for (int32_t i = 0; i < n; ++i) prev[size_t(i)] = i - 1, next[size_t(i)] = i + 1;
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    const size_t p = size_t(top.pos);
    if (!alive[p] || next[p] >= n) continue;
    const size_t q = size_t(next[p]);
    const PairMap::Value now = merges_.find(s[p], s[q]);
    if (now.rank != top.rank || now.id != top.id) continue;  // stale entry
    s[p] = top.id;
    alive[q] = 0;
    next[p] = next[q];
    if (next[p] < n) prev[size_t(next[p])] = int32_t(p);
    push(prev[p]);
    push(int32_t(p));
  }
  size_t w = 0;
  for (int32_t i = 0; i < n; ++i)
    if (alive[size_t(i)]) s[w++] = s[size_t(i)];
  s.resize(w);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out, WordCache& cache) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const int32_t id = byte_level_ ? raw_vocab_.find(word) : vocab_.find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWord;
  if (cacheable && cache.find(word, out)) return;
  thread_local std::vector<int32_t> symbols;
  symbols.clear();
  initial_symbols(word, symbols);
  merge(symbols);
  if (cacheable) cache.insert(word, symbols.data(), symbols.size());
  out.insert(out.end(), symbols.begin(), symbols.end());
}

}  // namespace xd::tok
