// A minimal parallel-for for the merge's element loops (torch-free).
#pragma once
#include <cstdint>
#include <functional>

namespace xd::merge {

// Threads used by parallel_for: set_threads(0) = all cores (the default).
void set_threads(int threads);
int threads();

// Calls fn(begin, end) over [0, n) split into contiguous ranges of at least
// `grain` items, on up to threads() threads; rethrows the first exception.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace xd::merge
