// Answer extraction and normalisation for generate_until tasks (exact_match as in
// lm-evaluation-harness: a regex filter picks the answer out of the generation,
// then both sides are normalised and compared as strings).
#pragma once
#include <string>

#include "xdistill/eval/task.h"

namespace xd::eval {

// The answer in `generation` per spec.regex/group/select; spec.fallback when the
// regex does not match; the whole text when there is no regex.
std::string extract_answer(const std::string& generation, const AnswerSpec& spec);
// The gold answer: group 1 of spec.gold_regex when set (the text itself when it does not match).
std::string extract_gold(const std::string& gold, const AnswerSpec& spec);
// regexes_to_ignore removed, then case, punctuation and surrounding white space per spec.
std::string normalize_answer(const std::string& text, const AnswerSpec& spec);
bool exact_match(const std::string& prediction, const std::string& gold, const AnswerSpec& spec);
// Throws xd::UsageError naming the task when a regex of the spec does not compile.
void check_answer_regexes(const AnswerSpec& spec, const std::string& task);

}  // namespace xd::eval
