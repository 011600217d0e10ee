// Learning-rate schedules of method.md §3: linear warm-up, then cosine decay to a
// floor (Stage I) or a constant rate (Stage II). Pure functions of the step, so a
// resumed run needs only the step count to continue the schedule exactly.
#pragma once
#include <cstdint>
#include <string>

namespace xd::train {

enum class ScheduleKind { WarmupCosine, WarmupConstant };
ScheduleKind parse_schedule_kind(const std::string& name);  // "warmup_cosine" | "warmup_constant"

struct LrSchedule {
  ScheduleKind kind = ScheduleKind::WarmupConstant;
  double peak_lr = 1e-5;
  double min_lr = 0.0;       // end of the cosine; unused by the constant schedule
  int64_t warmup_steps = 0;  // linear from peak/warmup at step 0 up to peak at step warmup-1
  int64_t total_steps = 1;

  // The rate applied by optimizer step `step` (0-based). Throws xd::Error on an
  // inconsistent schedule (negative rates, warm-up longer than the run).
  double at(int64_t step) const;
  void validate() const;
};

}  // namespace xd::train
