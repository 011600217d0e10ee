// SIGINT / SIGTERM (and SIGUSR1, SLURM's --signal warning) during training: the
// handler only sets a flag; the training loop checks it after each optimizer step
// (all data-parallel ranks agree on it), writes a checkpoint, and exits cleanly.
// A second signal restores the default action, so a stuck run can still be killed.
#pragma once

namespace xd::train {

class StopSignal {
 public:
  StopSignal();   // installs the handlers
  ~StopSignal();  // restores the previous ones
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  bool requested() const;
  int signal_number() const;  // 0 when none arrived
  static void request_for_test(int signum);  // as if the signal had arrived
};

}  // namespace xd::train
