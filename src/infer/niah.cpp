// Needle-in-a-haystack items and their scoring (torch-free).
#include "xdistill/infer/niah.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "xdistill/util/error.h"

namespace xd::infer {
namespace {

// splitmix64: portable, so that a seed gives the same haystacks everywhere.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
};

template <size_t N>
const char* pick(Rng& rng, const char* const (&words)[N]) {
  return words[rng.below(N)];
}

// Plain filler: short declarative sentences with no digits (so the only numbers of
// the haystack are the needles' values).
std::string filler_sentence(Rng& rng) {
  static const char* const adjectives[] = {"quiet", "old", "bright", "narrow", "green", "distant", "small", "busy"};
  static const char* const nouns[] = {"river", "garden", "market", "tower", "forest", "harbor", "library", "valley"};
  static const char* const verbs[] = {"faces", "borders", "overlooks", "shelters", "follows", "crosses"};
  return std::string("The ") + pick(rng, adjectives) + " " + pick(rng, nouns) + " " + pick(rng, verbs) + " the " +
         pick(rng, adjectives) + " " + pick(rng, nouns) + ".";
}

std::string random_key(Rng& rng) {
  std::string key;
  for (int i = 0; i < 5; ++i) key += static_cast<char>('a' + rng.below(26));
  return key;
}

std::string random_value(Rng& rng, int digits) {
  std::string v(1, static_cast<char>('1' + rng.below(9)));
  for (int i = 1; i < digits; ++i) v += static_cast<char>('0' + rng.below(10));
  return v;
}

int64_t token_count(const tok::Tokenizer& t, const std::string& text) {
  return static_cast<int64_t>(t.encode(text, /*add_special_tokens=*/false).size());
}

std::string join(const std::vector<std::string>& sentences) {
  std::string out;
  for (const auto& s : sentences) out += (out.empty() ? "" : " ") + s;
  return out;
}

}  // namespace

std::string needle_sentence(const std::string& key, const std::string& value) {
  return "The special magic number for " + key + " is " + value + ".";
}

std::string niah_question(const std::string& key) {
  return "\nWhat is the special magic number for " + key + "? The special magic number for " + key + " is";
}

NiahItem make_niah_item(const tok::Tokenizer& tokenizer, int64_t context, int needles, double depth, uint64_t seed) {
  XD_CHECK(context >= 16, "niah: context ", context, " is too short (at least 16 tokens)");
  XD_CHECK(needles >= 1, "niah: needles must be >= 1");
  XD_CHECK(depth >= 0 && depth <= 1, "niah: depth must be in [0, 1]");
  Rng rng{seed};
  NiahItem item;
  item.context = context;
  item.depth = depth;
  item.task = needles == 1 ? "single" : "multi-" + std::to_string(needles);
  std::set<std::string> keys;
  std::vector<std::string> needle_texts;
  while (static_cast<int>(keys.size()) < needles) {
    const std::string key = random_key(rng);
    if (!keys.insert(key).second) continue;
    const std::string value = random_value(rng, 6);
    if (needle_texts.empty()) item.key = key, item.value = value;  // the first needle is queried
    needle_texts.push_back(needle_sentence(key, value));
  }
  const std::string question = niah_question(item.key);
  // Budget the filler by counting each sentence alone (with its separating space).
  // Special tokens the tokenizer adds (BOS, ...), counted once.
  int64_t used = token_count(tokenizer, question) + static_cast<int64_t>(tokenizer.encode("", true).size());
  for (const auto& n : needle_texts) used += token_count(tokenizer, " " + n);
  std::vector<std::string> filler;
  while (true) {
    std::string s = filler_sentence(rng);
    const int64_t n = token_count(tokenizer, " " + s);
    if (used + n > context) break;
    used += n;
    filler.push_back(std::move(s));
  }
  // The queried needle at `depth` (in sentences), the others at other random places.
  const size_t slots = filler.size() + 1;
  std::vector<std::pair<size_t, std::string>> placed{{static_cast<size_t>(depth * (slots - 1) + 0.5), needle_texts[0]}};
  for (size_t i = 1; i < needle_texts.size(); ++i) placed.emplace_back(rng.below(slots), needle_texts[i]);
  std::stable_sort(placed.begin(), placed.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [at, text] : placed) filler.insert(filler.begin() + at, text);
  // Joined text may tokenize slightly differently from the sum of its parts: drop
  // filler (never a needle) until it fits.
  while (true) {
    item.prompt = join(filler) + question;
    item.ids = tokenizer.encode(item.prompt, /*add_special_tokens=*/true);
    if (static_cast<int64_t>(item.ids.size()) <= context) break;
    auto it = std::find_if(filler.rbegin(), filler.rend(), [&](const std::string& s) {
      return std::find(needle_texts.begin(), needle_texts.end(), s) == needle_texts.end();
    });
    XD_CHECK(it != filler.rend(), "niah: the needles and the question alone exceed ", context, " tokens");
    filler.erase(std::next(it).base());
  }
  return item;
}

std::vector<NiahItem> make_niah_items(const tok::Tokenizer& tokenizer, const NiahOptions& o) {
  XD_CHECK(o.samples >= 1, "niah: samples must be >= 1");
  std::vector<NiahItem> items;
  for (int64_t context : o.contexts)
    for (int needles : o.needles)
      for (int s = 0; s < o.samples; ++s) {
        const double depth = o.samples == 1 ? 0.5 : double(s) / (o.samples - 1);
        const uint64_t seed = o.seed * 1000003u + context * 131u + needles * 17u + s;
        NiahItem item = make_niah_item(tokenizer, context, needles, depth, seed);
        item.id = item.task + "-" + std::to_string(context) + "-" + std::to_string(s);
        items.push_back(std::move(item));
      }
  return items;
}

bool niah_correct(const std::string& generated, const std::string& value) {
  size_t i = 0;
  while (i < generated.size() && !std::isdigit(static_cast<unsigned char>(generated[i]))) ++i;
  size_t j = i;
  while (j < generated.size() && std::isdigit(static_cast<unsigned char>(generated[j]))) ++j;
  return j > i && generated.substr(i, j - i) == value;
}

std::vector<NiahScore> score_niah(const std::vector<NiahItem>& items, const std::vector<std::string>& generated) {
  XD_CHECK(items.size() == generated.size(), "niah: ", generated.size(), " generations for ", items.size(), " items");
  std::map<std::pair<std::string, int64_t>, NiahScore> by;
  for (size_t i = 0; i < items.size(); ++i) {
    NiahScore& s = by[{items[i].task, items[i].context}];
    s.task = items[i].task;
    s.context = items[i].context;
    s.total += 1;
    s.correct += niah_correct(generated[i], items[i].value) ? 1 : 0;
  }
  std::vector<NiahScore> out;
  for (auto& [key, s] : by) out.push_back(s);
  return out;
}

}  // namespace xd::infer
