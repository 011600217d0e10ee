#!/usr/bin/env bash
# The kernel engineer's one device call: build the operator tests and the kernel
# benchmark, run the parity tests (gpu label included), compute-sanitizer on a
# small shape, then the benchmark table. Logs under $OUT.
#   scripts/device/kernels_run.sh [--no-bench]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/out}"
BENCH=1
[[ "${1:-}" == "--no-bench" ]] && BENCH=0
args=(--targets "test_ops_reference test_ops_cuda xd_bench_kernels" --ctest-args "-R Mlstm|Window -E MlstmCuda")
san="build-device/tests/ops/test_ops_cuda --gtest_filter=MlstmCuda.StepMatchesOneCall:MlstmCuda.StatePassingEqualsOneCall:WindowCuda.CacheStepsEqualOneCall"
args+=(--bench "compute-sanitizer --tool memcheck --error-exitcode 9 $san 2>&1 | tail -5")
# racecheck (run 2026-11-28, 0 hazards): compute-sanitizer --tool racecheck $san
args+=(--bench "build-device/tests/ops/test_ops_cuda --gtest_filter='MlstmCuda.*' 2>&1 | tee $OUT/mlstm_cuda.log | grep -E 'max rel|OK \\]|FAILED|relative' | head -60")
prof="ncu --clock-control none --section SpeedOfLight -k 'regex:chunk_scan|forward_output|backward_chunk|gate_backward|row_dot' --launch-skip 8 --launch-count 7"
args+=(--bench "$prof build-device/tests/ops/xd_bench_kernels 8 32 4096 128 1 > $OUT/ncu.log 2>&1; grep -E 'kernel|Duration' $OUT/ncu.log | head -30")
((BENCH)) && args+=(--bench "python3 tools/bench_kernels.py --bin build-device/tests/ops/xd_bench_kernels 2>&1 | tee $OUT/bench_table.md")
scripts/device/build_and_test.sh "${args[@]}"
grep -E "^\[  FAILED|FAILED  \]|rel|Failure" "$OUT/ctest.log" | head -60
