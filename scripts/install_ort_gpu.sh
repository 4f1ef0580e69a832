#!/usr/bin/env bash
# Installs ONNX Runtime's GPU build (1.30.0, CUDA 13) into .cache/ort-gpu/lib (or $ORT_GPU_DIR/lib):
#   libonnxruntime.so.1.30.0 (+ libonnxruntime.so link), libonnxruntime_providers_shared.so,
#   libonnxruntime_providers_cuda.so
# taken from the PyPI wheel onnxruntime-gpu (the same files Dockerfile.cuda installs). No CUDA is
# needed to install them; the tests use them on CPU-only hosts (scripts/gpu_check: the start
# message without a GPU, and the CUDA placement check) and scripts/gpu_check/pack.sh carries
# them to a GPU host. The wheel is checksum-pinned; it is 247 MB to download, the three
# libraries 301 MB on disk.
set -euo pipefail

ORT_VERSION=1.30.0
WHEEL="onnxruntime_gpu-${ORT_VERSION}-cp312-cp312-manylinux_2_28_x86_64.whl"
WHEEL_SHA=6acc0f4b3d5ac5f2984432faa59dd8fcce6775f8b43a7140afa0f322c7a703b1
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${ORT_GPU_DIR:-$ROOT/.cache/ort-gpu}"
LIBS=(libonnxruntime.so.${ORT_VERSION} libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)

if [ "$(cat "$DIR/VERSION" 2>/dev/null)" = "$ORT_VERSION" ]; then
  echo "install_ort_gpu: ONNX Runtime GPU $ORT_VERSION already in $DIR/lib"
  exit 0
fi
[ "$(uname -m)" = x86_64 ] || { echo "install_ort_gpu: the onnxruntime-gpu wheel is x86_64 only" >&2; exit 1; }
PYTHON="${PYTHON:-python3}"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "install_ort_gpu: fetching onnxruntime-gpu==$ORT_VERSION from PyPI (247 MB)"
# The wheel is per Python version; only its shared libraries are used, so ask for the cp312 one
# whatever Python runs pip.
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 -d "$tmp" "onnxruntime-gpu==$ORT_VERSION"
got="$(sha256sum "$tmp/$WHEEL" | cut -d' ' -f1)"
[ "$got" = "$WHEEL_SHA" ] || { echo "install_ort_gpu: checksum mismatch for $WHEEL: $got" >&2; exit 1; }
mkdir -p "$tmp/x" "$DIR/lib"
"$PYTHON" - "$tmp/$WHEEL" "$tmp/x" "${LIBS[@]}" <<'EOF'
import sys, zipfile
wheel, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for n in names:
        with z.open("onnxruntime/capi/" + n) as src, open(f"{out}/{n}", "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
EOF
for f in "${LIBS[@]}"; do install -m 0755 "$tmp/x/$f" "$DIR/lib/$f"; done
ln -sf "libonnxruntime.so.${ORT_VERSION}" "$DIR/lib/libonnxruntime.so"
echo "$ORT_VERSION" > "$DIR/VERSION"
echo "install_ort_gpu: installed in $DIR/lib ($(du -sm "$DIR/lib" | cut -f1) MB) in $(( $(date +%s) - start )) s"
