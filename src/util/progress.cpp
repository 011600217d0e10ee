#include "xdistill/util/progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace xd {

bool Progress::is_terminal() {
  return isatty(fileno(stderr)) && std::getenv("XDISTILL_PLAIN_PROGRESS") == nullptr;
}

std::string Progress::format_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "--:--";
  const long t = static_cast<long>(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit, double interval_seconds)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total),
      interval_(interval_seconds), tty_(is_terminal()) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
  if (tty_) interval_ = 0.1;
}

Progress::~Progress() { finish(); }

void Progress::advance(int64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  done_ += n;
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_draw_).count() >= interval_) {
    last_draw_ = now;
    render(false);
  }
}

void Progress::set(int64_t done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = done;
  }
  advance(0);
}

void Progress::resume_from(int64_t done) {
  std::lock_guard<std::mutex> lock(mutex_);
  start_done_ = done_ = done;
}

void Progress::set_postfix(const std::string& text) {
  std::lock_guard<std::mutex> lock(mutex_);
  postfix_ = text;
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (finished_) return;
  finished_ = true;
  render(true);
}

void Progress::render(bool final_line) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? (done_ - start_done_) / elapsed : 0.0;
  const double eta = (total_ > 0 && rate > 0) ? (total_ - done_) / rate : -1;
  const double pct = total_ > 0 ? 100.0 * done_ / total_ : 0.0;
  char rate_buf[32];
  std::snprintf(rate_buf, sizeof rate_buf, rate >= 100 ? "%.0f" : "%.2f", rate);
  std::string counts = std::to_string(done_) + "/" + (total_ > 0 ? std::to_string(total_) : "?");
  if (tty_) {
    constexpr int width = 30;
    const int filled = total_ > 0 ? static_cast<int>(width * std::min(1.0, pct / 100)) : 0;
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r\033[K%s [%s] %s %5.1f%% %s %s/s %s %s%s", label_.c_str(), bar.c_str(),
                 counts.c_str(), pct, rate_buf, unit_.c_str(),
                 final_line ? "in" : "eta",
                 format_duration(final_line ? elapsed : eta).c_str(), postfix_.empty() ? "" : (" | " + postfix_).c_str());
    if (final_line) std::fputc('\n', stderr);
  } else {
    std::fprintf(stderr, "progress %s %s %.1f%% %s %s/s %s %s%s\n", label_.c_str(), counts.c_str(),
                 pct, rate_buf, unit_.c_str(), final_line ? "done_in" : "eta",
                 format_duration(final_line ? elapsed : eta).c_str(),
                 postfix_.empty() ? "" : (" | " + postfix_).c_str());
  }
  std::fflush(stderr);
}

}  // namespace xd
