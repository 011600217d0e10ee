// Task definitions and their scoring, through a scripted backend (no model): the
// metrics are computed by hand from the scripted log-likelihoods and generations.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "xdistill/eval/answer.h"
#include "xdistill/eval/evaluate.h"
#include "xdistill/eval/results_file.h"
#include "xdistill/eval/task.h"
#include "xdistill/eval/token_requests.h"
#include "xdistill/util/error.h"

using namespace xd::eval;

namespace {

std::string task_file(const std::string& name) {
  return std::string(XD_SOURCE_DIR) + "/tests/eval/fixtures/tasks/" + name;
}

class ScriptedBackend : public LanguageModelBackend {
 public:
  std::map<std::string, double> continuation_logprob;  // by continuation text
  std::vector<std::string> generations;                // returned in order
  std::vector<LoglikelihoodQuery> seen;
  std::vector<std::string> prompts;

  std::vector<LoglikelihoodAnswer> loglikelihood(const std::vector<LoglikelihoodQuery>& q, const std::string&) override {
    seen = q;
    std::vector<LoglikelihoodAnswer> out;
    for (const auto& x : q) out.push_back({continuation_logprob.at(x.continuation), false, 1});
    return out;
  }
  std::vector<LoglikelihoodAnswer> loglikelihood_rolling(const std::vector<std::string>& texts, int64_t,
                                                         const std::string&) override {
    // One bit per byte exactly: log p = −bytes · ln 2.
    std::vector<LoglikelihoodAnswer> out;
    for (const auto& t : texts) out.push_back({-static_cast<double>(t.size()) * std::log(2.0), false, 5});
    return out;
  }
  std::vector<std::string> generate_until(const std::vector<GenerationQuery>& q, const std::string&) override {
    for (const auto& x : q) prompts.push_back(x.prompt);
    return generations;
  }
  std::string apply_chat_template(const std::string& m) override { return "<user>" + m + "</user><assistant>"; }
};

}  // namespace

TEST(Tasks, LoadsYamlWithSchema) {
  const auto t = load_task(task_file("tiny_mc.yaml"));
  EXPECT_EQ(t.name, "tiny_mc");
  EXPECT_EQ(t.type, TaskType::multiple_choice);
  EXPECT_EQ(t.num_fewshot, 2);
  EXPECT_EQ(t.fewshot_split_path, task_file("tiny_mc_train.jsonl"));
  EXPECT_EQ(t.target_delimiter, " ");
  EXPECT_EQ(t.fewshot_delimiter, "\n\n");
  const auto g = load_task(task_file("tiny_gen.yaml"));
  EXPECT_EQ(g.until, (std::vector<std::string>{"\n\n", "Question:"}));
  EXPECT_EQ(g.answer.filter_name, "strict-match");
}

TEST(Tasks, YamlErrorsNameTheKey) {
  const auto dir = std::filesystem::temp_directory_path() / "xd_eval_tasks";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "typo.yaml") << "task: x\ntype: multiple_choice\ndoc:\n  text: q\n  choice_field: c\n"
                                      "dataset:\n  splits: [{name: test, path: a.jsonl}]\n";
  try {
    load_task((dir / "typo.yaml").string());
    FAIL();
  } catch (const xd::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'doc.choices_field'"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "nosplit.yaml") << "task: x\ntype: multiple_choice\ndoc: {text: q}\n"
                                         "dataset:\n  splits: [{name: train, path: a.jsonl}]\n";
  EXPECT_THROW(load_task((dir / "nosplit.yaml").string()), xd::UsageError);
  std::ofstream(dir / "badtype.yaml") << "task: x\ntype: essay\ndoc: {text: q}\n";
  EXPECT_THROW(load_task((dir / "badtype.yaml").string()), xd::UsageError);
}

