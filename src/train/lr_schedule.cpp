#include "xdistill/train/lr_schedule.h"

#include <cmath>

#include "xdistill/util/error.h"

namespace xd::train {

ScheduleKind parse_schedule_kind(const std::string& name) {
  if (name == "warmup_cosine") return ScheduleKind::WarmupCosine;
  if (name == "warmup_constant") return ScheduleKind::WarmupConstant;
  throw Error("schedule.kind: '" + name + "' is not one of warmup_cosine, warmup_constant");
}

void LrSchedule::validate() const {
  XD_CHECK(peak_lr >= 0 && min_lr >= 0, "optim.lr/optim.min_lr: learning rates must be >= 0 (got ",
           peak_lr, ", ", min_lr, ")");
  XD_CHECK(total_steps >= 1, "schedule.steps: must be >= 1 (got ", total_steps, ")");
  XD_CHECK(warmup_steps >= 0 && warmup_steps <= total_steps, "schedule.warmup_steps: must be in [0, ",
           total_steps, "] (got ", warmup_steps, ")");
}

double LrSchedule::at(int64_t step) const {
  if (step < 0) step = 0;
  // Warm-up: step s uses peak * (s+1)/warmup, so the first step is not wasted at lr 0.
  if (step < warmup_steps) return peak_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (kind == ScheduleKind::WarmupConstant) return peak_lr;
  const int64_t decay_steps = total_steps - warmup_steps;
  if (decay_steps <= 1) return peak_lr;
  // Cosine from peak (first step after warm-up) down to min_lr (last step).
  double progress = static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps - 1);
  if (progress > 1.0) progress = 1.0;
  return min_lr + 0.5 * (peak_lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace xd::train
