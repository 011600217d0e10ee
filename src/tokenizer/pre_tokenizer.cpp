#include "tokenizer/pre_tokenizer.h"

#include <cctype>
#include <nlohmann/json.hpp>

#include "xdistill/util/error.h"

namespace xd::tok {
namespace {

// The GPT-2 pattern that ByteLevel applies when "use_regex" is true.
constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

SplitBehavior parse_behavior(const std::string& name, const std::string& where) {
  if (name == "Removed") return SplitBehavior::Removed;
  if (name == "Isolated") return SplitBehavior::Isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (name == "Contiguous") return SplitBehavior::Contiguous;
  throw Error(where + ": unknown Split behavior '" + name + "'");
}

// A literal Split pattern as a regex: ASCII punctuation escaped, the rest verbatim.
std::string escape_literal(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x80 && !std::isalnum(c)) out += '\\';
    out += static_cast<char>(c);
  }
  return out;
}

struct SplitPiece {
  Piece range;
  bool is_match;
};

}  // namespace

PreTokenizer PreTokenizer::from_json(const nlohmann::json& spec, const std::string& where) {
  PreTokenizer p;
  p.add_spec(spec, where);
  return p;
}

PreTokenizer PreTokenizer::split_regex(const std::string& pattern, SplitBehavior behavior, bool invert) {
  PreTokenizer p;
  p.steps_.push_back(Step{std::make_shared<Regex>(pattern, "Split"), behavior, invert});
  return p;
}

void PreTokenizer::add_spec(const nlohmann::json& spec, const std::string& where) {
  if (spec.is_null()) return;
  XD_CHECK(spec.is_object() && spec.contains("type"), where, ": pre_tokenizer must be an object with a \"type\"");
  const std::string type = spec.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const auto& child : spec.at("pretokenizers")) add_spec(child, where);
  } else if (type == "Split") {
    XD_CHECK(!byte_level_, where, ": a Split after a ByteLevel pre-tokenizer is not supported");
    const auto& pattern = spec.at("pattern");
    std::string regex;
    if (pattern.contains("Regex")) regex = pattern.at("Regex").get<std::string>();
    else if (pattern.contains("String")) regex = escape_literal(pattern.at("String").get<std::string>());
    else throw Error(where + ": Split pattern needs \"Regex\" or \"String\"");
    steps_.push_back(Step{std::make_shared<Regex>(regex, where + ": pre_tokenizer Split"),
                          parse_behavior(spec.at("behavior").get<std::string>(), where),
                          spec.value("invert", false)});
  } else if (type == "ByteLevel") {
    XD_CHECK(!spec.value("add_prefix_space", false), where,
             ": ByteLevel pre-tokenizer with add_prefix_space=true is not supported");
    if (spec.value("use_regex", true)) {
      steps_.push_back(Step{std::make_shared<Regex>(kGpt2Pattern, where + ": ByteLevel"),
                            SplitBehavior::Isolated, false});
    }
    byte_level_ = true;
  } else {
    throw Error(where + ": pre_tokenizer type '" + type +
                "' is not supported (supported: Split, ByteLevel, Sequence)");
  }
}

void PreTokenizer::apply(const Step& step, std::string_view text, const Piece& piece, std::vector<Piece>& out) {
  const std::string_view subject = text.substr(piece.begin, piece.end - piece.begin);
  const uint32_t base = piece.begin;
  // Fast paths for the behaviours the common tokenizers use.
  if (step.behavior == SplitBehavior::Isolated || step.behavior == SplitBehavior::Removed) {
    const bool keep_matches = step.behavior == SplitBehavior::Isolated || step.invert;
    const bool keep_gaps = step.behavior == SplitBehavior::Isolated || !step.invert;
    size_t previous = 0;
    step.regex->for_each_match(subject, [&](size_t b, size_t e) {
      if (keep_gaps && b > previous) out.push_back({base + uint32_t(previous), base + uint32_t(b)});
      if (keep_matches && e > b) out.push_back({base + uint32_t(b), base + uint32_t(e)});
      previous = e;
    });
    if (keep_gaps && previous < subject.size())
      out.push_back({base + uint32_t(previous), base + uint32_t(subject.size())});
    return;
  }
  // General case: match/gap segments, then merged by the behaviour's rule.
  std::vector<SplitPiece> segments;
  size_t previous = 0;
  step.regex->for_each_match(subject, [&](size_t b, size_t e) {
    if (b > previous) segments.push_back({{base + uint32_t(previous), base + uint32_t(b)}, step.invert});
    segments.push_back({{base + uint32_t(b), base + uint32_t(e)}, !step.invert});
    previous = e;
  });
  if (previous < subject.size())
    segments.push_back({{base + uint32_t(previous), base + uint32_t(subject.size())}, step.invert});
  std::vector<Piece> merged;
  bool previous_match = false;
  if (step.behavior == SplitBehavior::MergedWithNext) {
    for (size_t i = segments.size(); i-- > 0;) {
      const SplitPiece& s = segments[i];
      if (s.is_match && !previous_match && !merged.empty()) merged.back().begin = s.range.begin;
      else merged.push_back(s.range);
      previous_match = s.is_match;
    }
    for (size_t i = merged.size(); i-- > 0;)
      if (merged[i].end > merged[i].begin) out.push_back(merged[i]);
    return;
  }
  for (const SplitPiece& s : segments) {
    const bool merge = step.behavior == SplitBehavior::MergedWithPrevious ? (s.is_match && !previous_match)
                                                                          : (s.is_match == previous_match);
    if (merge && !merged.empty()) merged.back().end = s.range.end;
    else merged.push_back(s.range);
    previous_match = s.is_match;
  }
  for (const Piece& p : merged)
    if (p.end > p.begin) out.push_back(p);
}

void PreTokenizer::split(std::string_view text, std::vector<Piece>& out) const {
  if (text.empty()) return;
  const Piece whole{0, uint32_t(text.size())};
  if (steps_.empty()) {
    out.push_back(whole);
    return;
  }
  if (steps_.size() == 1) {
    apply(steps_[0], text, whole, out);
    return;
  }
  std::vector<Piece> current{whole}, next;
  for (const Step& step : steps_) {
    next.clear();
    for (const Piece& p : current) apply(step, text, p, next);
    current.swap(next);
  }
  out.insert(out.end(), current.begin(), current.end());
}

}  // namespace xd::tok
