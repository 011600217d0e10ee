#!/usr/bin/env bash
# Data-parallel benchmark of the real trainer (`xdistill train`, Stage II with an
# online bf16 teacher, random weights, synthetic rows of 4096 tokens, bf16 compute,
# fp32 master weights and fp32 gradient reduction, activation checkpointing, clip 1.0)
# on the GPUs of one node. Runs what fits the GPU count, writes one JSON line per run
# to $OUT/bench_dist/bench_dist.jsonl (default ./bench-dist-out) and prints a table:
#   3b-N     Llama-3.2-3B shape on N = 1, 2, 4 GPUs, 1 row x ACCUM micro-batches per
#            GPU (weak scaling): efficiency = tok/s(N) / (N x tok/s(1)); target >= 0.90
#            for 1 -> 2. One GPU keeps the optimizer whole, several shard it (defaults).
#   8b-2     Llama-3.1-8B shape, sharded optimizer, 2 GPUs (does not fit on one: 8B
#            parameters need 130 GB of fp32 state unsharded)
#   8b-paper Llama-3.1-8B on 8 GPUs where there are 8, else 4, at the paper's setup: global batch 64 x 4096 by
#            gradient accumulation (4 GPUs x 1 row x 16), sharded; 2 steps, stop with a
#            checkpoint (rank 0 the model, every rank its optimizer shard, COMPLETE.json),
#            then --resume for a third step (same world size: identical state)
#   slurm    2 ranks started by hand with SLURM_PROCID/NTASKS/LOCALID/NODELIST/JOB_ID
#            (no launcher): rendezvous, NCCL on GPU SLURM_LOCALID, a few tiny steps
# tok/s is the mean over the steps after the first WARM of a run (all GPUs together);
# peak GiB is the largest CUDA-allocator peak of any rank. About 7 minutes on 4 x H200.
#
# Usage, on the GPU machine from the repository root (builds `xdistill` if needed):
#   tools/bench_dist.sh [build-dir]                      (default build-device)
# e.g. scripts/device/build_and_test.sh --no-tests --targets xdistill --bench "tools/bench_dist.sh"
# Best in two device calls, so that the build does not eat the bench's time:
#   scripts/device/build_and_test.sh --no-tests --targets xdistill
#   tools/bench_dist.sh build-device
# Knobs: STEPS (3B/8B-2 runs, default 5), WARM (2), ACCUM (4), SEQ (4096),
#        PAPER_ACCUM (64 / paper GPUs), SKIP="3b-4 8b-paper ..." to leave runs out, BUDGET (s,
#        default 480: no new run starts later), BENCH_WORK (run directories, default
#        /tmp/xd-bench-dist; the 8B checkpoint takes ~115 GB there, deleted at the
#        end). To try the script on a CPU: DEVICE=cpu NGPU=4 SHAPE_3B=tiny
#        SHAPE_8B=tiny SEQ=32 (with any nvidia-smi stand-in on PATH).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build-device}
out=${OUT:+$OUT/bench_dist}
out=${out:-bench-dist-out}
work=${BENCH_WORK:-/tmp/xd-bench-dist}
STEPS=${STEPS:-5} WARM=${WARM:-2} ACCUM=${ACCUM:-4} SEQ=${SEQ:-4096}
SKIP=" ${SKIP:-} " BUDGET=${BUDGET:-480} DEVICE=${DEVICE:-cuda}
SHAPE_3B=${SHAPE_3B:-llama-3b} SHAPE_8B=${SHAPE_8B:-llama-8b}
mkdir -p "$out"
rm -rf "$work" && mkdir -p "$work"
results="$out/bench_dist.jsonl"
: > "$results"
# The lent multi-GPU machines need NVLink SHARP (NVLS) off; every other NCCL_*
# setting is left as the caller set it.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export XDISTILL_PLAIN_PROGRESS=1
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
unset RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT SLURM_PROCID SLURM_NTASKS \
  SLURM_STEP_NUM_TASKS SLURM_LOCALID SLURM_NODELIST SLURM_STEP_NODELIST SLURM_JOB_NODELIST SLURM_JOB_ID

