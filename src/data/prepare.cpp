#include "xdistill/data/prepare.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <thread>

#include "data/ordered_map.h"
#include "data/records.h"
#include "xdistill/data/checksum.h"
#include "xdistill/data/shard_writer.h"
#include "xdistill/util/error.h"
#include "xdistill/util/fs.h"
#include "xdistill/util/log.h"
#include "xdistill/util/progress.h"

namespace xd::data {
namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kStateName = "prepare_state.json";
constexpr int kMaxLoggedProblems = 10;

// Counters of one preparation, saved with every resume point and in the manifest.
struct Stats {
  int64_t records = 0, documents = 0, chat_documents = 0, tokens = 0, loss_tokens = 0;
  int64_t skipped_malformed_json = 0, skipped_invalid_utf8 = 0, skipped_empty = 0;
  int64_t utf8_replacements = 0, documents_with_replacements = 0, documents_without_loss = 0;
  std::vector<int64_t> input_documents, input_tokens;

  void count_skipped(const RecordResult& r) {
    ++records;
    utf8_replacements += r.utf8_replacements;
    skipped_malformed_json += r.outcome == RecordResult::Outcome::Malformed;
    skipped_invalid_utf8 += r.outcome == RecordResult::Outcome::InvalidUtf8;
    skipped_empty += r.outcome == RecordResult::Outcome::Empty;
  }

  // Counts a written document as ShardWriter wrote it (EOS appended with its mask).
  void count_document(const RecordResult& r, int32_t input, bool eos_appended) {
    const int64_t written = static_cast<int64_t>(r.ids.size()) + (eos_appended ? 1 : 0);
    int64_t loss = written;
    if (!r.mask.empty()) {
      loss = 0;
      for (uint8_t m : r.mask) loss += m;
      if (eos_appended) loss += r.mask.back();
    }
    ++records;
    ++documents;
    utf8_replacements += r.utf8_replacements;
    chat_documents += r.chat;
    tokens += written;
    loss_tokens += loss;
    documents_with_replacements += r.utf8_replacements > 0;
    documents_without_loss += loss == 0;
    ++input_documents[input];
    input_tokens[input] += written;
  }

  json to_json(const std::vector<InputSpec>& inputs) const {
    json per_input = json::array();
    for (size_t i = 0; i < inputs.size(); ++i)
      per_input.push_back({{"path", inputs[i].path}, {"documents", input_documents[i]}, {"tokens", input_tokens[i]}});
    return {{"records", records}, {"documents", documents}, {"chat_documents", chat_documents},
            {"tokens", tokens}, {"loss_tokens", loss_tokens},
            {"skipped_malformed_json", skipped_malformed_json}, {"skipped_invalid_utf8", skipped_invalid_utf8},
            {"skipped_empty", skipped_empty}, {"utf8_replacements", utf8_replacements},
            {"documents_with_replacements", documents_with_replacements},
            {"documents_without_loss", documents_without_loss}, {"inputs", per_input}};
  }

