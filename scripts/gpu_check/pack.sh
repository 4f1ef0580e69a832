#!/usr/bin/env bash
# Prepares the one-shot GPU check (docs/gpu-check.md): builds the payload the GPU machine needs,
# compresses it and splits it into chunks that each travel with one call, next to the working tree,
# under the 64 MiB a call may carry.
#
#   bash scripts/gpu_check/pack.sh                 # the GPU check: ONNX Runtime GPU build, full-size skeleton
#   GPUCHECK_MODE=dry bash scripts/gpu_check/pack.sh   # the CPU dry run: CPU library, tiny skeleton, tiny sizes
#
# Output: $GPUCHECK_DEST (default .gpucheck, git-ignored) holds c1/ … cN/, one chunk each (part-NN and
# parts.sha256); each call carries one of them. Inputs (environment):
#   GPUCHECK_SKELETON             full-size skeleton (default .cache/gpu_check/klein-bf16):
#                                 scripts/export_onnx.py --random-weights --skeleton --precision bf16 --out DIR
#   GPUCHECK_SKELETON_DECOMPOSED  optional, the same with --attention decomposed (benchmarked once, for comparison)
#   GPUCHECK_CHUNK_BYTES     default: 45,000,000, or less when the working tree is larger than 20 MiB
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
MODE="${GPUCHECK_MODE:-gpu}"
DEST="${GPUCHECK_DEST:-$ROOT/.gpucheck}"
LIMIT=$((64 * 1024 * 1024))
# What travels with every call: tracked files and untracked ones git does not ignore.
tree=$( (git ls-files -z; git ls-files -z -o --exclude-standard) | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
room=$((LIMIT - tree - 1024 * 1024)) # 1 MiB to spare for what changes before the calls
if [ "$room" -lt $((4 * 1024 * 1024)) ]; then
  # Every call carries the whole checkout (tracked files too): with less than a few MB left, the
  # payload cannot travel. The dry run sends nothing, so it goes on and checks the rest.
  echo "pack: the working tree is $tree bytes and every device call carries it, in 64 MiB ($LIMIT bytes) in all:" \
    "no room for the payload. Largest tracked folders:" >&2
  git ls-files -z | xargs -0 du -b 2>/dev/null |
    awk '{n = split($2, p, "/"); k = (n > 2 ? p[1] "/" p[2] : p[1]); s[k] += $1} END {for (k in s) print s[k], k}' |
    sort -rn | head -5 >&2
  [ "$MODE" = gpu ] && exit 1
  echo "pack: dry run: going on (nothing is sent)" >&2
fi
CHUNK="${GPUCHECK_CHUNK_BYTES:-$((room < 45000000 ? room : 45000000))}"
PY="${PYTHON:-python3}"
P="$DEST/payload-src"
rm -rf "$DEST"/c[0-9]* "$P" "$DEST/payload.tar.xz"
mkdir -p "$P/bin" "$P/ort" "$P/models"

echo "pack: building server, bench and gpu_check"
# Stripped binaries; the dry run leaves out -trimpath, so that the tests' build cache serves it.
flags=(-ldflags=-s\ -w)
[ "$MODE" = gpu ] && flags+=(-trimpath)
for cmd in cmd/server cmd/bench scripts/gpu_check; do
  CGO_ENABLED=1 go build "${flags[@]}" -o "$P/bin/$(basename "$cmd")" "./$cmd"
done
cp scripts/gpu_check/gpu.sh "$P/bin/"

if [ "$MODE" = gpu ]; then
  bash scripts/install_ort_gpu.sh
  for f in libonnxruntime.so.1.30.0 libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
    cp ".cache/ort-gpu/lib/$f" "$P/ort/"
  done
  ln -s libonnxruntime.so.1.30.0 "$P/ort/libonnxruntime.so"
  SKELETON="${GPUCHECK_SKELETON:-$ROOT/.cache/gpu_check/klein-bf16}"
  DECOMPOSED="${GPUCHECK_SKELETON_DECOMPOSED:-}"
  # diffusers (and importlib_metadata, which the GPU machine's Python lacks) for the anchor;
  # everything else diffusers needs is there.
  mkdir -p "$P/wheels"
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$P/wheels" diffusers==0.42.1 importlib_metadata==8.7.0
  cat > "$P/config.env" <<'EOF'
PROVIDER=cuda
SIZES="1024x768 1024x1024"
ACCELS="none regular high"
STEPS=28
RUNS=1
WARMUP=1
PSNR_SIZE=1024x768
# NVIDIA's H200 SXM datasheet: 989 TFLOP/s dense BF16 (the H100 SXM's figure, same tensor cores).
PEAK_TFLOPS=989
PEAK_SOURCE="NVIDIA H200 SXM datasheet, dense BF16 Tensor Core"
ANCHOR="--random-weights --device cuda --dtype bf16 --size 1024x768"
DECOMPOSED=1
EOF
  XZ="-9"
else
  bash scripts/install_ort.sh >/dev/null
  cp .ort/lib/libonnxruntime.so "$P/ort/libonnxruntime.so"
  SKELETON="${GPUCHECK_SKELETON:-$ROOT/testdata/gpu_check/tiny-fp16}"
  DECOMPOSED="${GPUCHECK_SKELETON_DECOMPOSED:-$ROOT/testdata/gpu_check/tiny-fp16-decomposed}"
  cat > "$P/config.env" <<'EOF'
PROVIDER=cpu
SIZES="64x64 64x96"
ACCELS="none regular high"
STEPS=4
RUNS=1
WARMUP=0
PSNR_SIZE=64x64
PEAK_TFLOPS=1
PEAK_SOURCE="dry run: no peak"
ANCHOR="--tiny --device cpu --dtype fp32 --size 64x64"
DECOMPOSED=1
EOF
  XZ="-0"
fi

# models/klein: the skeleton, with the tiny model's tokenizer when it has none (same tokenizer).
[ -f "$SKELETON/skeleton.json" ] || { echo "pack: no skeleton at $SKELETON (see the header)" >&2; exit 1; }
mkdir -p "$P/models/klein"
cp "$SKELETON"/*.onnx "$SKELETON/model.json" "$SKELETON/skeleton.json" "$P/models/klein/"
cp -r "${SKELETON}/tokenizer" "$P/models/klein/" 2>/dev/null || cp -r models/tiny/tokenizer "$P/models/klein/"
if [ -n "$DECOMPOSED" ] && [ -f "$DECOMPOSED/transformer.onnx" ]; then
  # models/klein-decomposed: the decomposed transformer; every other graph (and its data) is models/klein's.
  F="$P/models/klein-decomposed"
  mkdir -p "$F"
  cp "$DECOMPOSED/transformer.onnx" "$DECOMPOSED/model.json" "$F/"
  cp -r "$P/models/klein/tokenizer" "$F/"
  for g in "$P"/models/klein/*.onnx; do
    n=$(basename "$g")
    [ "$n" = transformer.onnx ] && continue
    ln -sr "$P/models/klein/$n" "$F/$n"
    ln -sr "$P/models/klein/$n.data" "$F/$n.data"
  done
  "$PY" - "$DECOMPOSED/skeleton.json" "$F/skeleton.json" <<'EOF'
import json, sys
sk = json.load(open(sys.argv[1]))
sk["tensors"] = [t for t in sk["tensors"] if t["graph"] == "transformer"]
json.dump(sk, open(sys.argv[2], "w"), indent=0)
EOF
fi

(cd "$P" && find . -type f ! -name payload.sha256 -print0 | sort -z | xargs -0 sha256sum > payload.sha256)
echo "pack: compressing $(du -sb "$P" | cut -f1) bytes (xz $XZ)"
t0=$(date +%s)
tar -C "$P" -cf - . | xz $XZ -T2 > "$DEST/payload.tar.xz"
echo "pack: payload.tar.xz $(stat -c %s "$DEST/payload.tar.xz") bytes in $(( $(date +%s) - t0 )) s"
(cd "$DEST" && split -b "$CHUNK" -d -a 2 payload.tar.xz part- && sha256sum part-* > parts.sha256)
i=0
printf '%-6s %12s %12s %12s\n' call chunk tree total
for part in $(cd "$DEST" && ls part-* | sort); do
  i=$((i + 1))
  mkdir -p "$DEST/c$i"
  mv "$DEST/$part" "$DEST/c$i/"
  cp "$DEST/parts.sha256" "$DEST/c$i/"
  size=$(du -cb "$DEST/c$i"/* | tail -1 | cut -f1)
  total=$((size + tree))
  printf '%-6s %12s %12s %12s\n' "c$i" "$size" "$tree" "$total"
  [ "$total" -lt "$LIMIT" ] || [ "$MODE" != gpu ] || { echo "pack: call c$i would carry $total bytes, over 64 MiB" >&2; exit 1; }
done
rm -f "$DEST/payload.tar.xz" "$DEST/parts.sha256"
echo "pack: $i call(s): receive c1 … c$((i - 1)), then run c$i (docs/gpu-check.md)"
