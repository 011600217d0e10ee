#!/usr/bin/env bash
# The kernel engineer's one device call: build the operator tests and the kernel
# benchmark, run the GPU parity tests, compute-sanitizer memcheck on small shapes,
# then the benchmark. Logs under $OUT.
#   scripts/device/kernels_run.sh [--quick]
#     always: the GPU operator tests, memcheck, per-kernel times (ncu, one mLSTM and
#             one window forward+backward at B=8 H=32 S=4096 D=128)
#     --quick: then the C++ benchmark only (tensor-core and FMA kernels, B=8 S=4096)
#     default: then tools/bench_kernels.py (SDPA and FlexAttention anchors in the same
#              run, B=8 S=4096 and B=2 S=16384)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/out}"
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
T=build-device/tests/ops/test_ops_cuda
B=build-device/tests/ops/xd_bench_kernels
# The CPU reference tests (test_ops_reference) run in CI, not here.
args=(--no-tests --targets "test_ops_cuda xd_bench_kernels")
args+=(--bench "$T --gtest_filter='MlstmCuda.*:WindowCuda.*' 2>&1 | tee $OUT/ops_cuda.log | grep -E 'max rel|OK \\]|FAILED|relative|Failure' | head -80")
san="$T --gtest_filter=MlstmCuda.BFloat16Small:MlstmCuda.StepMatchesOneCall:MlstmCuda.StatePassingEqualsOneCall:WindowCuda.CacheStepsEqualOneCall:WindowCuda.BFloat16MatchesDenseOracle"
args+=(--bench "compute-sanitizer --tool memcheck --error-exitcode 9 $san 2>&1 | tail -4")
prof="ncu --clock-control none --metrics gpu__time_duration.sum --csv $B 8 32 4096 128 1 profile > $OUT/ncu.csv 2>&1"
args+=(--bench "$prof; python3 tools/ncu_summary.py < $OUT/ncu.csv | head -30")
if ((QUICK)); then
  args+=(--bench "XD_BENCH_FMA=1 $B 8 32 4096 128 20")
else
  args+=(--bench "XD_BENCH_FMA=1 python3 tools/bench_kernels.py --bin $B 2>&1 | tee $OUT/bench_table.md")
fi
scripts/device/build_and_test.sh "${args[@]}"
exit 0
