#!/usr/bin/env bash
# Installs the ONNX Runtime CPU shared library that github.com/yalue/onnxruntime_go loads,
# into .ort/lib/libonnxruntime.so (or $ORT_DIR/lib), from the npm registry package
# onnxruntime-node (it ships the plain C library; no install script is run).
#
# onnxruntime_go v1.27.0 speaks the ORT 1.24 C API; the C API is backward compatible, so the
# pinned 1.30.0 library serves it (checked: onnxruntime_go v1.27.0 initialises it and reports
# version 1.30.0). The npm tarball carries it at package/bin/napi-v6/linux/x64/libonnxruntime.so.1.
# The GPU build comes from the PyPI wheel onnxruntime-gpu instead (see Dockerfile.cuda).
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.30.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ORT_DIR="${ORT_DIR:-$ROOT/.ort}"
LIB="$ORT_DIR/lib/libonnxruntime.so"

case "$(uname -m)" in
  x86_64|amd64) arch=x64;   sha=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23 ;;
  aarch64|arm64) arch=arm64; sha=1f549d46250b005580b597f4164984aaf75b3bcb9f3aeb07c7f8a8fe60b23c76 ;;
  *) echo "install_ort: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac
[ "$ORT_VERSION" = "1.30.0" ] || sha=""   # checksums are pinned for 1.30.0 only

if [ -f "$LIB" ] && [ "$(cat "$ORT_DIR/VERSION" 2>/dev/null)" = "$ORT_VERSION" ]; then
  echo "install_ort: ONNX Runtime $ORT_VERSION already at $LIB"
  exit 0
fi

command -v npm >/dev/null || { echo "install_ort: npm is required (apt-get install npm)" >&2; exit 1; }
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
echo "install_ort: fetching onnxruntime-node@$ORT_VERSION from the npm registry"
(cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
member="package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
tar -xzf "$tmp"/onnxruntime-node-*.tgz -C "$tmp" "$member"
if [ -n "$sha" ]; then
  got="$(sha256sum "$tmp/$member" | cut -d' ' -f1)"
  [ "$got" = "$sha" ] || { echo "install_ort: checksum mismatch: $got" >&2; exit 1; }
fi
mkdir -p "$ORT_DIR/lib"
install -m 0644 "$tmp/$member" "$LIB"
echo "$ORT_VERSION" > "$ORT_DIR/VERSION"
echo "install_ort: installed ONNX Runtime $ORT_VERSION ($arch) at $LIB"