TEST(Tasks, MultipleChoiceAccAndAccNorm) {
  auto t = load_task(task_file("tiny_mc.yaml"));
  t.num_fewshot = 0;
  t.limit = 2;
  ScriptedBackend b;
  // Document 0 (gold "blue"): acc picks blue (−2); acc_norm picks purple (−2.9/6 > −2/4).
  // Document 1 (gold "eight"): acc picks six (−4 > −5); acc_norm picks eight (−5/5 > −4/3).
  b.continuation_logprob = {{" blue", -2.0}, {" green", -6.0}, {" purple", -2.9},
                            {" six", -4.0}, {" eight", -5.0}, {" ten", -9.0}};
  const auto out = evaluate_task(t, b);
  EXPECT_EQ(out.n_original, 6);
  EXPECT_EQ(out.n_effective, 2);
  EXPECT_EQ(b.seen.size(), 6u);
  EXPECT_EQ(b.seen[0].context, "Question: What colour is a clear daytime sky?\nAnswer:");
  // acc = [1, 0], acc_norm = [0, 1]: mean 0.5, stderr = sd([1,0]) / sqrt(2) = 0.5.
  EXPECT_DOUBLE_EQ(out.metrics.at("acc,none").value, 0.5);
  EXPECT_DOUBLE_EQ(*out.metrics.at("acc,none").stderr_value, 0.5);
  EXPECT_DOUBLE_EQ(out.metrics.at("acc_norm,none").value, 0.5);
  EXPECT_EQ(out.samples[0]["id"], "mc-0");
  EXPECT_EQ(out.samples[0]["acc"], 1.0);
  EXPECT_EQ(out.samples[0]["acc_norm"], 0.0);
  EXPECT_EQ(out.samples[1]["pred"], 0);
  EXPECT_DOUBLE_EQ(out.samples[1]["loglikelihoods"][1].get<double>(), -5.0);
}

TEST(Tasks, GoldAsChoiceTextAndChatTemplate) {
  auto t = load_task(task_file("tiny_mc.yaml"));
  t.num_fewshot = 0;
  t.chat_template = true;
  ScriptedBackend b;
  for (const char* c : {"blue", "green", "purple", "six", "eight", "ten", "carrot", "potato", "apple", "onion",
                        "0 degrees", "50 degrees", "Mercury", "Jupiter", "Neptune", "coffee", "motor oil"})
    b.continuation_logprob[c] = std::string(c) == "apple" ? -1.0 : -20.0;
  const auto out = evaluate_task(t, b);
  EXPECT_EQ(out.samples[2]["gold"], 2);  // "apple" given as text
  EXPECT_EQ(out.samples[2]["acc"], 1.0);
  EXPECT_EQ(b.seen[0].context.rfind("<user>Question:", 0), 0u);
  EXPECT_EQ(b.seen[0].continuation, "blue");  // no delimiter before the assistant's answer
}

TEST(Tasks, FewShotIsSeededAndExcludesTheDocument) {
  auto t = load_task(task_file("tiny_gen.yaml"));  // 1-shot from its own test split
  const auto docs = read_jsonl(t.eval_split_path);
  for (size_t i = 0; i < docs.size(); ++i) {
    const std::string p = build_prompt(t, docs[i], i, docs, /*same_split=*/true);
    const std::string own = docs[i]["question"].get<std::string>();
    EXPECT_EQ(p.find(own), p.size() - own.size() - std::string("\nAnswer:").size()) << "only at the end: " << p;
    EXPECT_EQ(p, build_prompt(t, docs[i], i, docs, true));  // deterministic
    EXPECT_NE(p.find("\n#### "), std::string::npos);         // the example's answer is shown
  }
  // Draws: k of n without the excluded index, and they depend on the seed.
  std::set<std::vector<size_t>> draws;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto d = draw_fewshot(10, 3, seed, "7", 7);
    EXPECT_EQ(d.size(), 3u);
    EXPECT_EQ(std::set<size_t>(d.begin(), d.end()).size(), 3u);
    EXPECT_EQ(std::count(d.begin(), d.end(), 7u), 0);
    draws.insert(d);
  }
  EXPECT_GT(draws.size(), 10u);
  EXPECT_THROW(draw_fewshot(3, 3, 0, "1", 1), xd::Error);
}

