#!/usr/bin/env bash
# The GPU machine's side of the one-shot GPU check (docs/gpu-check.md).
#
#   gpu.sh receive DIR   keep the chunk(s) in DIR (a carried folder) under .gpucheck/parts
#   gpu.sh run DIR       keep the last chunk, check and unpack the payload, run every step and
#                        write gpu-check.{json,md,log} to $OUT
#
# pack.sh (run on the machine that prepares the check) makes the payload: the ONNX Runtime GPU
# libraries, the server/bench/gpu_check binaries, the graph skeleton(s), the diffusers wheel and
# config.env (sizes, steps, provider). The same script runs the CPU dry run that `go test
# ./scripts/gpu_check` drives (tiny skeleton, tiny sizes, CPU provider).
#
# Steps run in order of importance; each is skipped when the time left in GPUCHECK_BUDGET_S
# (default 450 s) is below its estimate, so the call ends inside its limit and what ran comes back.
set -uo pipefail
set -a # every variable and function below is seen by the steps, which run under timeout(1)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK="${GPUCHECK_WORK:-$ROOT/.gpucheck}"
mode="${1:-}"; src="${2:-}"
[ -n "$src" ] && [ -d "$src" ] || { echo "usage: gpu.sh receive|run CHUNK_DIR" >&2; exit 2; }
mkdir -p "$WORK/parts"
cp "$src"/* "$WORK/parts/" || exit 1
echo "gpu_check: have $(ls "$WORK/parts" | grep -c '^part-') part(s): $(du -sb "$WORK/parts" | cut -f1) bytes"
[ "$mode" = receive ] && exit 0
[ "$mode" = run ] || { echo "gpu.sh: unknown mode $mode" >&2; exit 2; }

start=$(date +%s)
BUDGET="${GPUCHECK_BUDGET_S:-450}"
OUT="${OUT:-$WORK/out}"
RES="$WORK/results"
P="$WORK/payload"
rm -rf "$RES" "$P"; mkdir -p "$OUT" "$RES" "$P"
LOG="$OUT/gpu-check.log"
: > "$LOG"
left() { echo $(( BUDGET - ($(date +%s) - start) )); }

# step NAME ESTIMATE_S COMMAND...: runs COMMAND (output to the log) unless less than ESTIMATE_S is
# left, and records its status and time in steps.tsv.
step() {
  local name="$1" est="$2"; shift 2
  local t0; t0=$(date +%s%N)
  if [ "$(left)" -lt "$est" ]; then
    printf '%s\tskipped\t0\tless than %s s left of the %s s budget\n' "$name" "$est" "$BUDGET" >> "$RES/steps.tsv"
    echo "== $name: skipped (time budget)" | tee -a "$LOG"
    return 0
  fi
  echo "== $name ($(left) s left)" | tee -a "$LOG"
  timeout "$(left)" bash -c '"$@"' "$name" "$@" >> "$LOG" 2>&1
  local rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  local secs; secs=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
  if [ $rc -eq 0 ]; then
    printf '%s\tok\t%s\t\n' "$name" "$secs" >> "$RES/steps.tsv"
  else
    printf '%s\tfailed\t%s\texit %s (see gpu-check.log)\n' "$name" "$secs" "$rc" >> "$RES/steps.tsv"
    echo "   $name failed: exit $rc" | tee -a "$LOG"
  fi
  return 0
}

unpack() {
  cd "$WORK/parts" && sha256sum -c --quiet parts.sha256 || return 1
  # only the parts this payload lists: a warm machine may keep parts of an earlier one
  cat $(awk '{print $2}' parts.sha256) | xz -dc | tar -x -C "$P" || return 1
  cd "$P" && sha256sum -c --quiet payload.sha256
}
export -f unpack
step unpack 5 unpack
[ -f "$P/config.env" ] || { echo "gpu_check: payload incomplete; see $LOG" >&2; cat "$LOG" >&2; exit 1; }
# shellcheck disable=SC1091
. "$P/config.env"   # PROVIDER SIZES ACCELS STEPS RUNS WARMUP PEAK_TFLOPS PEAK_SOURCE PSNR_SIZE ANCHOR DECOMPOSED
BIN="$P/bin"
ORT_LIB="$P/ort/libonnxruntime.so"

# CUDA, cuBLAS, cuDNN and cuRAND come from the machine's Python packages (nvidia/*/lib).
if [ "$PROVIDER" = cuda ]; then
  NV=$(python3 - <<'EOF'
import glob, os, site
dirs = set()
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    for lib in glob.glob(os.path.join(sp, "nvidia", "**", "lib", "lib*.so*"), recursive=True):
        dirs.add(os.path.dirname(lib))
print(":".join(sorted(dirs)))
EOF
)
  export LD_LIBRARY_PATH="$NV${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
gpu_name=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
cat > "$RES/env.json" <<EOF
{"provider": "$PROVIDER", "gpu": "${gpu_name:-none}", "onnxruntime": "1.30.0",
 "sizes": "$SIZES", "accelerations": "$ACCELS", "steps": $STEPS, "runs": $RUNS, "warmup": $WARMUP,
 "peak_tflops": $PEAK_TFLOPS, "peak_source": "$PEAK_SOURCE", "budget_s": $BUDGET,
 "cuda_library_dirs": "$(echo "${NV:-}" | tr ':' ' ')"}
