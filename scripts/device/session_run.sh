#!/usr/bin/env bash
# One device call that builds, checks and measures, with a short table at the end.
# Run ON the GPU machine from the repository root, with .debs carried:
#   scripts/device/session_run.sh PART...
# Parts, in the order given:
#   tests          the GPU-labelled tests (ctest -L gpu)
#   infer          bench inference at Llama-3.1-8B shapes: decode B=8 at 32K (fused and
#                  ATen step for the student; INFER_QUICK=1 skips the ATen step; the
#                  one-block decode kernel at 4K) and prefill B=1 at 64K, teacher and student
#   train          tools/bench_train.sh (Stage I 8B B=2, Stage II 3B B=1), 4 steps, then the
#                  same steps in the Python stack (tools/python_stack_step.py) when .whl is carried
#   kernels        tools/bench_kernels.py (mLSTM, window + sinks, SDPA, FlexAttention, and
#                  the Triton limit_chunk mLSTM when .whl is carried)
#   profile        where the GPU time goes, kernel by kernel: a student and teacher
#                  decode step at B=8, the prefill at B=1 16K, one step of each training stage
#   profile-train  only the training steps of profile (both stages, top 30 kernels each)
#   sanitize-train compute-sanitizer memcheck over the training-step kernels' GPU tests
#   sanitize-kernels  the same over the mLSTM (mma.sync and warpgroup) and window kernels
#                  at small shapes
#   ncu-decode     Nsight Compute counters of the 41st student decode-mixer launch of a
#                  --batch 8 bench (on 2026-12-07 that launch had B=1: 64 blocks)
#   ncu-window     Nsight Compute kernel durations of one mLSTM and one window (cuDNN)
#                  forward + backward at B=8 S=4096; then the mLSTM's with XD_MLSTM_WGMMA=on
#   demo-small     xdistill demo --size small --device cuda (resumes in /tmp/demo-small on a
#                  warm machine; DEMO_FRESH=1 starts over)
# Logs and JSON lines under $OUT, packed into $OUT/session_logs.tgz at the end; the
# build is kept in build-device between calls. PREBUILT=.prebuilt (carried; made by
# scripts/device/pack_prebuilt.sh on the CPU machine) skips the build and runs the
# binaries in it; the tests part then runs the GPU gtest binaries directly.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/out}"; mkdir -p "$OUT"
BIN=build-device/xdistill
ROWS=()
BG_PIDS=()
t0=$(date +%s)
row() { ROWS+=("$(printf '%-12s %-8s %5ss  %s' "$1" "$2" "$3" "$4")"); }
# "N ok, M failed" of a gtest log (each failed test counted once, from its timing line).
gtest_counts() {
  echo "$(grep -c '^\[       OK' "$1") ok, $(grep -cE '^\[  FAILED  \] .* \([0-9]+ ms\)$' "$1") failed"
}

start=$(date +%s)
TESTS_DIR=""  # where the GPU test binaries are when they run without ctest
if [[ -n "${PREBUILT:-}" ]]; then
  # Binaries built on the CPU machine (scripts/device/pack_prebuilt.sh) against the
  # same torch: no build here. This machine's torch libraries replace the CPU machine's.
  mkdir -p /tmp/prebuilt && tar -C /tmp/prebuilt -xJf "$PREBUILT/prebuilt.tar.xz"
  TORCH_LIB=$(python3 -c 'import os,torch;print(os.path.join(os.path.dirname(torch.__file__),"lib"))')
  # cuDNN (the window attention's cuDNN backend links it) from the same torch's wheel.
  export LD_LIBRARY_PATH=/tmp/prebuilt/lib:$TORCH_LIB:$TORCH_LIB/../../nvidia/cudnn/lib:${LD_LIBRARY_PATH:-}
  BIN=/tmp/prebuilt/bin/xdistill; TESTS_DIR=/tmp/prebuilt/bin
  missing=$(ldd $BIN /tmp/prebuilt/bin/test_* | grep "not found" | sort -u)
  echo "prebuilt from $(cat "$PREBUILT/commit" | tr '\n' ' ')"; [[ -z "$missing" ]] || echo "missing: $missing"
  $BIN --version; rc=$?
  row prebuilt "$([[ $rc == 0 ]] && echo ok || echo FAILED)" $(( $(date +%s) - start )) ""
