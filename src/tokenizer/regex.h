// The pre-tokenizer regex engine: PCRE2 in UTF + Unicode-property mode, JIT
// compiled, with per-thread match data. Patterns are written for Oniguruma (the
// engine behind Hugging Face `tokenizers`); `translate_pattern` rewrites the few
// constructs whose meaning differs so that PCRE2 matches the same strings.
#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace xd::tok {

// Rewrites an Oniguruma pattern into PCRE2 syntax with the same matches:
// `\s`/`\S` become the Unicode White_Space class (PCRE2's \s also accepts
// U+180E, Oniguruma's does not).
std::string translate_pattern(std::string_view onig_pattern);

class Regex {
 public:
  // Compiles `pattern` (Oniguruma syntax); throws xd::Error naming `where` on failure.
  Regex(const std::string& pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls on_match(begin, end) for each successive non-overlapping match in
  // `subject`, left to right. `subject` must be valid UTF-8 (not re-checked).
  template <typename F>
  void for_each_match(std::string_view subject, F&& on_match) const {
    size_t pos = 0, begin = 0, end = 0;
    while (pos <= subject.size() && find(subject, pos, begin, end)) {
      on_match(begin, end);
      if (end > begin) {
        pos = end;
      } else {  // an empty match: step over one character
        if (end >= subject.size()) break;
        pos = end + utf8_step(subject, end);
      }
    }
  }

  const std::string& pattern() const { return pattern_; }

 private:
  // First match at or after `start`; false when none.
  bool find(std::string_view subject, size_t start, size_t& begin, size_t& end) const;
  static size_t utf8_step(std::string_view s, size_t i);

  std::string pattern_;
  struct Compiled;
  std::unique_ptr<Compiled> compiled_;
};

}  // namespace xd::tok
