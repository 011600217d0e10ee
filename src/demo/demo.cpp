// The demo pipeline, top to bottom (see demo.h). Each stage is one function call into
// the same libraries the individual commands use; nothing here is demo-only except the
// corpus and the size presets.
#include "xdistill/demo/demo.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>

#include "xdistill/config/config.h"
#include "xdistill/data/encoder.h"
#include "xdistill/data/prepare.h"
#include "xdistill/demo/byte_tokenizer.h"
#include "xdistill/demo/corpus.h"
#include "xdistill/demo/demo_report.h"
#include "xdistill/eval/compare.h"
#include "xdistill/eval/run.h"
#include "xdistill/merge/merge.h"
#include "xdistill/runtime/device.h"
#include "xdistill/train/checkpoint_dirs.h"
#include "xdistill/train/options.h"
#include "xdistill/train/trainer.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"

namespace xd::demo {
namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

const std::vector<std::string> kDomains = {"arithmetic", "code", "recall"};

// Training lengths and batch shapes of a size preset. The tiny teacher learns most per
// second of a 2-core CPU with small batches and many steps.
struct Preset {
  int64_t seq_len, micro_batch, window, pretrain_steps, align_steps, expert_steps, eval_items, docs;
  const char* pretrain_lr;
};
Preset preset_for(const DemoOptions& o) {
  Preset p = o.size == "small" ? Preset{512, 32, 32, 3000, 200, 300, 200, 20000, "1.5e-3"}
                               : Preset{256, 8, 32, 2000, 80, 60, 100, 8000, "3e-3"};
  auto scale = [&](int64_t steps) { return std::max<int64_t>(4, std::llround(steps * o.steps_scale)); };
  p.pretrain_steps = scale(p.pretrain_steps);
  p.align_steps = scale(p.align_steps);
  p.expert_steps = scale(p.expert_steps);
  if (o.eval_items > 0) p.eval_items = o.eval_items;
  return p;
}

// One line per stage, numbered, so the whole run reads as one progress view.
struct StageRunner {
  int index = 0, total = 0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  void run(const std::string& name, const std::function<bool()>& is_done, const std::function<void()>& body) {
    ++index;
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    char head[96];
    std::snprintf(head, sizeof head, "demo [%d/%d] %-28s t=%6.1fs", index, total, name.c_str(), t);
    if (is_done()) {
      log::info(head, "  done already (skipped)");
      return;
    }
    log::info(head, "  running");
    body();
  }
};

void write_jsonl(const stdfs::path& path, const std::vector<json>& rows) {
  std::string text;
  for (const json& r : rows) text += r.dump() + "\n";
  fs::write_atomic(path, text);
}

void write_task(const stdfs::path& dir, const std::string& name, const std::string& body,
                const std::vector<json>& docs) {
  write_jsonl(dir / (name + ".jsonl"), docs);
  fs::write_atomic(dir / (name + ".yaml"),
                   "task: " + name + "\n" +
                   "dataset:\n  splits:\n    - {name: test, path: " + name + ".jsonl}\n" +
                   "  eval_split: test\n  id_field: id\n" + body);
}

// The body of a YAML double-quoted string.
std::string yaml_escaped(const std::string& text) {
  std::string out;
  for (char ch : text) out += ch == '\\' || ch == '"' ? std::string("\\") + ch : std::string(1, ch);
  return out;
}

void write_corpus(const stdfs::path& root, const Preset& p, uint64_t seed) {
  CorpusOptions co;
  co.seed = seed;
  co.train_docs_per_domain = static_cast<int>(p.docs);
  co.eval_items = static_cast<int>(p.eval_items);
  // Inside the student's window, then 1.5, 3 and 4.5 windows away (window 32).
  co.recall_distances = {15, static_cast<int>(p.window) + 16, static_cast<int>(3 * p.window),
                         static_cast<int>(4.5 * p.window)};
  const Corpus c = generate_corpus(co);
  const stdfs::path staging = fs::temp_sibling(root / "corpus");
  stdfs::create_directories(staging / "train");
  stdfs::create_directories(staging / "tasks");
  for (const auto& [domain, docs] : c.train) {
    std::vector<json> rows;
    for (const auto& d : docs) rows.push_back({{"text", d}});
    write_jsonl(staging / "train" / (domain + ".jsonl"), rows);
  }
  std::vector<json> arith;
  for (const auto& g : c.arithmetic_eval) arith.push_back({{"id", g.id}, {"prompt", g.prompt}, {"answer", g.answer}});
  write_task(staging / "tasks", "arithmetic",
             "type: generate_until\ndoc:\n  text: \"{{prompt}}\"\n  answer: \"{{answer}}\"\n"
             "generation:\n  until: [\"\\n\"]\n  max_new_tokens: 48\n"
             "answer:\n  regex: \"" + yaml_escaped(arithmetic_answer_regex()) + "\"\n  filter_name: strict-match\n",
             arith);
  auto choice_rows = [](const std::vector<ChoiceItem>& items) {
    std::vector<json> rows;
    for (const auto& m : items) rows.push_back({{"id", m.id}, {"context", m.context}, {"choices", m.choices}, {"label", m.gold}});
    return rows;
  };
  const std::string mc = "type: multiple_choice\ndoc:\n  text: \"{{context}}\"\n  target_delimiter: \"\"\n"
                         "  choices_field: choices\n  gold_field: label\n";
  write_task(staging / "tasks", "code", mc, choice_rows(c.code_eval));
  for (const auto& [distance, items] : c.recall_eval)
    write_task(staging / "tasks", "recall_d" + std::to_string(distance), mc, choice_rows(items));
  fs::replace_directory(staging, root / "corpus");
}

void prepare_domain(const stdfs::path& root, const std::string& domain) {
  data::PrepareOptions po;
  po.tokenizer = (root / "tokenizer").string();
  po.inputs.push_back({(root / "corpus" / "train" / (domain + ".jsonl")).string(), data::InputFormat::Jsonl,
                       "text", "messages", data::TextSplit::File});
  po.output = (root / "shards" / domain).string();
  po.append_eos = true;
  po.add_special_tokens = false;
  auto encoder = data::tokenizer_encoder(po.tokenizer, false);
  data::prepare_shards(po, *encoder);
}

// A train recipe built in code: the same schema and validation as a YAML recipe.
config::Config train_recipe(const std::vector<std::pair<std::string, std::string>>& values) {
  config::Config c(train::recipe_schema());
  for (const auto& [k, v] : values) c.set(k, v);
  c.check_required();
  return c;
}

std::string mixture_yaml(const stdfs::path& root, const std::string& focus) {
  std::string y = "[";
  for (const auto& d : kDomains) {
    // Recall and arithmetic are learnt last; code needs the least data.
    const double base = d == "recall" ? 0.4 : d == "arithmetic" ? 0.4 : 0.2;
    const double w = focus.empty() ? base : (d == focus ? 0.7 : 0.15);
    y += (y.size() > 1 ? ", " : "") + std::string("{name: ") + d + ", path: '" + (root / "shards" / d).string() +
         "', weight: " + std::to_string(w) + "}";
  }
  return y + "]";
}

int train(const config::Config& cfg) {
  const stdfs::path run_dir = cfg.get<std::string>("run.dir");
  const bool resume = !train::CheckpointDirs(run_dir).list().empty();
  return train::run_training(cfg, resume);
}

}  // namespace

