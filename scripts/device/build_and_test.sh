#!/usr/bin/env bash
# Run ON the GPU machine, from the repository root, with .debs carried:
#   scripts/device/build_and_test.sh [--no-tests] [--targets "t1 t2"] [--ctest-args "-R ops"] [--bench CMD]...
# Unpacks the carried Debian packages into .deps, builds against the machine's
# torch (cu130) with the CUDA kernels, runs the whole test suite including the
# `gpu` label, then each --bench command. Logs go to $OUT when set.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/out}"; mkdir -p "$OUT"
RUN_TESTS=1; TARGETS=""; CTEST_ARGS=""; BENCHES=()
while (($#)); do
  case "$1" in
    --no-tests) RUN_TESTS=0 ;;
    --targets) TARGETS="$2"; shift ;;
    --ctest-args) CTEST_ARGS="$2"; shift ;;
    --bench) BENCHES+=("$2"); shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export XDISTILL_PLAIN_PROGRESS=1 PYTHONUNBUFFERED=1
SUMMARY=()
t0=$(date +%s)

if [[ ! -d .deps/usr ]]; then
  [[ -d .debs ]] || { echo "no .debs folder carried (run scripts/device/fetch_debs.sh here and carry .debs)"; exit 1; }
  mkdir -p .deps && for f in .debs/*.deb; do dpkg -x "$f" .deps; done
fi
# Give this machine's python the packages tests import but the image may lack.
TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
nvidia-smi -L || true
python3 -c 'import torch,transformers;print("torch",torch.__version__,"cuda",torch.cuda.is_available(),"transformers",transformers.__version__)'

BUILD=build-device
cmake -S . -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release -DXDISTILL_CUDA=ON \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$ROOT/.deps/usr" -DXDISTILL_PCH=ON > "$OUT/configure.log" 2>&1 \
  || { tail -40 "$OUT/configure.log"; exit 1; }
if ninja -C $BUILD -j "$(nproc)" $TARGETS > "$OUT/build.log" 2>&1; then
  SUMMARY+=("build: ok ($(( $(date +%s) - t0 )) s)")
else
  grep -E "error|Error" "$OUT/build.log" | head -40; SUMMARY+=("build: FAILED"); printf '%s\n' "${SUMMARY[@]}"; exit 1
fi
ln -sf "$ROOT/$BUILD" build 2>/dev/null || true

if ((RUN_TESTS)); then
  # .venv does not exist here: tests use this machine's python3.
  ctest --test-dir $BUILD --output-on-failure -j 4 --timeout 900 $CTEST_ARGS > "$OUT/ctest.log" 2>&1
  rc=$?
  grep -E "tests passed|tests failed|\*\*\*Failed|Failed|Not Run|Timeout" "$OUT/ctest.log" | tail -30
  SUMMARY+=("tests: $(grep -E 'tests passed' "$OUT/ctest.log" | tail -1) (rc=$rc)")
fi

for b in "${BENCHES[@]}"; do
  echo "==> bench: $b"
  bash -c "$b" 2>&1 | tee -a "$OUT/bench.log"
  SUMMARY+=("bench '$b': rc=${PIPESTATUS[0]}")
done
echo; echo "===== summary ($(( $(date +%s) - t0 )) s) ====="; printf '%s\n' "${SUMMARY[@]}"