EOF

fill() { for m in "$P"/models/*/; do "$BIN/gpu_check" fill -skeleton "$m" || return 1; done; }
export -f fill
step fill 30 fill

MODEL="$P/models/klein"
if [ "$PROVIDER" = cuda ]; then
  step placement 60 "$BIN/gpu_check" placement -ort-lib "$ORT_LIB" -json "$RES/placement.json" "$MODEL"/*.onnx
else
  printf 'placement\tskipped\t0\tCPU dry run (go test ./scripts/gpu_check checks placement on fake CUDA)\n' >> "$RES/steps.tsv"
fi

matmul() {
  python3 - "$RES/matmul.json" <<'EOF'
import json, sys, time
import torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
for _ in range(3):
    a @ b
torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(10):
    a @ b
torch.cuda.synchronize()
tflops = 10 * 2 * 8192**3 / (time.perf_counter() - t) / 1e12
json.dump({"tflops": round(tflops, 1), "what": "torch bf16 8192x8192x8192, mean of 10 after 3 warm-ups"}, open(sys.argv[1], "w"))
print(f"bf16 matmul: {tflops:.0f} TFLOP/s")
EOF
}
export -f matmul
[ "$PROVIDER" = cuda ] && step matmul 10 matmul

bench() { # SIZE ACCEL MODEL LABEL [more cmd/bench flags]
  "$BIN/bench" -models "$3" -provider "$PROVIDER" -ort-lib "$ORT_LIB" -size "$1" -steps "$STEPS" -acceleration "$2" \
    -runs "$RUNS" -warmup "$WARMUP" -peak-tflops "$PEAK_TFLOPS" -json "$RES/bench-$4.json" "${@:5}"
}
export -f bench
for size in $SIZES; do
  for accel in $ACCELS; do
    step "bench $size $accel" 40 bench "$size" "$accel" "$MODEL" "$size-$accel"
  done
done

# gen MODEL PROVIDER SIZE ACCEL OUT: one image, safety checker off (a flagged image would be black,
# and two black images compare as identical).
gen() {
  local w=${3%x*} h=${3#*x}
  "$BIN/server" generate -models "$1" -provider "$2" -ort-lib "$ORT_LIB" -width "$w" -height "$h" -steps "$STEPS" \
    -acceleration "$4" -seed 7 -prompt "a lighthouse on a cliff at dusk, photograph" -no-safety-checker -out "$5"
}
export -f gen
psnr() {
  gen "$MODEL" "$PROVIDER" "$PSNR_SIZE" none "$RES/none.png" && gen "$MODEL" "$PROVIDER" "$PSNR_SIZE" high "$RES/high.png" &&
    "$BIN/gpu_check" compare "$RES/none.png" "$RES/high.png" > "$RES/psnr.json"
}
export -f psnr
step "psnr high vs none" 60 psnr

tolerance() {
  gen "$ROOT/models/tiny" "$PROVIDER" 256x256 none "$RES/tiny-$PROVIDER.png" && gen "$ROOT/models/tiny" cpu 256x256 none "$RES/tiny-cpu.png" &&
    "$BIN/gpu_check" compare "$RES/tiny-$PROVIDER.png" "$RES/tiny-cpu.png" > "$RES/tolerance.json"
}
export -f tolerance
step "tiny gpu vs cpu" 20 tolerance

# The transformer's I/O copied by every Run (no io binding), once, against the default above.
for size in $SIZES; do
  step "bench $size none io-binding-off" 40 bench "$size" none "$MODEL" "$size-none-io-binding-off" -io-binding off
  break
done

# The --attention decomposed transformer, once, against the default (fused) one above.
if [ -n "${DECOMPOSED:-}" ] && [ -d "$P/models/klein-decomposed" ]; then
  for size in $SIZES; do
    step "bench $size none decomposed" 40 bench "$size" none "$P/models/klein-decomposed" "$size-none-decomposed"
    break # the first size is enough to compare the attention exports
  done
fi

anchor() {
  if [ -d "$P/wheels" ] && ls "$P"/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$P"/wheels/*.whl || return 1
    export PYTHONPATH="$WORK/site"
  fi
  PYTHONUNBUFFERED=1 python3 "$ROOT/scripts/bench_diffusers.py" $ANCHOR --tokenizer "$ROOT/models/tiny/tokenizer" \
    --steps "$STEPS" --runs 1 --warmup 1 --peak-tflops "$PEAK_TFLOPS" --json "$RES/anchor.json"
}
export -f anchor
if python3 -c "import torch" 2>/dev/null; then
  step "diffusers anchor" 120 anchor
else
  printf 'diffusers anchor\tskipped\t0\tno torch in this python3\n' >> "$RES/steps.tsv"
fi

"$BIN/gpu_check" report -results "$RES" -out "$OUT" >/dev/null
echo "gpu_check: done in $(( $(date +%s) - start )) s; $OUT/gpu-check.md:"
cat "$OUT/gpu-check.md"
