#include "xdistill/dist/hostlist.h"

#include <cctype>

#include "xdistill/util/error.h"

namespace xd::dist {
namespace {

// Splits at commas that are outside brackets.
std::vector<std::string> split_top_level(const std::string& list) {
  std::vector<std::string> parts;
  std::string current;
  int depth = 0;
  for (char c : list) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (depth < 0) throw Error("host list '" + list + "': ']' without a matching '['");
    if (c == ',' && depth == 0) {
      parts.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (depth != 0) throw Error("host list '" + list + "': '[' without a matching ']'");
  parts.push_back(current);
  return parts;
}

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

std::string pad(unsigned long long value, size_t width) {
  std::string s = std::to_string(value);
  if (s.size() < width) s.insert(0, width - s.size(), '0');
  return s;
}

// "01-04,07" -> {"01","02","03","04","07"}
std::vector<std::string> expand_group(const std::string& group, const std::string& list, size_t max_hosts) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= group.size()) {
    size_t comma = group.find(',', start);
    if (comma == std::string::npos) comma = group.size();
    const std::string item = group.substr(start, comma - start);
    const size_t dash = item.find('-');
    const std::string lo = item.substr(0, dash);
    const std::string hi = dash == std::string::npos ? lo : item.substr(dash + 1);
    if (!all_digits(lo) || !all_digits(hi))
      throw Error("host list '" + list + "': '[" + group + "]' holds '" + item +
                  "', expected a number or a range like 01-04");
    const unsigned long long a = std::stoull(lo), b = std::stoull(hi);
    if (b < a) throw Error("host list '" + list + "': range '" + item + "' goes backwards");
    if (b - a >= max_hosts) throw Error("host list '" + list + "': more than " + std::to_string(max_hosts) + " hosts");
    for (unsigned long long v = a; v <= b; ++v) out.push_back(pad(v, lo.size()));
    start = comma + 1;
  }
  return out;
}

std::vector<std::string> expand_entry(const std::string& entry, const std::string& list, size_t max_hosts) {
  std::vector<std::string> hosts{""};
  size_t pos = 0;
  while (pos < entry.size()) {
    const size_t open = entry.find('[', pos);
    const std::string literal = entry.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    for (auto& h : hosts) h += literal;
    if (open == std::string::npos) break;
    const size_t close = entry.find(']', open);
    const auto numbers = expand_group(entry.substr(open + 1, close - open - 1), list, max_hosts);
    if (hosts.size() * numbers.size() > max_hosts)
      throw Error("host list '" + list + "': more than " + std::to_string(max_hosts) + " hosts");
    std::vector<std::string> product;
    product.reserve(hosts.size() * numbers.size());
    for (const auto& h : hosts)
      for (const auto& n : numbers) product.push_back(h + n);
    hosts.swap(product);
    pos = close + 1;
  }
  return hosts;
}

}  // namespace

std::vector<std::string> expand_hostlist(const std::string& list, size_t max_hosts) {
  std::vector<std::string> hosts;
  for (const auto& entry : split_top_level(list)) {
    if (entry.empty()) continue;  // "a,,b" and a trailing comma are harmless
    for (auto& h : expand_entry(entry, list, max_hosts)) hosts.push_back(std::move(h));
    if (hosts.size() > max_hosts) throw Error("host list '" + list + "': more than " + std::to_string(max_hosts) + " hosts");
  }
  return hosts;
}

std::string first_host(const std::string& list) {
  for (const auto& entry : split_top_level(list)) {
    if (entry.empty()) continue;
    // Only the first number of each bracket group matters for the first host.
    std::string first;
    size_t pos = 0;
    while (pos < entry.size()) {
      const size_t open = entry.find('[', pos);
      first += entry.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
      if (open == std::string::npos) break;
      const size_t close = entry.find(']', open);
      std::string group = entry.substr(open + 1, close - open - 1);
      group = group.substr(0, group.find(','));
      first += expand_group(group.substr(0, group.find('-')), list, 1).front();
      pos = close + 1;
    }
    return first;
  }
  throw Error("host list '" + list + "' names no host");
}

}  // namespace xd::dist
