#include "xdistill/models/weight_names.h"

#include <cctype>
#include <optional>

namespace xd::models {
namespace {

struct NameRule {
  const char* hf;
  const char* internal;
  std::optional<NormPlacement> only_for;  // rows that depend on where the norms sit
};

// The block's two norms are named by HF after their position in the Llama layout, so
// the same HF name means a different norm in OLMo's post-norm layout. Internally they
// are named by what they normalise for: the mixer's branch and the MLP's branch.
const NameRule kRules[] = {
    {"model.embed_tokens.weight", "embed", std::nullopt},
    {"model.norm.weight", "final_norm.weight", std::nullopt},
    {"lm_head.weight", "lm_head", std::nullopt},
    {"model.layers.{i}.self_attn.{rest}", "layers.{i}.mixer.{rest}", std::nullopt},
    {"model.layers.{i}.mlp.{rest}", "layers.{i}.mlp.{rest}", std::nullopt},
    {"model.layers.{i}.input_layernorm.weight", "layers.{i}.mixer_norm.weight", NormPlacement::pre},
    {"model.layers.{i}.post_attention_layernorm.weight", "layers.{i}.mlp_norm.weight", NormPlacement::pre},
    {"model.layers.{i}.post_attention_layernorm.weight", "layers.{i}.mixer_norm.weight", NormPlacement::post},
    {"model.layers.{i}.post_feedforward_layernorm.weight", "layers.{i}.mlp_norm.weight", NormPlacement::post},
};

struct Captures {
  std::string layer, rest;
};

// Matches `name` against a pattern with {i} and {rest}; fills the captures.
std::optional<Captures> match(const std::string& pattern, const std::string& name) {
  Captures c;
  size_t p = 0, n = 0;
  while (p < pattern.size()) {
    if (pattern.compare(p, 3, "{i}") == 0) {
      const size_t start = n;
      while (n < name.size() && std::isdigit(static_cast<unsigned char>(name[n]))) ++n;
      if (n == start) return std::nullopt;
      c.layer = name.substr(start, n - start);
      p += 3;
    } else if (pattern.compare(p, 6, "{rest}") == 0) {
      if (n >= name.size()) return std::nullopt;
      c.rest = name.substr(n);
      n = name.size();
      p += 6;
    } else {
      if (n >= name.size() || name[n] != pattern[p]) return std::nullopt;
      ++p, ++n;
    }
  }
  if (n != name.size()) return std::nullopt;
  return c;
}

std::string fill(const std::string& pattern, const Captures& c) {
  std::string out;
  for (size_t p = 0; p < pattern.size();) {
    if (pattern.compare(p, 3, "{i}") == 0) out += c.layer, p += 3;
    else if (pattern.compare(p, 6, "{rest}") == 0) out += c.rest, p += 6;
    else out += pattern[p++];
  }
  return out;
}

std::string translate(const std::string& name, NormPlacement placement, bool to_internal) {
  for (const auto& rule : kRules) {
    if (rule.only_for && *rule.only_for != placement) continue;
    const char* from = to_internal ? rule.hf : rule.internal;
    const char* to = to_internal ? rule.internal : rule.hf;
    if (auto c = match(from, name)) return fill(to, *c);
  }
  return name;
}

}  // namespace

std::string to_internal_name(const std::string& hf_name, NormPlacement placement) {
  return translate(hf_name, placement, true);
}

std::string to_hf_name(const std::string& internal_name, NormPlacement placement) {
  return translate(internal_name, placement, false);
}

}  // namespace xd::models