  static Stats from_json(const json& j) {
    Stats s;
    s.records = j.at("records"); s.documents = j.at("documents"); s.chat_documents = j.at("chat_documents");
    s.tokens = j.at("tokens"); s.loss_tokens = j.at("loss_tokens");
    s.skipped_malformed_json = j.at("skipped_malformed_json"); s.skipped_invalid_utf8 = j.at("skipped_invalid_utf8");
    s.skipped_empty = j.at("skipped_empty"); s.utf8_replacements = j.at("utf8_replacements");
    s.documents_with_replacements = j.at("documents_with_replacements");
    s.documents_without_loss = j.at("documents_without_loss");
    for (const json& in : j.at("inputs")) {
      s.input_documents.push_back(in.at("documents"));
      s.input_tokens.push_back(in.at("tokens"));
    }
    return s;
  }
};

struct Unit {
  std::vector<RawRecord> records;
  uint64_t file_bytes_read = 0;  // reader position after the unit, for progress
};
struct UnitResult {
  std::vector<RecordResult> results;
  uint64_t file_bytes_read = 0;
};

// What was written before an interruption, from the staging directory.
struct ResumePoint {
  std::vector<ShardInfo> shards;
  int64_t records = 0;
  Stats stats;
};

// The identity of a run: recipe, tokenizer and input files (names and sizes). A
// staging directory is resumed only by a run with the same identity.
std::string run_identity(const PrepareOptions& options, const TokenizerInfo& tokenizer,
                         const std::vector<InputFile>& files) {
  json j = {{"options", options_to_json(options)}, {"tokenizer", tokenizer.fingerprint}};
  for (const InputFile& f : files) j["files"].push_back({f.path, f.bytes});
  const std::string text = j.dump();
  return sha256_hex(text.data(), text.size());
}

std::optional<ResumePoint> load_resume_point(const stdfs::path& staging, const std::string& identity) {
  const stdfs::path path = staging / kStateName;
  if (!stdfs::exists(path)) return std::nullopt;
  json state;
  try {
    state = json::parse(fs::read_text(path));
  } catch (const json::exception& e) {
    log::warn(path.string(), ": unreadable (", e.what(), "); starting over");
    return std::nullopt;
  }
  if (state.value("identity", "") != identity)
    throw Error(staging.string() + " holds an interrupted preparation of a different recipe, tokenizer or input; "
                "delete it, or set prepare.resume: false to start over");
  ResumePoint point;
  const Manifest partial = manifest_from_json(state.at("manifest"), path.string());
  for (const ShardInfo& s : partial.shards) {
    for (const ShardFile* f : {&s.tokens_file, &s.docs_file, &s.mask_file}) {
      std::error_code ec;
      if (stdfs::file_size(staging / f->file, ec) != f->bytes || ec) {
        log::warn(staging.string(), ": shard file ", f->file, " is missing or damaged; starting over");
        return std::nullopt;
      }
    }
  }
  point.shards = partial.shards;
  point.records = state.at("records");
  point.stats = Stats::from_json(state.at("stats"));
  return point;
}

void save_resume_point(const stdfs::path& staging, const std::string& identity, const ShardWriter& writer,
                       int64_t records, const json& stats) {
  Manifest partial;
  partial.shards = writer.shards();
  for (const ShardInfo& s : partial.shards) {
    partial.tokens += s.tokens;
    partial.documents += s.documents;
    partial.loss_tokens += s.loss_tokens;
  }
  const json state = {{"identity", identity}, {"records", records}, {"stats", stats},
                      {"manifest", manifest_to_json(partial)}};
  fs::write_atomic(staging / kStateName, state.dump(1) + "\n");
}

void check_output_replaceable(const std::string& output) {
  std::error_code ec;
  if (!stdfs::exists(output, ec)) return;
  if (!stdfs::is_directory(output) || (!stdfs::is_empty(output) && !stdfs::exists(stdfs::path(output) / kManifestName)))
    throw UsageError("output '" + output + "' exists and is not a shard set; refusing to replace it");
}

void validate(const PrepareOptions& o) {
  if (o.output.empty()) throw UsageError("data recipe: 'output' is empty");
  if (o.tokens_per_shard < 1) throw UsageError("data recipe: shards.tokens_per_shard must be >= 1");
  if (o.records_per_unit < 1) throw UsageError("data recipe: prepare.records_per_unit must be >= 1");
  if (o.threads < 0) throw UsageError("data recipe: prepare.threads must be >= 0 (0 = all cores)");
}

// A writer for a fresh run, or one that continues the staging directory of an
// interrupted run with the same identity (then `stats` and `result` say how far it got).
std::unique_ptr<ShardWriter> start_or_resume(const PrepareOptions& options, const ShardWriterOptions& writer_options,
                                             const std::string& identity, Stats& stats, PrepareResult& result) {
  const stdfs::path staging = options.output + ".partial";
  std::optional<ResumePoint> resume;
  if (options.resume) resume = load_resume_point(staging, identity);
  if (!resume) {
    stats.input_documents.assign(options.inputs.size(), 0);
    stats.input_tokens.assign(options.inputs.size(), 0);
    return std::make_unique<ShardWriter>(options.output, writer_options);
  }
  stats = resume->stats;
  result.resumed_records = resume->records;
  log::info("resuming ", staging.string(), ": ", resume->shards.size(), " shards, ", resume->records,
            " records already written");
  return std::make_unique<ShardWriter>(options.output, writer_options, resume->shards);
}

}  // namespace

