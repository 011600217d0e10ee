#!/usr/bin/env bash
# Training-step benchmarks of anchors.md on one GPU, random weights, S=4096:
#   Stage I  at Llama-3.1-8B shapes, B=2  (target >= 22,000 tok/s)
#   Stage II at Llama-3.2-3B shapes, B=1  (target >= 13,500 tok/s), with activation
#            checkpointing, then without it where memory allows
# Each prints one line: "bench-train stage=... : X tok/s, Y ms/step, MFU Z %, peak W GiB".
#   [CHUNK128=1] [ROW_KERNELS=1] [COMPARE_ENV="NAME=value"] tools/bench_train.sh [path/to/xdistill] [steps] [profile-top-N]
# With profile-top-N > 0, one more step per stage is profiled and its N most
# expensive GPU kernels are printed (where the time goes).
set -euo pipefail
BIN="${1:-build/xdistill}"
STEPS="${2:-10}"
PROFILE="${3:-0}"
"$BIN" bench-train --stage align --shape llama-8b --batch 2 --seq 4096 --steps "$STEPS" --warmup 2 --device cuda --profile "$PROFILE"
"$BIN" bench-train --stage distill --shape llama-3b --batch 1 --seq 4096 --steps "$STEPS" --warmup 2 --device cuda --profile "$PROFILE"
# Without recomputing layers: 67 GiB since the in-place AdamW and the loss kernels (85 before).
"$BIN" bench-train --stage distill --shape llama-3b --batch 1 --seq 4096 --steps "$STEPS" --warmup 2 --device cuda \
  --no-activation-checkpointing || echo "bench-train stage=distill without activation checkpointing: failed (rc $?)"
# ROW_KERNELS=1: Stage II without checkpointing again with ATen's RMSNorm and SiLU * up
# instead of the training row kernels (XD_TRAINING_ROW_KERNELS=off), to measure what they save.
if [[ "${ROW_KERNELS:-0}" == 1 ]]; then
  XD_TRAINING_ROW_KERNELS=off "$BIN" bench-train --stage distill --shape llama-3b --batch 1 --seq 4096 --steps "$STEPS" \
    --warmup 2 --device cuda --no-activation-checkpointing | sed 's/^bench-train /bench-train aten-rows /' ||
    echo "bench-train aten-rows stage=distill without activation checkpointing: failed"
fi
# COMPARE_ENV="NAME=value ...": Stage II without checkpointing again with those switches
# (an A/B of one kernel path on the same card in the same run).
if [[ -n "${COMPARE_ENV:-}" ]]; then
  env $COMPARE_ENV "$BIN" bench-train --stage distill --shape llama-3b --batch 1 --seq 4096 --steps "$STEPS" \
    --warmup 2 --device cuda --no-activation-checkpointing | sed "s/^bench-train /bench-train [$COMPARE_ENV] /" ||
    echo "bench-train [$COMPARE_ENV] stage=distill without activation checkpointing: failed"
fi
# CHUNK128=1: both stages again with the mLSTM chunk of 128 (half as many chunks for the
# scans to walk in series; Stage II without recomputing layers).
if [[ "${CHUNK128:-0}" == 1 ]]; then
  "$BIN" bench-train --stage align --shape llama-8b --batch 2 --seq 4096 --steps "$STEPS" --warmup 2 --device cuda \
    --chunk-size 128 | sed 's/^bench-train /bench-train chunk=128 /' || echo "bench-train chunk=128 stage=align: failed"
  "$BIN" bench-train --stage distill --shape llama-3b --batch 1 --seq 4096 --steps "$STEPS" --warmup 2 --device cuda \
    --no-activation-checkpointing --chunk-size 128 | sed 's/^bench-train /bench-train chunk=128 /' ||
    echo "bench-train chunk=128 stage=distill without activation checkpointing: failed"
fi