int run_demo(const DemoOptions& o) {
  if (o.size != "tiny" && o.size != "small") throw UsageError("--size must be tiny or small, got '" + o.size + "'");
  const Preset p = preset_for(o);
  const stdfs::path root = stdfs::absolute(o.out);
  stdfs::create_directories(root);
  log::add_file((root / "demo.log").string());
  // On a GPU the student computes in bf16 and the frozen teacher runs in bf16 too; the
  // pretrained teacher keeps fp32 master weights either way. Evaluation is fp32.
  const std::string dev = runtime::resolve_device(o.device), sd = std::to_string(o.seed);
  const bool gpu = dev.rfind("cuda", 0) == 0;
  const std::string compute = gpu ? "bf16" : "f32", teacher_dtype = compute;
  StageRunner stages;
  stages.total = 10 + static_cast<int>(kDomains.size());
  auto exists = [&](const stdfs::path& rel) { return [p = root / rel] { return stdfs::exists(p); }; };
  int rc = 0;
  auto check = [&](int code) { if (code != 0) rc = code; return code == 0; };

  stages.run("corpus and tasks", exists("corpus"), [&] { write_corpus(root, p, o.seed); });
  stages.run("tokenizer", exists("tokenizer"), [&] {
    stdfs::create_directories(root / "tokenizer");
    write_byte_tokenizer((root / "tokenizer").string());
  });
  stages.run("token shards", exists("shards/recall/manifest.json"), [&] {
    for (const auto& d : kDomains) prepare_domain(root, d);
  });
  stages.run("random teacher", exists("teacher-init"), [&] {
    write_random_teacher((root / "teacher-init").string(), o.size, o.seed);
  });

  const std::vector<std::pair<std::string, std::string>> common = {
      {"run.device", dev}, {"run.seed", sd}, {"run.log_every", "25"}, {"teacher.dtype", teacher_dtype},
      {"data.seq_len", std::to_string(p.seq_len)}, {"data.tokenizer", (root / "tokenizer").string()},
      {"batch.micro_batch", std::to_string(p.micro_batch)}, {"precision.compute", compute},
      {"student.window", std::to_string(p.window)}, {"student.sinks", "4"}, {"checkpoint.keep", "1"},
      {"checkpoint.every", "50"}};
  // Warm-up never longer than a fifth of a (possibly shortened) stage.
  auto warmup = [](int64_t wanted, int64_t steps) { return std::to_string(std::min<int64_t>(wanted, steps / 5)); };
  auto with = [&](std::vector<std::pair<std::string, std::string>> extra,
                  const std::vector<std::string>& overrides = {}) {
    extra.insert(extra.begin(), common.begin(), common.end());
    for (const std::string& kv : overrides) {
      const size_t eq = kv.find('=');
      if (eq == std::string::npos) throw UsageError("--pretrain-set wants KEY=VALUE, got '" + kv + "'");
      extra.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    }
    return train_recipe(extra);
  };

  auto evaluate = [&](const std::string& model, const std::string& out) {
    eval::RunCommand cmd;
    cmd.model_dir = (root / model).string();
    cmd.tokenizer_dir = (root / "tokenizer").string();
    cmd.out = (root / out).string();
    cmd.task_files = {(root / "corpus" / "tasks").string()};
    cmd.device = dev;
    cmd.dtype = "f32";
    eval::run_eval_command(cmd);
  };
  stages.run("pretrain teacher", exists("teacher"), [&] {
    check(train(with({{"stage", "pretrain"}, {"run.dir", (root / "runs/pretrain").string()},
                      {"run.output", (root / "teacher").string()}, {"teacher.path", (root / "teacher-init").string()},
                      {"data.mixture", mixture_yaml(root, "")}, {"optim.lr", p.pretrain_lr}, {"optim.min_lr", "1e-4"},
                      {"schedule.kind", "warmup_cosine"}, {"schedule.warmup_steps", warmup(30, p.pretrain_steps)},
                      {"schedule.steps", std::to_string(p.pretrain_steps)}},
                     o.pretrain_overrides)));
  });
  if (rc) return rc;
  stages.run("evaluate teacher", exists("results-teacher.json"), [&] { evaluate("teacher", "results-teacher.json"); });
  if (o.stop_after == "teacher") return rc;
  stages.run("Stage I: align", exists("theta0"), [&] {
    check(train(with({{"stage", "align"}, {"run.dir", (root / "runs/align").string()},
                      {"run.output", (root / "theta0").string()}, {"teacher.path", (root / "teacher").string()},
                      {"data.mixture", mixture_yaml(root, "")}, {"optim.lr", "1e-2"}, {"optim.min_lr", "1e-5"},
                      {"schedule.kind", "warmup_cosine"}, {"schedule.warmup_steps", warmup(10, p.align_steps)},
                      {"schedule.steps", std::to_string(p.align_steps)}})));
  });
  if (rc) return rc;
  for (const auto& d : kDomains) {
    stages.run("Stage II: expert " + d, exists("expert-" + d), [&] {
      check(train(with({{"stage", "distill"}, {"run.dir", (root / ("runs/expert-" + d)).string()},
                        {"run.output", (root / ("expert-" + d)).string()}, {"teacher.path", (root / "teacher").string()},
                        {"student.init", (root / "theta0").string()}, {"data.mixture", mixture_yaml(root, d)},
                        {"optim.lr", "1e-3"}, {"optim.min_lr", "1e-3"}, {"schedule.kind", "warmup_constant"},
                        {"schedule.warmup_steps", warmup(10, p.expert_steps)}, {"schedule.steps", std::to_string(p.expert_steps)},
                        {"loss.top_k", "64"}})));
    });
    if (rc) return rc;
  }
  stages.run("Stage III: merge experts", exists("student"), [&] {
    merge::MergeSpec spec;
    for (const auto& d : kDomains) spec.experts.push_back({(root / ("expert-" + d)).string(), std::nullopt, std::nullopt});
    spec.method = merge::Method::Linear;
    spec.out = (root / "student").string();
    merge::run_merge(spec);
  });
  stages.run("evaluate student", exists("results-student.json"), [&] { evaluate("student", "results-student.json"); });
  stages.run("win-and-tie report", exists("report.md"), [&] { write_demo_report(root); });
  std::cout << fs::read_text(root / "report.md");
  return rc;
}

}  // namespace xd::demo
