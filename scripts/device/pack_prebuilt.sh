#!/usr/bin/env bash
# Run HERE (the CPU machine): packs binaries built here (with the CUDA kernels, sm_90)
# and the Debian shared libraries they need that the GPU machine lacks into
# .prebuilt/ (git-ignored), for a device call that has no minutes to spare for a build:
#   scripts/device/pack_prebuilt.sh [BUILD_DIR] [TARGET...]
#   then carry [".prebuilt"] and run PREBUILT=.prebuilt scripts/device/session_run.sh PART...
# libtorch is not packed: the GPU machine's torch (the same 2.11.0, cu130) is used.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-$ROOT/build}"
shift || true
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(xdistill test_ops_cuda test_infer_gpu test_decoder_gpu test_kernel_profile_gpu test_train_gpu xd_bench_kernels)
ninja -C "$BUILD" "${TARGETS[@]}"
[[ -f "$BUILD/kernels/libxdistill_kernels.a" ]] ||
  { echo "pack_prebuilt: $BUILD was configured without the CUDA kernels" >&2; exit 1; }

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/lib"
for t in "${TARGETS[@]}"; do
  f=$(find "$BUILD" -maxdepth 3 -type f -name "$t" -perm -u+x | head -1)
  [[ -n "$f" ]] || { echo "pack_prebuilt: no binary $t under $BUILD" >&2; exit 1; }
  strip --strip-unneeded -o "$STAGE/bin/$t" "$f"
done
# Shared libraries from Debian packages and the CUDA runtime (not glibc, libstdc++,
# torch or the driver).
for f in "$STAGE"/bin/*; do ldd "$f"; done | awk '/=> \//{print $3}' | sort -u |
  grep -vE '/(libc|libm|libdl|libpthread|librt|libutil|libgcc_s|libstdc\+\+|ld-linux)[.-]|/torch/|/nvidia/|/libcuda\.so|/libnvrtc|/libcudnn' |
  while read -r lib; do cp -L "$lib" "$STAGE/lib/"; done
rm -rf "$ROOT/.prebuilt" && mkdir -p "$ROOT/.prebuilt"
tar -C "$STAGE" -cJf "$ROOT/.prebuilt/prebuilt.tar.xz" bin lib
git -C "$ROOT" rev-parse HEAD > "$ROOT/.prebuilt/commit"
git -C "$ROOT" diff --quiet HEAD || echo "dirty" >> "$ROOT/.prebuilt/commit"
ls -la "$ROOT/.prebuilt"; tar -tJf "$ROOT/.prebuilt/prebuilt.tar.xz"
