// The demo's procedurally generated, seeded multi-domain corpus and its held-out
// evaluation items. Three domains with real structure:
//   arithmetic : two-digit addition with a worked, column-by-column answer (exact match)
//   code       : a bracketed call language; pick the correct closing sequence (multiple choice)
//   recall     : lists of single-letter keys with digit values, then a query for an earlier
//                key; the distance between the pair and the query is controlled, to probe
//                memory beyond the student's sliding window
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace xd::demo {

struct CorpusOptions {
  uint64_t seed = 20261128;
  int train_docs_per_domain = 4000;
  int eval_items = 100;                            // per task
  std::vector<int> recall_distances = {15, 48, 96, 144};  // in characters (= tokens, byte-level), <= 153
};

struct GenerationItem {
  std::string id, prompt, answer;  // the model continues `prompt`; `answer` is the gold final answer
};
struct ChoiceItem {
  std::string id, context;
  std::vector<std::string> choices;
  int gold = 0;
};

struct Corpus {
  std::map<std::string, std::vector<std::string>> train;  // domain -> documents
  std::vector<GenerationItem> arithmetic_eval;
  std::vector<ChoiceItem> code_eval;
  std::map<int, std::vector<ChoiceItem>> recall_eval;     // distance -> items
};

Corpus generate_corpus(const CorpusOptions& options);

// Arithmetic answers are extracted from a generation with this regular expression.
// The worked answer ends in three digits ("=> 085"); leading zeros are not part of it.
inline const char* arithmetic_answer_regex() { return "=> 0*(\\d+)"; }

}  // namespace xd::demo
