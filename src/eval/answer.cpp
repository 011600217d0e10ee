#define PCRE2_CODE_UNIT_WIDTH 8
#include "xdistill/eval/answer.h"

#include <pcre2.h>

#include <cctype>
#include <memory>
#include <vector>

#include "xdistill/util/error.h"

namespace xd::eval {
namespace {

using Code = std::unique_ptr<pcre2_code, decltype(&pcre2_code_free)>;

Code compile(const std::string& pattern, const std::string& what) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF,
                                   &err, &offset, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw UsageError(what + ": regex \"" + pattern + "\" does not compile at offset " + std::to_string(offset) +
                     ": " + reinterpret_cast<char*>(msg));
  }
  return Code(code, &pcre2_code_free);
}

struct Match {
  size_t begin, end;                                 // whole match
  std::vector<std::pair<size_t, size_t>> groups;     // [0] = whole match; unset groups = npos
};

std::vector<Match> find_all(const pcre2_code* code, const std::string& text) {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(code, nullptr), &pcre2_match_data_free);
  std::vector<Match> out;
  size_t start = 0;
  while (start <= text.size()) {
    const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), start, 0, md.get(), nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    Match m{ov[0], ov[1], {}};
    const uint32_t n = pcre2_get_ovector_count(md.get());
    for (uint32_t g = 0; g < n; ++g) m.groups.emplace_back(ov[2 * g], ov[2 * g + 1]);
    out.push_back(m);
    // Step over an empty match by one UTF-8 character so the loop always advances.
    start = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
    while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
  }
  return out;
}

std::string group_text(const Match& m, int group, const std::string& text) {
  if (group < 0 || static_cast<size_t>(group) >= m.groups.size()) return "";
  const auto [b, e] = m.groups[group];
  if (b == PCRE2_UNSET) return "";
  return text.substr(b, e - b);
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\n\r\f\v");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\n\r\f\v") - b + 1);
}

}  // namespace

void check_answer_regexes(const AnswerSpec& spec, const std::string& task) {
  if (!spec.regex.empty()) {
    auto code = compile(spec.regex, "task '" + task + "' answer.regex");
    uint32_t groups = 0;
    pcre2_pattern_info(code.get(), PCRE2_INFO_CAPTURECOUNT, &groups);
    if (spec.group < 0 || static_cast<uint32_t>(spec.group) > groups)
      throw UsageError("task '" + task + "': answer.group " + std::to_string(spec.group) + " but answer.regex has " +
                       std::to_string(groups) + " capture group(s)");
  }
  if (!spec.gold_regex.empty()) compile(spec.gold_regex, "task '" + task + "' answer.gold_regex");
  for (const auto& r : spec.regexes_to_ignore) compile(r, "task '" + task + "' normalize.regexes_to_ignore");
}

std::string extract_answer(const std::string& generation, const AnswerSpec& spec) {
  if (spec.regex.empty()) return generation;
  auto code = compile(spec.regex, "answer.regex");
  auto matches = find_all(code.get(), generation);
  if (matches.empty()) return spec.fallback;
  const Match& m = spec.select == "last" ? matches.back() : matches.front();
  return group_text(m, spec.group, generation);
}

std::string extract_gold(const std::string& gold, const AnswerSpec& spec) {
  if (spec.gold_regex.empty()) return gold;
  auto code = compile(spec.gold_regex, "answer.gold_regex");
  auto matches = find_all(code.get(), gold);
  if (matches.empty()) return gold;
  return group_text(matches.front(), matches.front().groups.size() > 1 ? 1 : 0, gold);
}

std::string normalize_answer(const std::string& text, const AnswerSpec& spec) {
  std::string s = text;
  for (const auto& pattern : spec.regexes_to_ignore) {
    auto code = compile(pattern, "normalize.regexes_to_ignore");
    std::string kept;
    size_t pos = 0;
    for (const auto& m : find_all(code.get(), s)) {
      kept += s.substr(pos, m.begin - pos);
      pos = m.end;
    }
    s = kept + s.substr(pos);
  }
  if (spec.ignore_case)
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (spec.ignore_punctuation) {
    std::string kept;
    for (char c : s)
      if (!std::ispunct(static_cast<unsigned char>(c))) kept += c;
    s = kept;
  }
  return spec.strip ? trim(s) : s;
}

bool exact_match(const std::string& prediction, const std::string& gold, const AnswerSpec& spec) {
  return normalize_answer(prediction, spec) == normalize_answer(gold, spec);
}

}  // namespace xd::eval
