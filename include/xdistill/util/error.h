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
