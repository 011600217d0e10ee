#include "xdistill/train/stop_signal.h"

#include <csignal>

namespace xd::train {
namespace {
volatile std::sig_atomic_t g_signal = 0;
struct sigaction g_old_int, g_old_term, g_old_usr1;

extern "C" void on_stop_signal(int signum) {
  if (g_signal != 0) {  // second signal: give up on the clean stop
    std::signal(signum, SIG_DFL);
    std::raise(signum);
    return;
  }
  g_signal = signum;
}
}  // namespace

StopSignal::StopSignal() {
  g_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &g_old_int);
  sigaction(SIGTERM, &action, &g_old_term);
  sigaction(SIGUSR1, &action, &g_old_usr1);  // SLURM's --signal=USR1@T warning to the tasks
}

StopSignal::~StopSignal() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
  sigaction(SIGUSR1, &g_old_usr1, nullptr);
}

bool StopSignal::requested() const { return g_signal != 0; }
int StopSignal::signal_number() const { return static_cast<int>(g_signal); }
void StopSignal::request_for_test(int signum) { g_signal = signum; }

}  // namespace xd::train
