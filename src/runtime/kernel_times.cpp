// The torch-free half of kernel_profile.h: naming and the printed table.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "xdistill/runtime/kernel_profile.h"

namespace xd::runtime {

std::string short_kernel_name(const std::string& full) {
  std::string name = full;
  if (name.rfind("void ", 0) == 0) name.erase(0, 5);
  // The parameter list starts at the first '(' outside template brackets; "(anonymous
  // namespace)" is part of a name, not a parameter list.
  const std::string anon = "(anonymous namespace)::";
  for (size_t at; (at = name.find(anon)) != std::string::npos;) name.erase(at, anon.size());
  int depth = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (c == '<') ++depth;
    else if (c == '>') depth = std::max(0, depth - 1);
    else if (c == '(' && depth == 0) { name.resize(i); break; }
  }
  while (!name.empty() && name.back() == ' ') name.pop_back();
  constexpr size_t kMax = 110;
  if (name.size() > kMax) name = name.substr(0, kMax - 3) + "...";
  return name;
}

std::string format_kernel_times(const std::vector<KernelTime>& times, const std::string& title, int top,
                                double per) {
  double total = 0;
  for (const auto& t : times) total += t.total_us;
  std::string out = title + "\n";
  char line[256];
  std::snprintf(line, sizeof line, "  %10s %6s %8s  %s\n", "us", "share", "launches", "kernel");
  out += line;
  if (per <= 0) per = 1;
  double rest_us = 0;
  int64_t rest_launches = 0;
  for (size_t i = 0; i < times.size(); ++i) {
    const auto& t = times[i];
    if (static_cast<int>(i) >= top) {
      rest_us += t.total_us;
      rest_launches += t.launches;
      continue;
    }
    std::snprintf(line, sizeof line, "  %10.1f %5.1f%% %8.1f  %s\n", t.total_us / per,
                  total > 0 ? 100.0 * t.total_us / total : 0.0, t.launches / per, t.name.c_str());
    out += line;
  }
  if (rest_launches > 0) {
    std::snprintf(line, sizeof line, "  %10.1f %5.1f%% %8.1f  (%zu other kernels)\n", rest_us / per,
                  total > 0 ? 100.0 * rest_us / total : 0.0, rest_launches / per, times.size() - top);
    out += line;
  }
  std::snprintf(line, sizeof line, "  %10.1f %5.1f%%           total GPU time%s\n", total / per, 100.0,
                per != 1 ? " (per step)" : "");
  out += line;
  return out;
}

}  // namespace xd::runtime
