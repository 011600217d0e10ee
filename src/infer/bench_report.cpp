// `bench inference` results: context parsing, the printed table, JSON, SVG plot.
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

#include "xdistill/infer/bench.h"
#include "xdistill/util/error.h"

namespace xd::infer {
namespace {

int64_t parse_size(const std::string& raw) {
  std::string s = raw;
  int64_t scale = 1;
  if (!s.empty() && (s.back() == 'k' || s.back() == 'K')) scale = 1024, s.pop_back();
  try {
    size_t used = 0;
    const long long v = std::stoll(s, &used);
    if (used == s.size() && v > 0) return v * scale;
  } catch (const std::exception&) {
  }
  throw UsageError("--context: '" + raw + "' is not a positive length (e.g. 4096 or 4k)");
}

std::string human_tokens(int64_t n) {
  return n % 1024 == 0 ? std::to_string(n / 1024) + "k" : std::to_string(n);
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace

nlohmann::json BenchResult::to_json() const {
  return {{"model", model},          {"kind", kind},
          {"batch", batch},          {"context", context},
          {"gen", gen},              {"status", status},
          {"ttft_s", ttft_s},        {"prefill_tok_s", prefill_tok_s},
          {"decode_tok_s", decode_tok_s}, {"peak_gib", peak_bytes / double(1ull << 30)},
          {"extra_gib", extra_bytes / double(1ull << 30)},
          {"cuda_graph", cuda_graph}, {"fused_step", fused_step}};
}

std::vector<int64_t> parse_contexts(const std::string& text) {
  std::vector<int64_t> out;
  const size_t range = text.find("..");
  if (range != std::string::npos) {
    const int64_t lo = parse_size(text.substr(0, range)), hi = parse_size(text.substr(range + 2));
    if (lo > hi) throw UsageError("--context: '" + text + "' runs backwards");
    for (int64_t c = lo; c <= hi; c *= 2) out.push_back(c);
    return out;
  }
  std::stringstream ss(text);
  for (std::string part; std::getline(ss, part, ',');)
    if (!part.empty()) out.push_back(parse_size(part));
  if (out.empty()) throw UsageError("--context: no lengths in '" + text + "'");
  return out;
}

std::string format_results(const std::vector<BenchResult>& results) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-12s %-8s %5s %7s %10s %14s %13s %10s %10s\n", "model", "kind", "batch",
                "context", "ttft_s", "prefill_tok/s", "decode_tok/s", "peak_GiB", "extra_GiB");
  out += line;
  for (const auto& r : results) {
    if (r.status != "ok") {
      std::snprintf(line, sizeof line, "%-12s %-8s %5lld %7s  %s\n", r.model.c_str(), r.kind.c_str(),
                    (long long)r.batch, human_tokens(r.context).c_str(), r.status.c_str());
    } else {
      std::snprintf(line, sizeof line, "%-12s %-8s %5lld %7s %10.3f %14.0f %13.1f %10.2f %10.2f\n", r.model.c_str(),
                    r.kind.c_str(), (long long)r.batch, human_tokens(r.context).c_str(), r.ttft_s, r.prefill_tok_s,
                    r.decode_tok_s, r.peak_bytes / double(1ull << 30), r.extra_bytes / double(1ull << 30));
    }
    out += line;
  }
  // Ratios where both a teacher and a student ran the same setting.
  std::map<std::pair<int64_t, int64_t>, const BenchResult*> teacher, student;
  for (const auto& r : results) (r.kind == "student" ? student : teacher)[{r.batch, r.context}] = &r;
  std::string ratios;
  for (const auto& [key, s] : student) {
    auto it = teacher.find(key);
    if (it == teacher.end()) continue;
    const BenchResult* t = it->second;
    std::string prefill = "-", decode = "-", memory = "-";
    if (s->status == "ok" && t->status == "ok") {
      prefill = fixed(s->prefill_tok_s / t->prefill_tok_s, 2) + "x";
      decode = fixed(s->decode_tok_s / t->decode_tok_s, 2) + "x";
      if (t->extra_bytes > 0) memory = fixed(double(s->extra_bytes) / t->extra_bytes, 2) + "x";
    } else if (s->status == "ok") {
      prefill = decode = "teacher " + t->status;
    }
    std::snprintf(line, sizeof line, "%5lld %7s %16s %15s %12s\n", (long long)key.first,
                  human_tokens(key.second).c_str(), prefill.c_str(), decode.c_str(), memory.c_str());
    ratios += line;
  }
  if (!ratios.empty()) {
    std::snprintf(line, sizeof line, "\nstudent / teacher\n%5s %7s %16s %15s %12s\n", "batch", "context",
                  "prefill_speedup", "decode_speedup", "extra_memory");
    out += line + ratios;
  }
  return out;
}

std::string render_bench_svg(const std::vector<BenchResult>& results) {
  // Two panels (prefill, decode tokens/s) against log2 context; a line per (model, batch).
  const double H = 420, panel_w = 420, left = 70, top = 40, plot_h = 300, gap = 80;
  const double W = left + 2 * panel_w + gap + 40;  // both panels and a margin
  static const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  std::set<int64_t> contexts;
  std::map<std::string, std::vector<const BenchResult*>> series;
  double max_prefill = 1, max_decode = 1;
  for (const auto& r : results) {
    if (r.status != "ok") continue;
    contexts.insert(r.context);
    series[r.model + " (" + r.kind + ") B=" + std::to_string(r.batch)].push_back(&r);
    max_prefill = std::max(max_prefill, r.prefill_tok_s);
    max_decode = std::max(max_decode, r.decode_tok_s);
  }
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H + 20 * series.size()
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  if (contexts.empty()) return svg.str() + "<text x=\"20\" y=\"40\">no successful settings</text>\n</svg>\n";
  const double lo = std::log2(double(*contexts.begin())), hi = std::max(lo + 1, std::log2(double(*contexts.rbegin())));
  for (int p = 0; p < 2; ++p) {
    const double x0 = left + p * (panel_w + gap);
    // Round ticks: a step of 1, 2 or 5 times a power of ten, four or five of them.
    const double raw = (p == 0 ? max_prefill : max_decode) / 4;
    const double decade = std::pow(10.0, std::floor(std::log10(raw)));
    const double tick = raw <= decade ? decade : raw <= 2 * decade ? 2 * decade : raw <= 5 * decade ? 5 * decade : 10 * decade;
    const int ticks = static_cast<int>(std::ceil((p == 0 ? max_prefill : max_decode) / tick));
    const double ymax = tick * ticks;
    auto X = [&](int64_t c) { return x0 + (std::log2(double(c)) - lo) / (hi - lo) * panel_w; };
    auto Y = [&](double v) { return top + plot_h - v / ymax * plot_h; };
    svg << "<text x=\"" << x0 << "\" y=\"24\" font-size=\"14\">" << (p == 0 ? "prefill tokens/s" : "decode tokens/s")
        << "</text>\n<rect x=\"" << x0 << "\" y=\"" << top << "\" width=\"" << panel_w << "\" height=\"" << plot_h
        << "\" fill=\"none\" stroke=\"#444\"/>\n";
    for (int64_t c : contexts)
      svg << "<text x=\"" << X(c) << "\" y=\"" << top + plot_h + 16 << "\" text-anchor=\"middle\">"
          << human_tokens(c) << "</text>\n";
    for (int t = 0; t <= ticks; ++t)
      svg << "<text x=\"" << x0 - 6 << "\" y=\"" << Y(tick * t) + 4 << "\" text-anchor=\"end\">"
          << fixed(tick * t, 0) << "</text>\n";
    size_t i = 0;
    for (const auto& [label, points] : series) {
      const bool student = label.find("(student)") != std::string::npos;
      svg << "<polyline fill=\"none\" stroke=\"" << colours[i++ % 6] << "\" stroke-width=\"2\""
          << (student ? "" : " stroke-dasharray=\"6,3\"") << " points=\"";
      for (const BenchResult* r : points) svg << X(r->context) << "," << Y(p == 0 ? r->prefill_tok_s : r->decode_tok_s) << " ";
      svg << "\"/>\n";
    }
  }
  size_t i = 0;
  for (const auto& [label, points] : series) {
    const double y = top + plot_h + 40 + 18 * i;
    svg << "<line x1=\"" << left << "\" y1=\"" << y - 4 << "\" x2=\"" << left + 30 << "\" y2=\"" << y - 4
        << "\" stroke=\"" << colours[i % 6] << "\" stroke-width=\"2\"/><text x=\"" << left + 38 << "\" y=\"" << y
        << "\">" << label << "</text>\n";
    ++i;
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace xd::infer