ngpu=${NGPU:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpus.txt"
echo "GPUs: $ngpu"
((ngpu >= 1)) || { echo "bench_dist: no GPU"; exit 1; }

bin="$build/xdistill"
if [[ ! -x "$bin" ]]; then
  if [[ ! -d .deps/usr && -d .debs ]]; then mkdir -p .deps && for f in .debs/*.deb; do dpkg -x "$f" .deps; done; fi
  torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DXDISTILL_CUDA=ON \
    -DCMAKE_PREFIX_PATH="$torch_prefix;$PWD/.deps/usr" > "$out/cmake.log" || { tail -20 "$out/cmake.log"; exit 1; }
  ninja -C "$build" -j "$(nproc)" xdistill > "$out/build.log" || { tail -30 "$out/build.log"; exit 1; }
fi

# recipe NAME SHAPE STEPS ACCUM -> path of a Stage II recipe for run directory $work/NAME
recipe() {
  local name=$1 shape=$2 steps=$3 accum=$4 file="$work/$1.yaml"
  cat > "$file" <<EOF
stage: distill
run: {name: $name, dir: $work/$name, device: $DEVICE, seed: 1, log_every: 1}
teacher: {path: random-$shape, random_shape: $shape, dtype: bf16}
data: {synthetic_vocab: $( [[ $shape == tiny ]] && echo 512 || echo 128256 ), seq_len: $SEQ}
optim: {lr: 1.0e-5, min_lr: 1.0e-5, weight_decay: 0.1, grad_clip: 1.0}
schedule: {kind: warmup_constant, warmup_steps: 0, steps: $steps}
batch: {micro_batch: 1, grad_accum: $accum}
loss: {top_k: 256}
precision: {compute: bf16, activation_checkpointing: true}
checkpoint: {every: 0, keep: 1}
EOF
  echo "$file"
}

# train NAME NPROC TIMEOUT ARGS... : runs `xdistill train` on NPROC GPUs, log in $out/NAME.log
train() {
  local name=$1 nproc=$2 limit=$3
  shift 3
  local cmd=("$bin")
  ((nproc > 1)) && cmd+=(launch --nproc "$nproc" --)
  echo "==> $name: ${cmd[*]} train $*"
  local t0=$SECONDS
  timeout --signal=TERM --kill-after=30 "$limit" "${cmd[@]}" train "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "    rc=$rc after $((SECONDS - t0)) s"
  ((rc == 0)) || tail -15 "$out/$name.log"
  return $rc
}

# record NAME METRICS NPROC RC WALL [KEY=VALUE...] : one JSON line from a metrics.jsonl
record() {
  python3 - "$2" "$1" "$3" "$4" "$5" "$WARM" "${@:6}" >> "$results" <<'PY'
import json, sys, pathlib
path, name, nproc, rc, wall, warm = sys.argv[1:7]
rec = {"run": name, "gpus": int(nproc), "rc": int(rc), "wall_s": int(wall)}
for kv in sys.argv[7:]:
    k, v = kv.split("=", 1)
    rec[k] = v
p = pathlib.Path(path)
steps = [json.loads(l) for l in p.read_text().splitlines() if l] if p.exists() else []
timed = [s for s in steps if s["step"] > int(warm)]
if timed:
    rec["steps_timed"] = [s["step"] for s in timed]
    rec["tokens_per_step"] = timed[-1]["tokens"]
    rec["tokens_per_s"] = round(sum(s["tokens_per_s"] for s in timed) / len(timed), 1)
    rec["step_seconds"] = round(sum(s["step_seconds"] for s in timed) / len(timed), 3)
    rec["mfu"] = round(sum(s["mfu"] for s in timed) / len(timed), 4)
    rec["peak_gib_per_gpu"] = round(max(s["peak_memory_gib"] for s in timed), 2)
    rec["grad_norm_last"] = timed[-1]["grad_norm"]
    rec["loss_last"] = timed[-1]["loss"]
print(json.dumps(rec))
PY
  tail -1 "$results"
}

# wants NAME GPUS: the run is not skipped, the GPUs exist, and there is time left
wants() {
  [[ $SKIP != *" $1 "* ]] || return 1
  (($2 <= ngpu)) || { echo "==> $1: skipped, needs $2 GPUs"; return 1; }
  ((SECONDS <= BUDGET)) || { echo "==> $1: skipped, past the time budget of $BUDGET s"; return 1; }
}

# 1. 3B weak scaling.
for n in 1 2 4; do
  name="3b-$n"
  wants "$name" "$n" || continue
  t0=$SECONDS
  train "$name" "$n" 150 --config "$(recipe "$name" "$SHAPE_3B" "$STEPS" "$ACCUM")"
  record "$name" "$work/$name/metrics.jsonl" "$n" $? $((SECONDS - t0)) shape="$SHAPE_3B" accum="$ACCUM"
  rm -rf "$work/$name/final"
done

# 2. 8B, sharded, 2 GPUs.
if wants 8b-2 2; then
  t0=$SECONDS
  train 8b-2 2 200 --config "$(recipe 8b-2 "$SHAPE_8B" "$STEPS" "$ACCUM")"
  record 8b-2 "$work/8b-2/metrics.jsonl" 2 $? $((SECONDS - t0)) shape="$SHAPE_8B" accum="$ACCUM" sharded=true
  rm -rf "$work/8b-2/final"
fi

# 3. 8B at the paper's setup on 4 GPUs: 2 steps, checkpoint at the stop, resume, 1 step.
paper_gpus=$(( ngpu >= 8 ? 8 : 4 ))
PAPER_ACCUM=${PAPER_ACCUM:-$(( 64 / paper_gpus ))}  # 64 rows per step, as in the paper
if wants 8b-paper $paper_gpus; then
  cfg=$(recipe 8b-paper "$SHAPE_8B" 3 "$PAPER_ACCUM")
  free_gb=$(df -P -B1G "$work" | awk 'NR == 2 {print $4}')
  stop=(--set run.stop_after_steps=2)
  if [[ $SHAPE_8B == llama-8b ]] && ((free_gb < 130)); then
    echo "==> 8b-paper: only $free_gb GB free in $work, the checkpoint needs ~115 GB: no checkpoint/resume"
    stop=()
  fi
  t0=$SECONDS
  train 8b-paper $paper_gpus 300 --config "$cfg" "${stop[@]}"
  rc=$?
  ckpt="$work/8b-paper/checkpoints/step-00000002"
  ckpt_gb=$(du -sb "$ckpt" 2>/dev/null | awk '{printf "%.1f", $1 / 1e9}')
  complete=$([[ -f "$ckpt/COMPLETE.json" ]] && echo true || echo false)
  save_s=$(grep -o "checkpoint .* written in [0-9.]* s" "$out/8b-paper.log" | tail -1 | grep -o "[0-9.]* s$")
  WARM=1 record 8b-paper "$work/8b-paper/metrics.jsonl" $paper_gpus $rc $((SECONDS - t0)) shape="$SHAPE_8B" \
    accum="$PAPER_ACCUM" sharded=true checkpoint_gb="${ckpt_gb:-0}" checkpoint_complete="$complete" \
    checkpoint_save="${save_s:-?}"
  if ((rc == 0)) && [[ $complete == true ]] && ((SECONDS <= BUDGET + 60)); then
    t0=$SECONDS
    train 8b-paper-resume $paper_gpus 240 --config "$cfg" --resume
    rc=$?
    resumed=$(grep -o "resumed from .* at step [0-9]*.*" "$out/8b-paper-resume.log" | head -1 | grep -o "step [0-9]*.*")
    WARM=2 record 8b-paper-resume "$work/8b-paper/metrics.jsonl" $paper_gpus $rc $((SECONDS - t0)) shape="$SHAPE_8B" \
      accum="$PAPER_ACCUM" sharded=true resumed="${resumed:-no}"
  fi
  rm -rf "$work/8b-paper"
fi

# 4. The SLURM launch path: two tasks as srun would start them, no launcher.
if wants slurm 2; then
  cfg=$(recipe slurm tiny 3 1)
  job=$((100000 + RANDOM % 20000))
  echo "==> slurm: 2 tasks with SLURM_* variables, job id $job"
  t0=$SECONDS
  pids=()
  for r in 0 1; do
    SLURM_PROCID=$r SLURM_NTASKS=2 SLURM_LOCALID=$r SLURM_NODELIST=localhost SLURM_JOB_ID=$job \
      timeout --signal=TERM --kill-after=10 120 "$bin" train --config "$cfg" > "$out/slurm.rank$r.log" 2>&1 &
    pids+=($!)
  done
  rc=0
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  via=$(grep -ho "rank 1/2 (local 1) via slurm, rendezvous [^ ,]*" "$out"/slurm.rank*.log | head -1)
  nccl=$(grep -c "NCCL on cuda:1" "$out/slurm.rank1.log")
  record slurm "$work/slurm/metrics.jsonl" 2 $rc $((SECONDS - t0)) shape=tiny launch="${via:-missing}" \
    nccl_on_local_gpu="$nccl"
fi
rm -rf "$work"

python3 - "$results" <<'PY'
import json, sys
runs = {r["run"]: r for r in map(json.loads, open(sys.argv[1]))}
print()
print(f"{'run':<16}{'GPUs':>5}{'rc':>4}{'tok/step':>10}{'tok/s':>11}{'s/step':>8}{'MFU':>7}{'peak GiB':>10}  notes")
for name, r in runs.items():
    notes = {k: v for k, v in r.items() if k in ("checkpoint_gb", "checkpoint_complete", "checkpoint_save", "resumed",
                                                 "launch", "nccl_on_local_gpu")}
    print(f"{name:<16}{r['gpus']:>5}{r['rc']:>4}{r.get('tokens_per_step', '-'):>10}{r.get('tokens_per_s', '-'):>11}"
          f"{r.get('step_seconds', '-'):>8}{r.get('mfu', '-'):>7}{r.get('peak_gib_per_gpu', '-'):>10}  "
          f"{' '.join(f'{k}={v}' for k, v in notes.items())}")
base = runs.get("3b-1", {}).get("tokens_per_s")
for n in (2, 4):
    r = runs.get(f"3b-{n}", {})
    if base and r.get("tokens_per_s"):
        print(f"3B weak scaling 1 -> {n} GPUs: efficiency {r['tokens_per_s'] / (n * base):.3f}"
              + ("  (target >= 0.90)" if n == 2 else ""))
PY