TEST(Tasks, MultipleChoiceFewShotPrompt) {
  const auto t = load_task(task_file("tiny_mc.yaml"));
  const auto docs = read_jsonl(t.eval_split_path), pool = read_jsonl(t.fewshot_split_path);
  const std::string p = build_prompt(t, docs[0], 0, pool, false);
  // Two examples "Question: ...\nAnswer: <gold choice>" separated by blank lines, then the document.
  size_t examples = 0;
  for (const auto& ex : pool) {
    const std::string gold = ex["choices"][ex["label"].get<int>()].get<std::string>();
    const std::string shown = "Question: " + ex["question"].get<std::string>() + "\nAnswer: " + gold + "\n\n";
    examples += p.find(shown) != std::string::npos;
  }
  EXPECT_EQ(examples, 2u);
  const std::string own = "\n\nQuestion: What colour is a clear daytime sky?\nAnswer:";
  EXPECT_EQ(p.substr(p.size() - own.size()), own);
}

TEST(Tasks, GenerateUntilExactMatch) {
  const auto t = load_task(task_file("tiny_gen.yaml"));
  ScriptedBackend b;
  b.generations = {" 3 + 4 = 7\n#### 7", " The box has 1,000 - 250 = 750 left.\n#### 750.", " 36"};
  const auto out = evaluate_task(t, b);
  EXPECT_EQ(b.prompts.size(), 3u);
  // Strict match: "#### 7" and "#### 750." (trailing dot ignored) match; "36" has no "####".
  EXPECT_NEAR(out.metrics.at("exact_match,strict-match").value, 2.0 / 3, 1e-12);
  EXPECT_EQ(out.samples[2]["extracted"], "[invalid]");
  EXPECT_EQ(out.samples[1]["gold"], "750");
}

TEST(Tasks, AnswerExtraction) {
  AnswerSpec flexible;
  flexible.regex = "(-?[$0-9.,]{2,})|(-?[0-9]+)";
  flexible.group = 0;
  flexible.select = "last";
  EXPECT_EQ(extract_answer("First 12, then 7 and finally $1,250.", flexible), "$1,250.");
  AnswerSpec strict;
  strict.regex = "#### (\\-?[0-9\\.\\,]+)";
  EXPECT_EQ(extract_answer("x\n#### -3.5\n#### 9", strict), "-3.5");
  EXPECT_EQ(extract_answer("no answer", strict), "[invalid]");
  AnswerSpec norm;
  norm.ignore_case = norm.ignore_punctuation = true;
  EXPECT_TRUE(exact_match("  Paris! ", "paris", norm));
  // As the harness: regexes_to_ignore apply before case folding.
  norm.regexes_to_ignore = {"\\bthe\\b"};
  EXPECT_FALSE(exact_match("The Eiffel", "eiffel", norm));
  norm.regexes_to_ignore = {"(?i)\\bthe\\b"};
  EXPECT_TRUE(exact_match("The Eiffel", "eiffel", norm));
  AnswerSpec bad;
  bad.regex = "(unclosed";
  EXPECT_THROW(check_answer_regexes(bad, "t"), xd::UsageError);
  bad.regex = "(a)";
  bad.group = 2;
  EXPECT_THROW(check_answer_regexes(bad, "t"), xd::UsageError);
}

TEST(Tasks, RollingPerplexityAndBitsPerByte) {
  const auto t = load_task(task_file("tiny_rolling.yaml"));
  ScriptedBackend b;
  const auto out = evaluate_task(t, b);
  EXPECT_NEAR(out.metrics.at("bits_per_byte,none").value, 1.0, 1e-12);
  EXPECT_NEAR(out.metrics.at("byte_perplexity,none").value, 2.0, 1e-12);
  EXPECT_FALSE(out.metrics.at("word_perplexity,none").higher_is_better);
  double bytes = 0, words = 0;
  for (const auto& d : read_jsonl(t.eval_split_path)) {
    bytes += d["text"].get<std::string>().size();
    words += count_words(d["text"].get<std::string>());
  }
  EXPECT_NEAR(out.metrics.at("word_perplexity,none").value, std::exp(bytes * std::log(2.0) / words), 1e-9);
  EXPECT_EQ(out.samples[1]["words"], 2.0);  // "Short line."
}

