// The only translation unit that includes spdlog (see log.h for why).
#include "xdistill/util/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <filesystem>
#include <mutex>

#include "xdistill/util/error.h"

namespace xd::log {
namespace {
std::atomic<Level> g_level{Level::info};

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    console->set_pattern("%^[%H:%M:%S %L]%$ %v");
    auto l = std::make_shared<spdlog::logger>("xdistill", console);
    l->set_level(spdlog::level::trace);
    l->flush_on(spdlog::level::warn);
    return l;
  }();
  return *instance;
}

spdlog::level::level_enum to_spdlog(Level l) {
  switch (l) {
    case Level::trace: return spdlog::level::trace;
    case Level::debug: return spdlog::level::debug;
    case Level::info: return spdlog::level::info;
    case Level::warn: return spdlog::level::warn;
    case Level::error: return spdlog::level::err;
    default: return spdlog::level::off;
  }
}
}  // namespace

Level parse_level(const std::string& name) {
  static const char* names[] = {"trace", "debug", "info", "warn", "error", "off"};
  for (int i = 0; i < 6; ++i)
    if (name == names[i]) return static_cast<Level>(i);
  throw Error("log level '" + name + "' is not one of trace, debug, info, warn, error, off");
}

void set_level(Level l) { g_level = l; }
Level level() { return g_level; }

void add_file(const std::string& path) {
  std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
  sink->set_pattern("%Y-%m-%d %H:%M:%S.%e %l %v");
  logger().sinks().push_back(sink);
}

void remove_file(const std::string& path) {
  auto& sinks = logger().sinks();
  for (auto it = sinks.begin(); it != sinks.end(); ++it) {
    auto file = std::dynamic_pointer_cast<spdlog::sinks::basic_file_sink_mt>(*it);
    if (file && file->filename() == path) {
      file->flush();
      sinks.erase(it);
      return;
    }
  }
}

void write(Level l, const std::string& message) {
  if (l < g_level) return;
  logger().log(to_spdlog(l), "{}", message);
  if (l >= Level::info) logger().flush();
}

}  // namespace xd::log
