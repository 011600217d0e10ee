#include "xdistill/util/fs.h"

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "xdistill/util/error.h"

namespace xd::fs {
namespace stdfs = std::filesystem;

stdfs::path temp_sibling(const stdfs::path& path) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".tmp.%d.%08x", static_cast<int>(getpid()),
                static_cast<unsigned>(rng()));
  return path.parent_path() / (path.filename().string() + suffix);
}

void write_atomic_with(const stdfs::path& path, const std::function<void(std::FILE*)>& writer) {
  if (path.has_parent_path()) stdfs::create_directories(path.parent_path());
  const stdfs::path tmp = temp_sibling(path);
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error(path.string() + ": cannot open for writing: " + std::strerror(errno));
  try {
    writer(f);
    if (std::fflush(f) != 0 || fsync(fileno(f)) != 0)
      throw Error(path.string() + ": write failed: " + std::strerror(errno));
  } catch (...) {
    std::fclose(f);
    std::error_code ec;
    stdfs::remove(tmp, ec);
    throw;
  }
  if (std::fclose(f) != 0) throw Error(path.string() + ": close failed: " + std::strerror(errno));
  stdfs::rename(tmp, path);
}

void write_atomic(const stdfs::path& path, const std::string& content) {
  write_atomic_with(path, [&](std::FILE* f) {
    if (!content.empty() && std::fwrite(content.data(), 1, content.size(), f) != content.size())
      throw Error(path.string() + ": short write: " + std::strerror(errno));
  });
}

namespace {
int remove_entry(const char* path, const struct stat*, int type, struct FTW*) {
  return (type == FTW_DP ? ::rmdir(path) : ::unlink(path)) == 0 || errno == ENOENT ? 0 : -1;
}
}  // namespace

bool remove_tree_noexcept(const stdfs::path& path) noexcept {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  if (!S_ISDIR(st.st_mode)) return ::unlink(path.c_str()) == 0 || errno == ENOENT;
  return ::nftw(path.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0;
}

void remove_tree(const stdfs::path& path) {
  if (!remove_tree_noexcept(path))
    throw Error(path.string() + ": cannot remove: " + std::strerror(errno));
}

std::string read_text(const stdfs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open for reading");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

void replace_directory(const stdfs::path& staging, const stdfs::path& dest) {
  if (stdfs::exists(dest)) {
    const stdfs::path old = temp_sibling(dest);
    stdfs::rename(dest, old);
    stdfs::rename(staging, dest);
    remove_tree_noexcept(old);
  } else {
    if (dest.has_parent_path()) stdfs::create_directories(dest.parent_path());
    stdfs::rename(staging, dest);
  }
}

}  // namespace xd::fs