TEST(Tasks, CountingHelpersMatchPython) {
  EXPECT_EQ(count_words("a b"), 2u);        // len(re.split(r"\s+", "a b"))
  EXPECT_EQ(count_words(" a"), 2u);         // ['', 'a']
  EXPECT_EQ(count_words("a  b\n"), 3u);     // ['a', 'b', '']
  EXPECT_EQ(count_words(""), 1u);           // ['']
  EXPECT_EQ(count_characters("Café"), 4u);  // len("Café")
  EXPECT_EQ(render_template("{{ a }}-{{b}}", {{"a", "x"}, {"b", 3}}, "t"), "x-3");
  EXPECT_THROW(render_template("{{missing}}", nlohmann::json::object(), "t"), xd::Error);
}

TEST(Tasks, ResultsFileRoundTrip) {
  auto t = load_task(task_file("tiny_mc.yaml"));
  t.num_fewshot = 0;
  t.limit = 2;
  ScriptedBackend b;
  b.continuation_logprob = {{" blue", -2.0}, {" green", -6.0}, {" purple", -2.9},
                            {" six", -4.0}, {" eight", -5.0}, {" ten", -9.0}};
  const auto out = evaluate_task(t, b);
  const auto j = results_json({t}, {out}, {{"model", "scripted"}});
  EXPECT_EQ(j["results"]["tiny_mc"]["acc,none"], 0.5);
  EXPECT_EQ(j["results"]["tiny_mc"]["acc_stderr,none"], 0.5);
  EXPECT_EQ(j["n-samples"]["tiny_mc"]["effective"], 2);
  // Our files are read back by the same reader as the harness's.
  const auto f = parse_results(j, "ours.json");
  EXPECT_EQ(f.format, "xdistill");
  EXPECT_EQ(f.model_name, "scripted");
  EXPECT_EQ(select_metric(f.tasks.at("tiny_mc"), std::nullopt)->key, "acc_norm,none");
  EXPECT_EQ(f.tasks.at("tiny_mc").samples.size(), 2u);
}

TEST(Tasks, ShippedExampleDefinitionsLoad) {
  // configs/tasks/*.yaml are validated against the schema (their data are not shipped).
  const auto files = expand_task_paths({std::string(XD_SOURCE_DIR) + "/configs/tasks"});
  ASSERT_GE(files.size(), 7u);
  for (const auto& f : files) {
    const auto t = load_task(f);
    EXPECT_FALSE(t.name.empty()) << f;
    if (t.type == TaskType::generate_until) check_answer_regexes(t.answer, t.name);
  }
  EXPECT_EQ(load_task(std::string(XD_SOURCE_DIR) + "/configs/tasks/arc_challenge.yaml").num_fewshot, 25);
}

TEST(Tasks, RollingWindowsCoverEveryTokenOnce) {
  TokenIds tokens;
  for (int64_t i = 0; i < 37; ++i) tokens.push_back(100 + i);
  for (int64_t max_len : {1, 5, 16, 36, 37, 64}) {
    const auto windows = rolling_windows(tokens, 7, max_len);
    TokenIds predicted;
    for (size_t w = 0; w < windows.size(); ++w) {
      const auto& [ctx, cont] = windows[w];
      // The model reads (ctx + cont)[:-1]: at most max_len tokens, all of them real
      // history of each predicted token.
      EXPECT_LE(static_cast<int64_t>(ctx.size() + cont.size() - 1), max_len);
      if (w == 0) {
        EXPECT_EQ(ctx, TokenIds{7});
      } else {
        EXPECT_EQ(static_cast<int64_t>(ctx.size() + cont.size() - 1), max_len);
        EXPECT_EQ(ctx.back() + 1, cont.front());
      }
      predicted.insert(predicted.end(), cont.begin(), cont.end());
    }
    EXPECT_EQ(predicted, tokens) << "max_len " << max_len;
  }
  EXPECT_TRUE(rolling_windows({}, 7, 4).empty());
}

TEST(Tasks, CutAtFirstStopSequence) {
  EXPECT_EQ(cut_at_stop("a b\n\nQuestion: c", {"Question:", "\n\n"}), "a b");
  EXPECT_EQ(cut_at_stop("no stop", {"\n\n"}), "no stop");
  EXPECT_EQ(cut_at_stop("x", {""}), "x");
}
