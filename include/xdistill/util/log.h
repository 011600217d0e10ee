// Logging facade. Its implementation (src/util/log.cpp) is the only translation
// unit that includes spdlog: torch's headers bundle fmt 12 while Debian's spdlog is
// built against fmt 9, so the two must never meet in one translation unit.
#pragma once
#include <sstream>
#include <string>

namespace xd::log {

enum class Level { trace = 0, debug, info, warn, error, off };

// Parses "trace|debug|info|warn|error|off"; throws xd::Error on anything else.
Level parse_level(const std::string& name);
void set_level(Level level);
Level level();
// Adds a log file (created with its parents) that receives every message at the
// current level or above, with timestamps, in addition to the terminal.
void add_file(const std::string& path);
// Stops writing to a file added by add_file (no-op when it was not added).
void remove_file(const std::string& path);
void write(Level level, const std::string& message);

// A log file for the duration of a scope (e.g. one training run's RUN_DIR/train.log),
// so that stages run one after another in one process each keep their own log.
class ScopedLogFile {
 public:
  explicit ScopedLogFile(std::string path) : path_(std::move(path)) { add_file(path_); }
  ~ScopedLogFile() { remove_file(path_); }
  ScopedLogFile(const ScopedLogFile&) = delete;
  ScopedLogFile& operator=(const ScopedLogFile&) = delete;

 private:
  std::string path_;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

template <typename... Args> void trace(const Args&... a) { if (level() <= Level::trace) write(Level::trace, detail::concat(a...)); }
template <typename... Args> void debug(const Args&... a) { if (level() <= Level::debug) write(Level::debug, detail::concat(a...)); }
template <typename... Args> void info(const Args&... a) { if (level() <= Level::info) write(Level::info, detail::concat(a...)); }
template <typename... Args> void warn(const Args&... a) { if (level() <= Level::warn) write(Level::warn, detail::concat(a...)); }
template <typename... Args> void error(const Args&... a) { if (level() <= Level::error) write(Level::error, detail::concat(a...)); }

}  // namespace xd::log
