// Progress reporting for long work. On a terminal: one redrawn bar with rate and
// ETA. Otherwise (a log file, a batch job): one plain, grep-able line every
// `interval_seconds`, in the fixed format
//   progress <label> <done>/<total> <pct>% <rate> <unit>/s eta <h:mm:ss>
// which tests and scripts may parse.
#pragma once
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace xd {

class Progress {
 public:
  // total <= 0 means unknown: no percentage or ETA is shown.
  Progress(std::string label, int64_t total, std::string unit = "it",
           double interval_seconds = 10.0);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(int64_t n = 1);
  void set(int64_t done);
  // Work already done before this process started (a resumed run): it counts towards
  // the total but not towards the rate.
  void resume_from(int64_t done);
  // A short free-form suffix, e.g. "loss 2.31".
  void set_postfix(const std::string& text);
  void finish();

  int64_t done() const { return done_; }
  // Whether output goes to a terminal (stderr is a TTY and XDISTILL_PLAIN_PROGRESS unset).
  static bool is_terminal();
  static std::string format_duration(double seconds);

 private:
  void render(bool final_line);

  std::string label_, unit_, postfix_;
  int64_t total_ = 0, done_ = 0, start_done_ = 0;
  double interval_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mutex_;
};

}  // namespace xd
