#!/usr/bin/env bash
# Builds the tests (scripts/setup.sh builds only the binary) and runs the suite
# (everything but the GPU-labelled tests where no GPU exists).
#   scripts/test.sh [extra ctest arguments, e.g. -R config]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${XDISTILL_BUILD_DIR:-$ROOT/build}"
[[ -x "$BUILD_DIR/xdistill" ]] || { echo "no build in $BUILD_DIR: run scripts/setup.sh first" >&2; exit 1; }
cmake --build "$BUILD_DIR" -j "${XDISTILL_JOBS:-$(nproc)}"   # all targets: the tests too
LABEL_ARGS=(-LE gpu)
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then LABEL_ARGS=(); fi
export XDISTILL_PLAIN_PROGRESS=1
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${XDISTILL_TEST_JOBS:-2}" "${LABEL_ARGS[@]}" "$@"
