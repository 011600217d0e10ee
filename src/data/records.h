// Internal to data preparation: input files -> raw records (reader thread) and one
// raw record -> token ids or a counted problem (worker threads).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "xdistill/data/encoder.h"
#include "xdistill/data/input_files.h"
#include "xdistill/data/prepare.h"

namespace xd::data {

struct InputFile {
  std::string path;
  int32_t input = 0;   // index into PrepareOptions::inputs
  bool json = false;   // JSON lines (else plain text)
  uint64_t bytes = 0;  // size on disk
};

// Every file of every input, in order; throws xd::Error on a missing path.
std::vector<InputFile> list_input_files(const PrepareOptions& options);

struct RawRecord {
  int32_t file = -1;  // index into the InputFile list
  int64_t line = 0;   // first line of the record, from 1
  std::string bytes;
};

// Records of the input files in order: a non-blank line of a JSON-lines file, or a
// text document (whole file, line or paragraph, as the input's text_split says).
class RecordReader {
 public:
  RecordReader(const std::vector<InputFile>& files, const std::vector<InputSpec>& inputs);
  bool next(RawRecord& record);
  // Bytes of the files on disk consumed so far, all files together.
  uint64_t file_bytes_read() const;

 private:
  bool next_in_file(RawRecord& record);

  const std::vector<InputFile>& files_;
  const std::vector<InputSpec>& inputs_;
  int32_t current_ = -1;
  std::unique_ptr<LineReader> lines_;
  uint64_t finished_bytes_ = 0;
  bool whole_file_done_ = false;
};

struct RecordResult {
  enum class Outcome { Document, Malformed, InvalidUtf8, Empty, Fatal };
  Outcome outcome = Outcome::Document;
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;   // empty: every token is a target
  int64_t utf8_replacements = 0;
  bool chat = false;
  int32_t file = -1;           // index into the InputFile list
  std::string message;         // "file:line: why" for everything but Document
};

RecordResult process_record(const RawRecord& record, const InputFile& file, const PrepareOptions& options,
                            const Encoder& encoder);

}  // namespace xd::data
