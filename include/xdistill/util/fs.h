// File helpers that never leave a half-written file behind.
#pragma once
#include <filesystem>
#include <functional>
#include <string>

namespace xd::fs {

// Writes `content` to `path` through a temporary file in the same directory, then
// renames it over `path`, so readers see the old file or the new one, never a mix.
void write_atomic(const std::filesystem::path& path, const std::string& content);

// Same, for content produced by a writer callback on a std::FILE* (large binary files).
void write_atomic_with(const std::filesystem::path& path,
                       const std::function<void(std::FILE*)>& writer);

// Temporary sibling name used for atomic writes of files and directories.
std::filesystem::path temp_sibling(const std::filesystem::path& path);

// Deletes a file or a directory tree (like `rm -rf`); a missing path is not an error.
// Use this instead of std::filesystem::remove_all: libtorch.so exports its own copy of
// that function, and a binary can bind to it across a C++ runtime boundary and crash
// (seen on the GPU machine's toolchain while pruning checkpoints).
void remove_tree(const std::filesystem::path& path);
// Same, never throwing; returns false when something could not be removed.
bool remove_tree_noexcept(const std::filesystem::path& path) noexcept;

std::string read_text(const std::filesystem::path& path);

// Replaces directory `dest` by the finished directory `staging` (same filesystem).
void replace_directory(const std::filesystem::path& staging, const std::filesystem::path& dest);

}  // namespace xd::fs
