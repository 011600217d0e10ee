// Reading raw input files for data preparation: plain or zstd-compressed (".zst",
// decompressed as a stream, never fully in memory), line by line or whole.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace xd::data {

// Decompressed bytes of one file. Throws xd::Error naming the file on read errors
// and on a truncated or corrupt zstd stream.
class ByteStream {
 public:
  static std::unique_ptr<ByteStream> open(const std::string& path);  // ".zst" -> zstd
  virtual ~ByteStream() = default;
  // Up to `size` bytes into `out`; 0 at the end.
  virtual size_t read(char* out, size_t size) = 0;
  // Bytes consumed from the file on disk so far (compressed bytes for .zst).
  virtual uint64_t file_bytes_read() const = 0;
  const std::string& path() const { return path_; }

 protected:
  std::string path_;
};

// Lines of a file, without their "\n" (and without a "\r" before it). Line numbers
// start at 1. A final line without "\n" is still a line. A UTF-8 byte-order mark at
// the start of the file is dropped.
class LineReader {
 public:
  explicit LineReader(const std::string& path);
  bool next(std::string& line);
  int64_t line_number() const { return line_number_; }
  uint64_t file_bytes_read() const { return stream_->file_bytes_read(); }
  const std::string& path() const { return stream_->path(); }

 private:
  bool refill();

  std::unique_ptr<ByteStream> stream_;
  std::vector<char> buffer_;
  size_t begin_ = 0, end_ = 0;
  bool eof_ = false;
  int64_t line_number_ = 0;
};

// The files named by one input path: the file itself, or every regular file below a
// directory (recursively, hidden files excluded), sorted by path so the order is the
// same on every machine. Throws xd::Error if the path does not exist or holds no file.
std::vector<std::string> expand_input_path(const std::string& path);

// The name without a trailing ".zst" ("a.jsonl.zst" -> "a.jsonl").
std::string name_without_zst(const std::string& path);

}  // namespace xd::data
