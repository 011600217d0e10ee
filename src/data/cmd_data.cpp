// `xdistill data prepare --config data.yaml [--set key=value]`: text/chat -> token shards.
// `xdistill data inspect DIR [--verify]`: a shard set's manifest summary (and integrity).
#include <cstdlib>
#include <iostream>

#include "xdistill/cli/commands.h"
#include "xdistill/data/options.h"
#include "xdistill/data/prepare.h"
#include "xdistill/data/shard_set.h"
#include "xdistill/util/error.h"

namespace xd::cli {
namespace {

void run_prepare(const RecipeArgs& args) {
  const auto cfg = config::Config::load(data::recipe_schema(), args.files, args.overrides);
  data::PrepareOptions options = data::prepare_options(cfg);
  // Testing hook for resume tests: stop as if killed after N shards.
  if (const char* stop = std::getenv("XDISTILL_DATA_INTERRUPT_AFTER_SHARDS")) options.interrupt_after_shards = std::atoll(stop);
  const auto encoder = data::tokenizer_encoder(options.tokenizer, options.add_special_tokens);
  data::prepare_shards(options, *encoder);
}

void print_inspection(const std::string& dir, bool verify) {
  const data::Manifest m = data::read_manifest(dir);
  std::cout << "shard set      " << dir << "\n"
            << "tokenizer      " << m.tokenizer.fingerprint << " (" << m.tokenizer.source << ", vocab "
            << m.tokenizer.vocab_size << ")\n"
            << "eos appended   " << (m.eos_appended ? "yes" : "no") << "\n"
            << "documents      " << m.documents << "\n"
            << "tokens         " << m.tokens << "\n"
            << "loss tokens    " << m.loss_tokens << "\n"
            << "shards         " << m.shards.size() << "\n";
  for (const char* key : {"records", "skipped_malformed_json", "skipped_invalid_utf8", "skipped_empty",
                          "utf8_replacements", "documents_without_loss"})
    if (m.stats.contains(key)) std::cout << std::string(key) + std::string(23 - std::string(key).size(), ' ')
                                         << m.stats.at(key).dump() << "\n";
  if (!verify) return;
  const auto problems = data::verify_shard_set(dir);
  for (const std::string& p : problems) std::cout << "problem        " << p << "\n";
  if (!problems.empty())
    throw Error(dir + ": " + std::to_string(problems.size()) + " integrity problem(s); re-run `xdistill data prepare`");
  std::cout << "verify         ok (checksums, offsets, masks, token ids)\n";
}

}  // namespace

void add_data_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("data", "prepare and inspect packed token shards");
  cmd->require_subcommand(1);

  auto args = std::make_shared<RecipeArgs>();
  auto* prepare = cmd->add_subcommand("prepare", "tokenize JSONL / chat / text files into a shard set");
  add_recipe_options(*prepare, *args);
  prepare->callback([args] { run_prepare(*args); });

  auto dir = std::make_shared<std::string>();
  auto verify = std::make_shared<bool>(false);
  auto* inspect = cmd->add_subcommand("inspect", "print a shard set's manifest summary");
  inspect->add_option("dir", *dir, "shard-set directory")->required();
  inspect->add_flag("--verify", *verify, "also check every checksum, document offset, mask and token id");
  inspect->callback([dir, verify] { print_inspection(*dir, *verify); });
}

}  // namespace xd::cli
