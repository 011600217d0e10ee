#include "xdistill/demo/corpus.h"

#include <algorithm>
#include <random>
#include <set>

namespace xd::demo {
namespace {

using Rng = std::mt19937_64;

int uniform(Rng& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

std::string two_digits(int n) { return std::string(1, static_cast<char>('0' + n / 10)) + static_cast<char>('0' + n % 10); }

// "add 47+38: 7+8+0=15 4+3+1=08 => 085". Operands are zero-padded to two digits and
// every column spells out its digits, the carry in and a two-digit column sum, so each
// character sits at a fixed offset: a 4-layer model learns the algorithm (copy two
// digits, add three, copy the carry) within a few hundred steps instead of memorising.
std::string addition_worked(int a, int b) {
  const int low = a % 10 + b % 10, high = a / 10 + b / 10 + low / 10;
  return std::to_string(a % 10) + "+" + std::to_string(b % 10) + "+0=" + two_digits(low) + " " +
         std::to_string(a / 10) + "+" + std::to_string(b / 10) + "+" + std::to_string(low / 10) + "=" +
         two_digits(high) + " => " + two_digits(high) + std::to_string(low % 10);
}

std::string addition_prompt(int a, int b) { return "add " + two_digits(a) + "+" + two_digits(b) + ":"; }

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

// Recall keys are single letters (52 of them, all distinct within a list) and values
// single digits: "kv: Q3 a7 ... ? Q3". Answering a query is then one induction step
// (find the earlier "Q", copy what follows it), which a small teacher learns quickly;
// the lists still reach 150 tokens, several times the student's window.
constexpr int kKeys = 52;
char key_char(int i) { return static_cast<char>(i < 26 ? 'a' + i : 'A' + (i - 26)); }

struct Pair { char key, value; };
std::vector<Pair> random_pairs(Rng& rng, int count) {
  std::vector<int> keys(kKeys);
  for (int i = 0; i < kKeys; ++i) keys[i] = i;
  std::shuffle(keys.begin(), keys.end(), rng);
  std::vector<Pair> pairs;
  for (int i = 0; i < std::min(count, kKeys); ++i)
    pairs.push_back({key_char(keys[i]), static_cast<char>('0' + uniform(rng, 0, 9))});
  return pairs;
}
std::string pair_list(const std::vector<Pair>& pairs) {
  std::string out = "kv:";
  for (const Pair& p : pairs) out += std::string(" ") + p.key + p.value;
  return out;
}

// One evaluation item: the queried pair sits `distance` characters (to a pair boundary;
// pairs are 3 characters) before the query "? K"; `before` pairs precede it.
struct Recall {
  std::string context;  // ends with "? K"
  char value;
};
Recall recall_item(Rng& rng, int distance, int before) {
  const int after = std::max(0, distance / 3 - 1);
  const std::vector<Pair> pairs = random_pairs(rng, std::min(kKeys, before + 1 + after));
  const Pair& target = pairs[pairs.size() - 1 - after];
  return {pair_list(pairs) + " ? " + target.key, target.value};
}

// A training list of 4 to 52 pairs followed by as many queries of random earlier keys,
// so the teacher sees every distance up to the longest list, and often.
std::string recall_document(Rng& rng) {
  // Half the lists are short: with few distractors the induction step is learnt sooner.
  const int count = uniform(rng, 0, 1) ? uniform(rng, 4, 16) : uniform(rng, 17, kKeys);
  const std::vector<Pair> pairs = random_pairs(rng, count);
  std::string doc = pair_list(pairs);
  const int queries = static_cast<int>(pairs.size());  // queries are where recall is learnt
  for (int q = 0; q < queries; ++q) {
    const Pair& p = pairs[uniform(rng, 0, static_cast<int>(pairs.size()) - 1)];
    doc += std::string(" ? ") + p.key + p.value;
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
  for (int i = 0; i < o.train_docs_per_domain; ++i) recall.push_back(recall_document(rng));
  for (int distance : o.recall_distances) {
    for (int i = 0; i < o.eval_items; ++i) {
      Recall r = recall_item(rng, distance, uniform(rng, 0, 4));
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
