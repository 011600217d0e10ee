#include "tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "xdistill/util/error.h"

namespace xd::tok {
namespace {

void add_spec(const nlohmann::json& spec, const std::string& where, std::vector<Normalizer::Form>& forms) {
  if (spec.is_null()) return;
  XD_CHECK(spec.is_object() && spec.contains("type"), where, ": normalizer must be an object with a \"type\"");
  const std::string type = spec.at("type").get<std::string>();
  if (type == "Sequence") {
    for (const auto& child : spec.at("normalizers")) add_spec(child, where, forms);
  } else if (type == "NFC") {
    forms.push_back(Normalizer::Form::NFC);
  } else if (type == "NFD") {
    forms.push_back(Normalizer::Form::NFD);
  } else if (type == "NFKC") {
    forms.push_back(Normalizer::Form::NFKC);
  } else if (type == "NFKD") {
    forms.push_back(Normalizer::Form::NFKD);
  } else {
    throw Error(where + ": normalizer type '" + type +
                "' is not supported (supported: NFC, NFD, NFKC, NFKD, Sequence)");
  }
}

int utf8proc_options(Normalizer::Form form) {
  switch (form) {
    case Normalizer::Form::NFC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    case Normalizer::Form::NFD: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    case Normalizer::Form::NFKC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    case Normalizer::Form::NFKD: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
  }
  return 0;
}

bool is_ascii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

}  // namespace

Normalizer Normalizer::from_json(const nlohmann::json& spec, const std::string& where) {
  Normalizer n;
  add_spec(spec, where, n.forms_);
  return n;
}

bool Normalizer::normalize(std::string_view text, std::string& out) const {
  // ASCII is invariant under every Unicode normal form.
  if (forms_.empty() || is_ascii(text)) return false;
  std::string current(text);
  for (Form form : forms_) {
    utf8proc_uint8_t* result = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(current.data()),
                                            static_cast<utf8proc_ssize_t>(current.size()), &result,
                                            static_cast<utf8proc_option_t>(utf8proc_options(form)));
    XD_CHECK(n >= 0, "normalizer: utf8proc failed: ", utf8proc_errmsg(n));
    current.assign(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
    std::free(result);
  }
  if (current == text) return false;
  out = std::move(current);
  return true;
}

}  // namespace xd::tok
