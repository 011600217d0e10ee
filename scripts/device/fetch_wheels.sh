#!/usr/bin/env bash
# Run HERE (the CPU machine, which reaches PyPI) before a GPU-machine call that runs
# tools/bench_kernels.py: downloads the wheels of Python packages the GPU machine's
# image lacks into .whl/ (git-ignored), which the call then carries and installs with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   export PYTHONPATH=/tmp/site
# mlstm_kernels (NX-AI's Triton mLSTM kernels, pure Python) is the anchors' mLSTM
# kernel; its requirements (einops, numpy, PyYAML, matplotlib, torch) are in the image.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python3}"
[[ -x "$PY" ]] || PY=python3
mkdir -p "$ROOT/.whl"
"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$ROOT/.whl" mlstm_kernels==2.0.6
ls -la "$ROOT/.whl"
