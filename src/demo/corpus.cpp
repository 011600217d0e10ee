#include "xdistill/demo/corpus.h"

#include <algorithm>
#include <random>
#include <set>

namespace xd::demo {
namespace {

using Rng = std::mt19937_64;

int uniform(Rng& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

// "47+38 = 7+8=15 4+3+1=8 => 85": the worked answer spells out each column and carry,
// so a small model can learn the algorithm instead of memorising sums.
std::string addition_worked(int a, int b) {
  std::string out;
  int carry = 0, pa = a, pb = b;
  while (pa > 0 || pb > 0) {
    const int da = pa % 10, db = pb % 10, s = da + db + carry;
    if (!out.empty()) out += " ";
    out += std::to_string(da) + "+" + std::to_string(db) + (carry ? "+1" : "") + "=" + std::to_string(s);
    carry = s / 10;
    pa /= 10, pb /= 10;
  }
  return out + " => " + std::to_string(a + b);
}

std::string addition_prompt(int a, int b) { return std::to_string(a) + "+" + std::to_string(b) + " ="; }

// Code domain: calls like f(x,[y,{z}]) with nested (), [], {}. Names are single letters.
struct Code {
  std::string text, closers;  // closers: what closes the still-open brackets, innermost first
};
void code_expr(Rng& rng, int depth, std::string& out) {
  static const char* open = "([{";
  static const char* close = ")]}";
  const int n = uniform(rng, 1, 3);
  for (int i = 0; i < n; ++i) {
    if (i) out += ",";
    if (depth < 4 && uniform(rng, 0, 1) == 0) {
      const int b = uniform(rng, 0, 2);
      if (b == 0) out += static_cast<char>('f' + uniform(rng, 0, 3));
      out += open[b];
      code_expr(rng, depth + 1, out);
      out += close[b];
    } else {
      out += static_cast<char>('a' + uniform(rng, 0, 4));
    }
  }
}
std::string code_document(Rng& rng) {
  std::string out = "code: ";
  out += static_cast<char>('f' + uniform(rng, 0, 3));
  out += "(";
  code_expr(rng, 1, out);
  return out + ")\n";
}
// An unfinished expression: open 2-4 nested brackets, then stop; the gold continuation
// closes them in order.
Code code_prefix(Rng& rng) {
  static const char* open = "([{";
  static const char* close = ")]}";
  Code c{"code: ", ")"};
  c.text += static_cast<char>('f' + uniform(rng, 0, 3));
  c.text += "(";
  const int depth = uniform(rng, 1, 3);
  for (int d = 0; d < depth; ++d) {
    if (uniform(rng, 0, 1)) {
      c.text += static_cast<char>('a' + uniform(rng, 0, 4));
      c.text += ",";
    }
    const int b = uniform(rng, 0, 2);
    if (b == 0) c.text += static_cast<char>('f' + uniform(rng, 0, 3));
    c.text += open[b];
    c.closers.insert(c.closers.begin(), close[b]);
  }
  c.text += static_cast<char>('a' + uniform(rng, 0, 4));
  return c;
}

std::string key_name(Rng& rng) {
  std::string k;
  k += static_cast<char>('a' + uniform(rng, 0, 25));
  k += static_cast<char>('a' + uniform(rng, 0, 25));
  return k;
}

// A recall list: "kv: ab=3 cd=7 ... ? ab=3". Pairs are 5 characters ("ab=3 ").
// The queried pair sits `distance` characters (approximately, to a pair boundary)
// before the query.
struct Recall {
  std::string context;  // ends with "? key="
  char value;
};
Recall recall_item(Rng& rng, int distance, int extra_before) {
  std::vector<std::pair<std::string, char>> pairs;
  std::set<std::string> used;
  const int after = std::max(0, distance / 5 - 1), before = extra_before / 5;
  for (int i = 0; i < before + 1 + after; ++i) {
    std::string k;
    do k = key_name(rng); while (used.count(k));
    used.insert(k);
    pairs.emplace_back(k, static_cast<char>('0' + uniform(rng, 0, 9)));
  }
  Recall r;
  r.context = "kv:";
  for (auto& [k, v] : pairs) r.context += " " + k + "=" + v;
  const auto& target = pairs[before];
  r.context += " ? " + target.first + "=";
  r.value = target.second;
  return r;
}

std::string recall_document(Rng& rng, int chars) {
  // Several queries per document, at distances spread over the whole document.
  std::vector<std::pair<std::string, char>> pairs;
  std::set<std::string> used;
  std::string doc = "kv:";
  while (static_cast<int>(doc.size()) < chars * 2 / 3) {
    std::string k;
    do k = key_name(rng); while (used.count(k));
    used.insert(k);
    const char v = static_cast<char>('0' + uniform(rng, 0, 9));
    pairs.emplace_back(k, v);
    doc += " " + k + "=" + v;
  }
  const int queries = 1 + static_cast<int>(pairs.size()) / 8;
  for (int q = 0; q < queries; ++q) {
    const auto& p = pairs[uniform(rng, 0, static_cast<int>(pairs.size()) - 1)];
    doc += " ? " + p.first + "=" + p.second;
  }
  return doc + "\n";
}

}  // namespace

Corpus generate_corpus(const CorpusOptions& o) {
  Corpus c;
  Rng rng(o.seed);
  std::set<std::pair<int, int>> eval_sums;
  // Held-out arithmetic pairs first, so training never sees them.
  while (static_cast<int>(eval_sums.size()) < o.eval_items) eval_sums.insert({uniform(rng, 10, 99), uniform(rng, 10, 99)});
  int idx = 0;
  for (auto [a, b] : eval_sums)
    c.arithmetic_eval.push_back({"add-" + std::to_string(idx++), addition_prompt(a, b), std::to_string(a + b)});

  auto& arith = c.train["arithmetic"];
  while (static_cast<int>(arith.size()) < o.train_docs_per_domain) {
    const int a = uniform(rng, 0, 99), b = uniform(rng, 0, 99);
    if (eval_sums.count({a, b})) continue;
    arith.push_back(addition_prompt(a, b) + " " + addition_worked(a, b) + "\n");
  }

  auto& code = c.train["code"];
  for (int i = 0; i < o.train_docs_per_domain; ++i) code.push_back(code_document(rng));
  for (int i = 0; i < o.eval_items; ++i) {
    Code p = code_prefix(rng);
    ChoiceItem item{"code-" + std::to_string(i), p.text, {}, 0};
    std::set<std::string> options{p.closers};
    std::string shuffled = p.closers;
    // Distractors: the same brackets in a wrong order, or one bracket swapped.
    for (int guard = 0; options.size() < 4 && guard < 100; ++guard) {
      std::string d = shuffled;
      if (guard % 2 == 0) std::shuffle(d.begin(), d.end(), rng);
      else d[uniform(rng, 0, static_cast<int>(d.size()) - 1)] = ")]}"[uniform(rng, 0, 2)];
      options.insert(d);
    }
    std::vector<std::string> choices(options.begin(), options.end());
    std::shuffle(choices.begin(), choices.end(), rng);
    for (size_t j = 0; j < choices.size(); ++j) {
      if (choices[j] == p.closers) item.gold = static_cast<int>(j);
      item.choices.push_back(choices[j]);
    }
    c.code_eval.push_back(item);
  }

  auto& recall = c.train["recall"];
  for (int i = 0; i < o.train_docs_per_domain; ++i) recall.push_back(recall_document(rng, o.recall_doc_chars));
  for (int distance : o.recall_distances) {
    for (int i = 0; i < o.eval_items; ++i) {
      Recall r = recall_item(rng, distance, uniform(rng, 0, 20));
      ChoiceItem item{"recall" + std::to_string(distance) + "-" + std::to_string(i), r.context, {}, 0};
      std::set<char> vals{r.value};
      while (vals.size() < 4) vals.insert(static_cast<char>('0' + uniform(rng, 0, 9)));
      std::vector<char> v(vals.begin(), vals.end());
      std::shuffle(v.begin(), v.end(), rng);
      for (size_t j = 0; j < v.size(); ++j) {
        if (v[j] == r.value) item.gold = static_cast<int>(j);
        item.choices.push_back(std::string(1, v[j]));
      }
      c.recall_eval[distance].push_back(item);
    }
  }
  return c;
}

}  // namespace xd::demo
