#!/usr/bin/env bash
# Data-parallel benchmark for the 2-GPU H200 machine (device kind nvidia-h200-x2).
# Builds xd_bench_dist (CUDA), then measures, writing one JSON line per run to
# $OUT/bench_dist (default: ./bench-dist-out) and a summary with the scaling efficiency:
#   1. 3B-shaped model, 1 GPU, then 2 GPUs with the same per-GPU work (weak
#      scaling): efficiency = tokens/s on 2 GPUs / (2 x tokens/s on 1 GPU); target >= 0.90.
#   2. 8B-shaped Stage II step on 2 GPUs with sharding and an online bf16 teacher:
#      it must run; peak memory per GPU is reported. (One GPU cannot hold it: 8B
#      parameters need 16 GB bf16 + 128 GB of fp32 state unsharded.)
# Takes about 5 minutes after the build.
# Usage, on the GPU machine from the repository root, .debs carried (see
# scripts/device/build_and_test.sh, whose build directory it reuses):
#   tools/bench_dist.sh [build-dir]          (default build-device)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build-device}
out=${OUT:+$OUT/bench_dist}
out=${out:-bench-dist-out}
mkdir -p "$out"
# The lent multi-GPU machines need NVLink SHARP (NVLS) off; every other NCCL_*
# setting is left as the caller set it.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpus.txt"

if [[ ! -f "$build/build.ninja" ]]; then
  if [[ ! -d .deps/usr && -d .debs ]]; then mkdir -p .deps && for f in .debs/*.deb; do dpkg -x "$f" .deps; done; fi
  torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DXDISTILL_CUDA=ON \
    -DCMAKE_PREFIX_PATH="$torch_prefix;$PWD/.deps/usr" > "$out/cmake.log"
fi
ninja -C "$build" -j "$(nproc)" xd_bench_dist > "$out/build.log" || { tail -30 "$out/build.log"; exit 1; }
bench="$build/tests/dist/xd_bench_dist"
common=(--seq "${SEQ:-4096}" --micro-batch 1 --accum "${ACCUM:-4}" --steps "${STEPS:-5}" --warmup 2)

"$bench" --shape 3b "${common[@]}" | tee "$out/3b_1gpu.json"
"$bench" --shape 3b "${common[@]}" --nproc 2 | tee "$out/3b_2gpu.json"
# 8B with an online teacher: seq 2048 by default so that the stand-in's activations
# (no activation checkpointing here) leave room; SEQ_8B=4096 to try the full length.
"$bench" --shape 8b --seq "${SEQ_8B:-2048}" --micro-batch 1 --accum "${ACCUM:-4}" --steps "${STEPS:-5}" --warmup 2 \
  --nproc 2 --teacher | tee "$out/8b_stage2_2gpu.json" || \
  echo '{"shape": "8b", "error": "failed, see the log above"}' > "$out/8b_stage2_2gpu.json"

python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
one = json.loads((out / "3b_1gpu.json").read_text())
two = json.loads((out / "3b_2gpu.json").read_text())
eff = two["tokens_per_second"] / (2 * one["tokens_per_second"])
big = json.loads((out / "8b_stage2_2gpu.json").read_text())
summary = {"scaling_3b_1_to_2_gpus": round(eff, 4), "target": 0.90, "meets_target": eff >= 0.90,
           "3b_tokens_per_second": [one["tokens_per_second"], two["tokens_per_second"]],
           "3b_peak_gib_per_gpu": [one["peak_reserved_gib_max"], two["peak_reserved_gib_max"]],
           "8b_stage2_2gpu": big}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
