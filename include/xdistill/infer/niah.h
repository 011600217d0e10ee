// Needle in a haystack (torch-free): synthetic haystacks of filler sentences of a
// target length in tokens, with one or several needles ("The special magic number
// for <key> is <value>.") at chosen depths, and a question about one of them.
// Scored by exact match of the needle's value: the first run of digits of the
// model's continuation must equal it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "xdistill/tokenizer/tokenizer.h"

namespace xd::infer {

struct NiahItem {
  std::string id;
  std::string task;            // "single" or "multi-<n>"
  int64_t context = 0;         // the requested length in tokens
  double depth = 0;            // where the queried needle sits, 0 (start) .. 1 (end)
  std::string prompt;          // haystack with needles, then the question
  std::string key, value;      // the queried needle
  std::vector<int32_t> ids;    // the prompt's tokens (without special tokens; BOS added when the tokenizer has one)
};

struct NiahOptions {
  std::vector<int64_t> contexts = {1024, 4096, 8192, 16384};
  std::vector<int> needles = {1, 4};  // 1 = single needle; n > 1: n needles, one of them queried
  int samples = 5;                    // per context and task, at depths spread over [0, 1]
  uint64_t seed = 1234;
  int value_digits = 6;
};

// One needle sentence and the question that asks for it.
std::string needle_sentence(const std::string& key, const std::string& value);
std::string niah_question(const std::string& key);

// Builds one item: filler sentences up to `context` tokens (prompt included),
// needles placed at sentence boundaries (the queried one at `depth`).
NiahItem make_niah_item(const tok::Tokenizer& tokenizer, int64_t context, int needles, double depth, uint64_t seed);

// Every item of the options: contexts x needle counts x samples.
std::vector<NiahItem> make_niah_items(const tok::Tokenizer& tokenizer, const NiahOptions& options);

// Exact match: the first run of digits in `generated` equals `value`.
bool niah_correct(const std::string& generated, const std::string& value);

struct NiahScore {
  std::string task;
  int64_t context = 0;
  int correct = 0, total = 0;
  double accuracy() const { return total ? double(correct) / total : 0.0; }
};
// Accuracy per (task, context), ordered by task then context.
std::vector<NiahScore> score_niah(const std::vector<NiahItem>& items, const std::vector<std::string>& generated);

}  // namespace xd::infer