PrepareResult prepare_shards(const PrepareOptions& options_in, const Encoder& encoder) {
  PrepareOptions options = options_in;
  validate(options);
  while (options.output.size() > 1 && options.output.back() == '/') options.output.pop_back();
  const std::vector<InputFile> files = list_input_files(options);
  check_output_replaceable(options.output);

  ShardWriterOptions writer_options;
  writer_options.tokenizer = encoder.info();
  writer_options.tokens_per_shard = options.tokens_per_shard;
  writer_options.append_eos = options.append_eos && writer_options.tokenizer.eos_id.has_value();
  if (options.append_eos && !writer_options.append_eos)
    log::warn("the tokenizer has no EOS token: documents are concatenated without a separator");

  const std::string identity = run_identity(options, writer_options.tokenizer, files);
  const stdfs::path staging = options.output + ".partial";
  PrepareResult result;
  Stats stats;
  std::unique_ptr<ShardWriter> writer = start_or_resume(options, writer_options, identity, stats, result);

  uint64_t total_bytes = 0;
  for (const InputFile& f : files) total_bytes += f.bytes;
  std::optional<Progress> progress;
  if (options.show_progress)
    progress.emplace("prepare " + stdfs::path(options.output).filename().string(), static_cast<int64_t>(total_bytes),
                     "B");
  RecordReader reader(files, options.inputs);
  int64_t to_skip = result.resumed_records;
  int64_t logged = 0;
  uint64_t bytes_shown = 0;
  bool first_unit = true;
  const int threads =
      options.threads > 0 ? options.threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));

  auto produce = [&](Unit& unit) {
    RawRecord record;
    while (static_cast<int64_t>(unit.records.size()) < options.records_per_unit && reader.next(record)) {
      if (to_skip > 0) {
        --to_skip;
        continue;
      }
      unit.records.push_back(std::move(record));
    }
    unit.file_bytes_read = reader.file_bytes_read();
    return !unit.records.empty();
  };
  auto work = [&](Unit& unit) {
    UnitResult out;
    out.file_bytes_read = unit.file_bytes_read;
    for (const RawRecord& r : unit.records) {
      out.results.push_back(process_record(r, files[r.file], options, encoder));
      out.results.back().file = r.file;
    }
    return out;
  };
  auto consume = [&](UnitResult& unit) {
    for (const RecordResult& r : unit.results) {
      using Outcome = RecordResult::Outcome;
      if (r.outcome == Outcome::Fatal) throw Error(r.message);
      if (r.outcome != Outcome::Document) {
        stats.count_skipped(r);
        if (logged++ < kMaxLoggedProblems) log::warn("skipped ", r.message);
        continue;
      }
      const size_t shards_before = writer->shards().size();
      writer->add_document(r.ids, r.mask);
      stats.count_document(r, files[r.file].input, writer_options.append_eos);
      if (writer->shards().size() > shards_before) {
        save_resume_point(staging, identity, *writer, stats.records, stats.to_json(options.inputs));
        if (options.interrupt_after_shards >= 0 &&
            static_cast<int64_t>(writer->shards().size()) >= options.interrupt_after_shards)
          throw Error("preparation interrupted after " + std::to_string(writer->shards().size()) +
                      " shards (testing hook); run again to resume");
      }
    }
    // A resumed run's first unit includes the bytes skipped over: Progress::set counts
    // them as work done earlier, so the rate shows only this run's work.
    if (progress && first_unit && result.resumed_records > 0) progress->set(static_cast<int64_t>(unit.file_bytes_read));
    else if (progress) progress->advance(static_cast<int64_t>(unit.file_bytes_read - bytes_shown));
    bytes_shown = unit.file_bytes_read;
    first_unit = false;
  };
  ordered_parallel_map<Unit, UnitResult>(threads, 2 * int64_t(threads) + 2, produce, work, consume);
  if (progress) progress->finish();

  if (logged > kMaxLoggedProblems)
    log::warn(logged - kMaxLoggedProblems, " more records were skipped (counts in the manifest's stats)");
  result.manifest = writer->finish(stats.to_json(options.inputs), options_to_json(options));
  if (result.manifest.tokens == 0) log::warn(options.output, ": no documents were written");
  log::info("prepared ", options.output, ": ", result.manifest.documents, " documents, ", result.manifest.tokens,
            " tokens in ", result.manifest.shards.size(), " shards (skipped: ", stats.skipped_malformed_json,
            " malformed, ", stats.skipped_invalid_utf8, " invalid UTF-8, ", stats.skipped_empty, " empty)");
  return result;
}

}  // namespace xd::data
