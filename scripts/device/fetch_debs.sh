#!/usr/bin/env bash
# Run HERE (the CPU machine) before a GPU-machine call: gathers the Debian packages
# the GPU machine lacks into .debs/ (git-ignored), which the call then carries.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mkdir -p "$ROOT/.debs"
cp -n "$ROOT"/../shared/device/debs/*.deb "$ROOT/.debs/" 2>/dev/null || true
cd "$ROOT/.debs"
for p in libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libutf8proc-dev \
         libutf8proc2 libzstd-dev libzstd1 nlohmann-json3-dev libgloo-dev libhiredis-dev libibverbs-dev; do
  ls ${p}_*.deb >/dev/null 2>&1 || apt-get download "$p" 2>/dev/null
done
ls -1 "$ROOT/.debs"
