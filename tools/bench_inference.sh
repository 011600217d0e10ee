#!/usr/bin/env bash
# Inference benchmark (issue #12) on one GPU: a random-weight teacher of
# Llama-3.1-8B shape and the student built from it, bf16, side by side:
#   B in {1,4,8}, contexts 1k..64k (settings that do not fit print "oom"), 100 new tokens.
# Prints time to first token, prefill and decode tokens/s, peak memory, and the
# student/teacher ratios (targets: prefill >= 2x at 64K, decode >= 4x at B=8, 32K).
# Writes $OUT/bench_inference.jsonl and $OUT/bench_inference.svg.
#   tools/bench_inference.sh [path/to/xdistill]
#   env: SHAPE (llama-3.1-8b), BATCH (1,4,8), CONTEXT (1k,4k,16k,32k,64k), GEN (100), OUT (out)
set -euo pipefail
BIN="${1:-build/xdistill}"
OUTDIR="${OUT:-out}"
mkdir -p "$OUTDIR"
"$BIN" bench inference --shape "${SHAPE:-llama-3.1-8b}" --batch "${BATCH:-1,4,8}" \
  --context "${CONTEXT:-1k,4k,16k,32k,64k}" --gen "${GEN:-100}" --device cuda --dtype bf16 \
  --out "$OUTDIR/bench_inference.jsonl" --plot "$OUTDIR/bench_inference.svg"
