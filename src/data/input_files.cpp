#include "xdistill/data/input_files.h"

#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "xdistill/util/error.h"

namespace xd::data {
namespace stdfs = std::filesystem;

namespace {

std::FILE* open_or_throw(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(path + ": cannot open input: " + std::strerror(errno));
  return f;
}

class PlainStream : public ByteStream {
 public:
  explicit PlainStream(const std::string& path) : file_(open_or_throw(path)) { path_ = path; }
  ~PlainStream() override { std::fclose(file_); }
  size_t read(char* out, size_t size) override {
    const size_t n = std::fread(out, 1, size, file_);
    if (n == 0 && std::ferror(file_)) throw Error(path_ + ": read error: " + std::strerror(errno));
    consumed_ += n;
    return n;
  }
  uint64_t file_bytes_read() const override { return consumed_; }

 private:
  std::FILE* file_;
  uint64_t consumed_ = 0;
};

// Streaming zstd decompression; concatenated frames are read one after the other.
class ZstdStream : public ByteStream {
 public:
  explicit ZstdStream(const std::string& path)
      : file_(open_or_throw(path)), dstream_(ZSTD_createDStream()), input_buffer_(ZSTD_DStreamInSize()) {
    path_ = path;
    if (!dstream_) throw Error(path + ": cannot create a zstd decompression stream");
    ZSTD_initDStream(dstream_);
  }
  ~ZstdStream() override {
    ZSTD_freeDStream(dstream_);
    std::fclose(file_);
  }

  size_t read(char* out, size_t size) override {
    ZSTD_outBuffer output{out, size, 0};
    while (output.pos == 0) {
      if (input_.pos == input_.size) {
        const size_t n = std::fread(input_buffer_.data(), 1, input_buffer_.size(), file_);
        if (n == 0) {
          if (std::ferror(file_)) throw Error(path_ + ": read error: " + std::strerror(errno));
          if (frame_open_)
            throw Error(path_ + ": truncated zstd stream (the file ends inside a frame; re-download or re-compress it)");
          return 0;
        }
        consumed_ += n;
        input_ = {input_buffer_.data(), n, 0};
      }
      const size_t ret = ZSTD_decompressStream(dstream_, &output, &input_);
      if (ZSTD_isError(ret))
        throw Error(path_ + ": corrupt zstd data near compressed byte " + std::to_string(consumed_) + ": " +
                    ZSTD_getErrorName(ret));
      frame_open_ = ret != 0;  // 0: a frame just ended and was fully flushed
    }
    return output.pos;
  }
  uint64_t file_bytes_read() const override { return consumed_; }

 private:
  std::FILE* file_;
  ZSTD_DStream* dstream_;
  std::vector<char> input_buffer_;
  ZSTD_inBuffer input_{nullptr, 0, 0};
  uint64_t consumed_ = 0;
  bool frame_open_ = false;
};

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::unique_ptr<ByteStream> ByteStream::open(const std::string& path) {
  if (ends_with(path, ".zst")) return std::make_unique<ZstdStream>(path);
  return std::make_unique<PlainStream>(path);
}

std::string name_without_zst(const std::string& path) {
  return ends_with(path, ".zst") ? path.substr(0, path.size() - 4) : path;
}

LineReader::LineReader(const std::string& path) : stream_(ByteStream::open(path)), buffer_(1 << 20) {}

bool LineReader::refill() {
  if (eof_) return false;
  if (begin_ > 0) {  // keep the unfinished line at the front
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == buffer_.size()) buffer_.resize(buffer_.size() * 2);  // a line longer than the buffer
  const size_t n = stream_->read(buffer_.data() + end_, buffer_.size() - end_);
  if (n == 0) eof_ = true;
  end_ += n;
  return n > 0;
}

bool LineReader::next(std::string& line) {
  size_t scanned = begin_;
  for (;;) {
    const void* nl = std::memchr(buffer_.data() + scanned, '\n', end_ - scanned);
    if (nl) {
      const size_t stop = static_cast<const char*>(nl) - buffer_.data();
      line.assign(buffer_.data() + begin_, stop - begin_);
      begin_ = stop + 1;
      break;
    }
    scanned = end_ - begin_;  // offsets shift to the front in refill()
    if (!refill()) {
      if (begin_ == end_) return false;
      line.assign(buffer_.data() + begin_, end_ - begin_);
      begin_ = end_;
      break;
    }
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line_number_ == 0 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);  // a UTF-8 byte-order mark
  ++line_number_;
  return true;
}

std::vector<std::string> expand_input_path(const std::string& path) {
  std::error_code ec;
  const auto status = stdfs::status(path, ec);
  if (ec || !stdfs::exists(status)) throw Error(path + ": input path does not exist");
  if (stdfs::is_regular_file(status)) return {path};
  std::vector<std::string> files;
  if (stdfs::is_directory(status)) {
    for (auto it = stdfs::recursive_directory_iterator(path); it != stdfs::recursive_directory_iterator(); ++it) {
      const std::string name = it->path().filename().string();
      if (!name.empty() && name[0] == '.') {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file()) files.push_back(it->path().string());
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw Error(path + ": input directory holds no files");
  return files;
}

}  // namespace xd::data