else
  scripts/device/build_and_test.sh --no-tests \
    --targets "xdistill test_ops_cuda test_infer_gpu test_decoder_gpu test_torch_io_gpu test_kernel_profile_gpu test_train_gpu" > "$OUT/build_summary.log" 2>&1
  rc=$?
  tail -3 "$OUT/build_summary.log"
  row build "$([[ $rc == 0 ]] && echo ok || echo FAILED)" $(( $(date +%s) - start )) ""
fi
((rc == 0)) || { printf '%s\n' "${ROWS[@]}"; exit 1; }
export XDISTILL_PLAIN_PROGRESS=1 PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0

# Wheels carried in .whl (scripts/device/fetch_wheels.sh) into /tmp/site; false without them.
install_wheels() {
  compgen -G ".whl/*.whl" > /dev/null || return 1
  [[ -d /tmp/site ]] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || return 1
  export PYTHONPATH=/tmp/site
}

BUDGET_S="${BUDGET_S:-540}"  # parts that would start after this many seconds are skipped
for part in "$@"; do
  start=$(date +%s)
  if (( start - t0 > BUDGET_S )); then row "$part" skipped 0 "over the ${BUDGET_S} s budget"; continue; fi
  case "$part" in
    tests)
      if [[ -n "$TESTS_DIR" ]]; then
        # No ctest tree here: each GPU gtest binary in turn (GPU_TEST_FILTER narrows them).
        # BACKGROUND_TESTS names binaries (mostly float64 oracles on the CPU) that run
        # beside the later parts; the end of the run waits for them.
        rc=0
        for t in "$TESTS_DIR"/test_*; do
          run_test=(env XD_SOURCE_DIR="$ROOT" timeout "${GPU_TEST_TIMEOUT:-300}" "$t" --gtest_filter="${GPU_TEST_FILTER:-*}")
          if [[ " ${BACKGROUND_TESTS:-} " == *" $(basename "$t") "* ]]; then
            "${run_test[@]}" > "$OUT/$(basename "$t")_bg.log" 2>&1 &
            BG_PIDS+=($!)
          else
            "${run_test[@]}" >> "$OUT/ctest_gpu.log" 2>&1 || rc=1
          fi
        done
        grep -E "^\[  (PASSED|FAILED) |^\[  FAILED|Expected|Which is|rel" "$OUT/ctest_gpu.log" | head -40
        row tests "rc=$rc" $(( $(date +%s) - start )) "$(gtest_counts "$OUT/ctest_gpu.log")"
        continue
      fi
      ctest --test-dir build-device -L gpu --output-on-failure -j 2 --timeout 600 > "$OUT/ctest_gpu.log" 2>&1
      rc=$?
      grep -E "\*\*\*Failed|Failed  |Timeout|Expected|Which is|rel|tests passed" "$OUT/ctest_gpu.log" | head -40
      row tests "rc=$rc" $(( $(date +%s) - start )) "$(grep -E 'tests passed' "$OUT/ctest_gpu.log" | tail -1)"
      ;;
    infer)
      $BIN bench inference --shape llama-3.1-8b --batch 8 --context 32k --gen 40 --device cuda --dtype bf16 \
        --out "$OUT/infer_decode.jsonl" 2>&1 | tee "$OUT/infer_decode.log" | tail -8
      [[ "${INFER_QUICK:-0}" == 1 ]] || $BIN bench inference --shape llama-3.1-8b --batch 8 --context 4k --gen 40 \
        --device cuda --dtype bf16 --no-fused-step --out "$OUT/infer_decode_aten.jsonl" 2>&1 |
        tee "$OUT/infer_decode_aten.log" | tail -6
      # The one-block decode kernel (the two-role kernel is the default); the student's
      # decode rate does not depend on the context, so 4k keeps the prefill short.
      XD_DECODE_STEP=one_block $BIN bench inference --shape llama-3.1-8b --batch 8 --context 4k --gen 40 \
        --device cuda --dtype bf16 --out "$OUT/infer_decode_one_block.jsonl" 2>&1 |
        tee "$OUT/infer_decode_one_block.log" | tail -6
      $BIN bench inference --shape llama-3.1-8b --batch 1 --context 64k --gen 8 --device cuda --dtype bf16 \
        --out "$OUT/infer_prefill.jsonl" 2>&1 | tee "$OUT/infer_prefill.log" | tail -8
      # The same prefill with the other mLSTM forward (XD_MLSTM_FORWARD_ALT, e.g. fused).
      [[ -z "${XD_MLSTM_FORWARD_ALT:-}" ]] || XD_MLSTM_FORWARD=$XD_MLSTM_FORWARD_ALT $BIN bench inference \
        --shape llama-3.1-8b --batch 1 --context 64k --gen 8 --device cuda --dtype bf16 --out "$OUT/infer_prefill_alt.jsonl" \
        2>&1 | tee "$OUT/infer_prefill_alt.log" | tail -3
      row infer done $(( $(date +%s) - start )) "see infer_*.log"
      ;;
    train)
      tools/bench_train.sh $BIN 4 2>&1 | grep -v "^\[" | tee "$OUT/train.log" | grep "bench-train"
      # The same steps in the Python stack of anchors.md, on this card, when mlstm_kernels is
      # carried (TRAIN_PYTHON=0 skips them).
      if [[ "${TRAIN_PYTHON:-1}" == 1 ]] && install_wheels; then
        python3 tools/python_stack_step.py --stage align --shape llama-8b --batch 2 --seq 4096 \
          --json "$OUT/python_stack.jsonl" 2>&1 | tee -a "$OUT/train.log" | grep "python-stack"
        python3 tools/python_stack_step.py --stage distill --shape llama-3b --batch 1 --seq 4096 \
          --json "$OUT/python_stack.jsonl" 2>&1 | tee -a "$OUT/train.log" | grep "python-stack"
      fi
      row train done $(( $(date +%s) - start )) "$(grep -c tok/s "$OUT/train.log") steps timed"
      ;;
    kernels)
      install_wheels  # the anchors' Triton mLSTM, when carried; the benchmark skips it otherwise
      KBIN=build-device/tests/ops/xd_bench_kernels
      if [[ -n "$TESTS_DIR" ]]; then KBIN="$TESTS_DIR/xd_bench_kernels"; else ninja -C build-device xd_bench_kernels > /dev/null 2>&1; fi
      python3 tools/bench_kernels.py --bin "$KBIN" 2>&1 | tee "$OUT/bench_kernels.md" | tail -24
      row kernels done $(( $(date +%s) - start )) ""
      ;;
    profile)
      $BIN bench inference --shape llama-3.1-8b --batch 8 --context 1k --gen 20 --device cuda --dtype bf16 \
        --profile-kernels > "$OUT/profile_decode.log" 2>&1
      $BIN bench inference --shape llama-3.1-8b --batch 1 --context 16k --gen 2 --device cuda --dtype bf16 \
        --profile-kernels > "$OUT/profile_prefill.log" 2>&1
      tools/bench_train.sh $BIN 2 30 2>&1 | grep -v "^\[" > "$OUT/profile_train.log"
      grep -A 12 "GPU time of one decode step, student" "$OUT/profile_decode.log"
      row profile done $(( $(date +%s) - start )) "profile_{decode,prefill,train}.log"
      ;;
    profile-train)
      tools/bench_train.sh $BIN 2 30 2>&1 | grep -v "^\[" > "$OUT/profile_train.log"
      grep "bench-train" "$OUT/profile_train.log"
      row profile-train done $(( $(date +%s) - start )) "profile_train.log"
      ;;
    sanitize-train)
      TT=build-device/tests/train/test_train_gpu
      [[ -z "$TESTS_DIR" ]] || TT="$TESTS_DIR/test_train_gpu"
      compute-sanitizer --tool memcheck --error-exitcode 9 "$TT" > "$OUT/sanitize_train.log" 2>&1
      rc=$?
      tail -4 "$OUT/sanitize_train.log"
      row sanitize-train "rc=$rc" $(( $(date +%s) - start )) "sanitize_train.log"
      ;;
    sanitize-kernels)
      # memcheck over the mLSTM and window kernels at small shapes, the warpgroup mLSTM
      # kernels included (MlstmCuda.WgmmaSmall, compute capability 9.0).
      TO=build-device/tests/ops/test_ops_cuda
      [[ -z "$TESTS_DIR" ]] || TO="$TESTS_DIR/test_ops_cuda"
      compute-sanitizer --tool memcheck --error-exitcode 9 "$TO" \
        --gtest_filter='MlstmCuda.BFloat16Small:MlstmCuda.WgmmaSmall:WindowCuda.BFloat16MatchesDenseOracle' \
        > "$OUT/sanitize_kernels.log" 2>&1
      rc=$?
      tail -4 "$OUT/sanitize_kernels.log"
      row sanitize-kernels "rc=$rc" $(( $(date +%s) - start )) "$(gtest_counts "$OUT/sanitize_kernels.log")"
      ;;
    ncu-decode)
      # Hardware counters of one launch of the student's decode mixer kernel (check its
      # grid size in the log: not every launch has the bench's batch). Firecracker only.
      ncu --clock-control none -k regex:student_decode_step --launch-skip 40 --launch-count 1 \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section LaunchStats \
        --section Occupancy $BIN bench inference --shape llama-3.1-8b --batch 8 --context 1k --gen 8 --device cuda \
        --dtype bf16 > "$OUT/ncu_decode.log" 2>&1
      grep -E "Duration|Memory Throughput|DRAM Throughput|L2 Cache Throughput|Stall|Achieved Occupancy|Registers" \
        "$OUT/ncu_decode.log" | head -30
      row ncu-decode done $(( $(date +%s) - start )) "ncu_decode.log"
      ;;
    ncu-window)
      # Kernel by kernel (Nsight Compute durations): one mLSTM and one window forward +
      # backward at B=8 S=4096, the window on cuDNN.
      KBIN=build-device/tests/ops/xd_bench_kernels; [[ -n "$TESTS_DIR" ]] && KBIN="$TESTS_DIR/xd_bench_kernels"
      XD_WINDOW_ATTENTION=cudnn ncu --clock-control none --csv --metrics gpu__time_duration.sum \
        "$KBIN" 8 32 4096 128 1 profile 2> "$OUT/ncu_window.err" | python3 tools/ncu_summary.py > "$OUT/ncu_window.log"
      head -24 "$OUT/ncu_window.log"
      # The same with every warpgroup mLSTM kernel (XD_MLSTM_WGMMA=on, compute capability 9.0).
      XD_MLSTM_WGMMA=on XD_WINDOW_ATTENTION=cudnn ncu --clock-control none --csv --metrics gpu__time_duration.sum \
        "$KBIN" 8 32 4096 128 1 profile 2> "$OUT/ncu_wgmma.err" | python3 tools/ncu_summary.py > "$OUT/ncu_wgmma.log"
      head -16 "$OUT/ncu_wgmma.log"
      row ncu-window done $(( $(date +%s) - start )) "ncu_window.log ncu_wgmma.log"
      ;;
    demo-small)
      # Re-running on a warm machine resumes the demo where a killed call left it.
      [[ "${DEMO_FRESH:-0}" == 1 ]] && rm -rf /tmp/demo-small
      /usr/bin/time -v $BIN demo --size small --device cuda --out /tmp/demo-small > "$OUT/demo_small.log" 2>&1
      rc=$?
      cp /tmp/demo-small/report.md /tmp/demo-small/report.json /tmp/demo-small/c_alpha.svg "$OUT/" 2>/dev/null
      tail -30 "$OUT/demo_small.log" | grep -vE "^\s+(Page|Vol|Invol|File|Socket|Sig|Swap|Minor|Major|Average|Exit|Percent)"
      row demo-small "rc=$rc" $(( $(date +%s) - start )) "$(grep -m1 -E 'C_0' "$OUT/demo_small.log")"
      ;;
    *) echo "unknown part $part" >&2 ;;
  esac
done
for pid in "${BG_PIDS[@]}"; do wait "$pid"; done
for f in "$OUT"/*_bg.log; do
  [[ -e "$f" ]] || continue
  grep -E "^\[  FAILED|Expected|Which is|max rel" "$f" | head -30
  row "$(basename "$f" _bg.log)" background $(( $(date +%s) - t0 )) "$(gtest_counts "$f")"
done
echo; echo "===== session run ($(( $(date +%s) - t0 )) s) ====="; printf '%s\n' "${ROWS[@]}"
# The device tool brings back a handful of files: every log in one archive.
( cd "$OUT" && tar czf session_logs.tgz --remove-files $(ls | grep -v '^session_logs.tgz$') ) 2>/dev/null
