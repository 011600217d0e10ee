// Open-addressing hash tables for the tokenizer's hot paths: merge-pair lookup,
// token text to id, and the per-thread cache of encoded words. They avoid the
// per-node allocations of std::unordered_map; keys live in one arena.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace xd::tok {

inline uint64_t mix64(uint64_t x) {
  x ^= x >> 32;
  x *= 0xD6E8FEB86659FD93ull;
  x ^= x >> 32;
  return x;
}

inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (s.size() * 0xFF51AFD7ED558CCDull);
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = mix64(h ^ w) * 0x9E3779B97F4A7C15ull;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, s.data() + i, s.size() - i);
  return mix64(h ^ tail);
}

inline size_t table_size_for(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  return cap;
}

// (left id, right id) -> (merge rank, merged id).
class PairMap {
 public:
  struct Value {
    int32_t rank = -1, id = -1;
  };
  void reserve(size_t n) {
    slots_.assign(table_size_for(n), Slot{});
    mask_ = slots_.size() - 1;
  }
  // Later insertions of the same pair replace earlier ones.
  void insert(int32_t a, int32_t b, Value v) {
    const uint64_t key = pack(a, b);
    size_t i = mix64(key) & mask_;
    while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
    slots_[i].key = key;
    slots_[i].value = v;
  }
  // rank < 0 when the pair does not merge.
  Value find(int32_t a, int32_t b) const {
    const uint64_t key = pack(a, b);
    size_t i = mix64(key) & mask_;
    while (true) {
      const Slot& s = slots_[i];
      if (s.key == key) return s.value;
      if (s.key == kEmpty) return Value{};
      i = (i + 1) & mask_;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t pack(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  struct Slot {
    uint64_t key = kEmpty;
    Value value;
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// Byte string -> id.
class StringIdMap {
 public:
  void reserve(size_t n) {
    slots_.assign(table_size_for(n), Slot{});
    mask_ = slots_.size() - 1;
  }
  void insert(std::string_view key, int32_t value) {
    const uint64_t h = hash_bytes(key);
    size_t i = h & mask_;
    while (slots_[i].value >= 0) {
      if (slots_[i].hash == h && view(slots_[i]) == key) {
        slots_[i].value = value;
        return;
      }
      i = (i + 1) & mask_;
    }
    slots_[i] = Slot{h, uint32_t(keys_.size()), uint32_t(key.size()), value};
    keys_.append(key);
  }
  int32_t find(std::string_view key) const {
    if (slots_.empty()) return -1;
    const uint64_t h = hash_bytes(key);
    size_t i = h & mask_;
    while (slots_[i].value >= 0) {
      if (slots_[i].hash == h && view(slots_[i]) == key) return slots_[i].value;
      i = (i + 1) & mask_;
    }
    return -1;
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t offset = 0, length = 0;
    int32_t value = -1;
  };
  std::string_view view(const Slot& s) const { return std::string_view(keys_).substr(s.offset, s.length); }
  std::vector<Slot> slots_;
  std::string keys_;
  size_t mask_ = 0;
};

// Word -> its token ids; bounded: it forgets everything when half full.
class WordCache {
 public:
  explicit WordCache(size_t capacity = size_t(1) << 17) : slots_(capacity), mask_(capacity - 1) {}

  bool find(std::string_view word, std::vector<int32_t>& out) const {
    const uint64_t h = hash_bytes(word);
    size_t i = h & mask_;
    while (slots_[i].used) {
      const Slot& s = slots_[i];
      if (s.hash == h && s.key_length == word.size() &&
          std::memcmp(keys_.data() + s.key_offset, word.data(), word.size()) == 0) {
        out.insert(out.end(), values_.begin() + s.value_offset, values_.begin() + s.value_offset + s.value_length);
        return true;
      }
      i = (i + 1) & mask_;
    }
    return false;
  }
  void insert(std::string_view word, const int32_t* ids, size_t n) {
    if (size_ * 2 >= slots_.size()) clear();
    const uint64_t h = hash_bytes(word);
    size_t i = h & mask_;
    while (slots_[i].used) i = (i + 1) & mask_;
    slots_[i] = Slot{h, uint32_t(keys_.size()), uint32_t(word.size()), uint32_t(values_.size()), uint32_t(n), true};
    keys_.append(word);
    values_.insert(values_.end(), ids, ids + n);
    ++size_;
  }
  void clear() {
    std::fill(slots_.begin(), slots_.end(), Slot{});
    keys_.clear();
    values_.clear();
    size_ = 0;
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_offset = 0, key_length = 0, value_offset = 0, value_length = 0;
    bool used = false;
  };
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int32_t> values_;
  size_t mask_;
  size_t size_ = 0;
};

}  // namespace xd::tok
