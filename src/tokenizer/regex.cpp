#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/utf8.h"
#include "xdistill/util/error.h"

namespace xd::tok {
namespace {

// Unicode White_Space, the set Oniguruma's \s matches in UTF-8 mode.
constexpr const char* kWhiteSpaceItems = "\\t\\n\\x0B\\f\\r\\x{85}\\p{Z}";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

// Per-thread matching resources: match data and a JIT stack large enough for
// long runs of whitespace (`\s+(?!\S)` backtracks one frame per character).
struct ThreadScratch {
  pcre2_match_data* data = nullptr;
  pcre2_jit_stack* stack = nullptr;
  pcre2_match_context* context = nullptr;
  ThreadScratch() {
    data = pcre2_match_data_create(1, nullptr);
    stack = pcre2_jit_stack_create(64 * 1024, 256 * 1024 * 1024, nullptr);
    context = pcre2_match_context_create(nullptr);
    pcre2_jit_stack_assign(context, nullptr, stack);
    pcre2_set_heap_limit(context, 4u * 1024 * 1024);  // KiB: interpreter fallback
  }
  ~ThreadScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
};

ThreadScratch& scratch() {
  thread_local ThreadScratch s;
  return s;
}

}  // namespace

std::string translate_pattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      if (n == 's') {
        out += in_class ? std::string(kWhiteSpaceItems) : "[" + std::string(kWhiteSpaceItems) + "]";
      } else if (n == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpaceItems) + "]";
      } else if (n == 'h' || n == 'H') {  // Oniguruma: hex digit (PCRE2: horizontal space)
        const char* items = "0-9a-fA-F";
        out += in_class ? std::string(items) : std::string(n == 'h' ? "[" : "[^") + items + "]";
        if (in_class && n == 'H') throw Error("regex '" + std::string(p) + "': \\H inside a class is not supported");
      } else {
        out += c;
        out += n;
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' or '^]' right after the opening bracket is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

struct Regex::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() { pcre2_code_free(code); }
};

Regex::Regex(const std::string& pattern, const std::string& where)
    : pattern_(pattern), compiled_(std::make_unique<Compiled>()) {
  const std::string translated = translate_pattern(pattern);
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                  PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &error_offset,
                                  nullptr);
  XD_CHECK(compiled_->code, where, ": cannot compile regex '", pattern, "' at offset ", error_offset,
           ": ", pcre2_message(error));
  compiled_->jit = pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;

size_t Regex::utf8_step(std::string_view s, size_t i) {
  return utf8_length(static_cast<unsigned char>(s[i]));
}

bool Regex::find(std::string_view subject, size_t start, size_t& begin, size_t& end) const {
  ThreadScratch& s = scratch();
  const auto* text = reinterpret_cast<PCRE2_SPTR>(subject.data());
  int rc = 0;
  if (compiled_->jit) {
    rc = pcre2_jit_match(compiled_->code, text, subject.size(), start, 0, s.data, s.context);
  }
  if (!compiled_->jit || rc == PCRE2_ERROR_JIT_STACKLIMIT) {
    rc = pcre2_match(compiled_->code, text, subject.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                     s.data, s.context);
  }
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  XD_CHECK(rc >= 0, "regex '", pattern_, "' failed on a text of ", subject.size(),
           " bytes: ", pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(s.data);
  begin = ov[0];
  end = ov[1];
  return true;
}

}  // namespace xd::tok
