#!/usr/bin/env bash
# Installs everything xdistill needs on a fresh Debian 12 machine and builds the
# `xdistill` binary (only that: scripts/test.sh builds the tests, so the README's
# first command reaches the demo sooner).
# Idempotent: re-running skips what is already in place.
#   scripts/setup.sh            # packages + .venv + configure + build xdistill
#   XDISTILL_BUILD_DIR=build-x scripts/setup.sh
#   XDISTILL_SKIP_APT=1 scripts/setup.sh   (packages already installed)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${XDISTILL_BUILD_DIR:-$ROOT/build}"
JOBS="${XDISTILL_JOBS:-$(nproc)}"
step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nsetup failed: %s\n' "$*" >&2; exit 1; }
trap 'fail "command failed at line $LINENO: $BASH_COMMAND"' ERR

APT_PACKAGES=(build-essential cmake ninja-build ccache pkg-config git python3-venv python3-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev libgtest-dev googletest
  nlohmann-json3-dev libpcre2-dev libutf8proc-dev libzstd-dev zstd libgloo-dev librsvg2-bin)

if [[ -z "${XDISTILL_SKIP_APT:-}" ]]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    step "installing Debian packages: ${missing[*]}"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    step "Debian packages already installed"
  fi
fi

PY="${PYTHON:-python3}"
if [[ ! -x "$ROOT/.venv/bin/python3" ]]; then
  step "creating the virtualenv .venv"
  "$PY" -m venv "$ROOT/.venv"
fi
step "installing pinned Python packages (torch provides LibTorch)"
"$ROOT/.venv/bin/python3" -m pip install -q --upgrade pip
"$ROOT/.venv/bin/python3" -m pip install -q -r "$ROOT/scripts/requirements.txt"
"$ROOT/.venv/bin/python3" -c "import torch; print('torch', torch.__version__, 'cmake prefix', torch.utils.cmake_prefix_path)"

CUDA_FLAG=()
if ! command -v nvcc >/dev/null && [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  CUDA_FLAG=(-DXDISTILL_CUDA=OFF)
  step "nvcc not found: building without CUDA kernels"
fi
step "configuring ($BUILD_DIR)"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "${CUDA_FLAG[@]}"
step "building xdistill with $JOBS jobs (scripts/test.sh builds the tests)"
cmake --build "$BUILD_DIR" -j "$JOBS" --target xdistill
step "done: $BUILD_DIR/xdistill"
"$BUILD_DIR/xdistill" --version
