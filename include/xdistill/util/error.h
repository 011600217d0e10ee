#pragma once
#include <stdexcept>
#include <string>

namespace xd {

// A runtime failure with a one-line, user-facing cause: what went wrong, where
// (file, key, tensor), and what was expected. The CLI prints it and exits 1.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A bad command line or recipe value: the CLI prints it with the usage, exits 2.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& what) : Error(what) {}
};

// LibTorch's errors append a C++ stack trace to their message ("Exception raised from
// ..." and a frame per line); a user needs the part before it, the cause.
inline std::string message_without_backtrace(std::string message) {
  const auto at = message.find("\nException raised from ");
  if (at != std::string::npos) message.resize(at);
  return message;
}

}  // namespace xd

#define XD_CHECK(cond, ...)                                        \
  do {                                                             \
    if (!(cond)) throw ::xd::Error(::xd::detail_concat(__VA_ARGS__)); \
  } while (0)

#include <sstream>
namespace xd {
template <typename... Args>
std::string detail_concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace xd
