#!/usr/bin/env bash
# The GPU checks on the GPU machine, in one go: unpack the carried .deb dependencies, configure against the
# pip torch (TORCH_CUDA_ARCH_LIST=9.0), build ilf_bench, then
#   parity     the reference cases of tests/data (official-model outputs) in float32 on CUDA, TF32 off;
#   numerics   bf16 against float32 on the same weights: forward error, same-seed sample PSNR;
#   agreement  our forward against scripts/bench_pytorch_reference.py on the same weights and inputs;
#   bench      ilf_bench on DiT-XL/2 256, PixArt-XL/2 512 and 1024 (bf16, batch 2, eager and CUDA graphs);
#   reference  the plain-PyTorch forward on the same presets (eager, CUDA graph; torch.compile last).
# Everything is written under $OUT (summary.md collects the tables). Usage, from the repository root:
#   bash scripts/gpu/run_gpu_checks.sh [all | build parity numerics agreement bench reference compile ...]
# The .debs come from scripts/gpu/fetch_debs.sh (folder third_party/debs, passed in the run's carry).
# Each phase has its own time limit; a failing phase is recorded in $OUT/status.txt and the others run.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
OUT=${OUT:-$ROOT/out/gpu}
mkdir -p "$OUT"
DEB_DIR=${DEB_DIR:-$ROOT/third_party/debs}
BUILD=${BUILD:-$ROOT/build-gpu}
PRESETS=(dit-xl-2-256 pixart-xl-2-512 pixart-xl-2-1024)
REPEATS=${REPEATS:-7}
PHASES=("$@")
[ ${#PHASES[@]} -eq 0 ] && PHASES=(all)
[ "${PHASES[0]}" = all ] && PHASES=(build parity bench reference numerics agreement compile)
BENCH="$BUILD/ilf_bench"
PY=${PYTHON:-python3}

log() { echo "[$(date +%H:%M:%S)] $*"; }

# run_phase NAME LIMIT_S COMMAND...: runs with a time limit, records rc and seconds.
run_phase() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  log "=== phase $name (limit ${limit}s)"
  timeout --signal=TERM --kill-after=20 "$limit" "$@"
  local rc=$?
  echo "$name rc=$rc seconds=$((SECONDS - start))" | tee -a "$OUT/status.txt"
  return $rc
}

setup_environment() {
  export TORCH_CUDA_ARCH_LIST=9.0
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
  if [ ! -d /tmp/deps/usr ]; then
    mkdir -p /tmp/deps
    for f in "$DEB_DIR"/*.deb; do dpkg -x "$f" /tmp/deps; done
  fi
  export LD_LIBRARY_PATH=/tmp/deps/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  TORCH_PREFIX=$($PY -c 'import torch; print(torch.utils.cmake_prefix_path)')
  export TORCH_PREFIX
}

phase_build() {
  ls "$DEB_DIR"/*.deb > /dev/null || { echo "no .debs in $DEB_DIR: run scripts/gpu/fetch_debs.sh and carry third_party/debs"; return 1; }
  # The same script as CI's second build and the README's cluster build.
  DEPS_DEBS="$DEB_DIR" BUILD_DIR="$BUILD" TORCH_PREFIX="$TORCH_PREFIX" TARGETS=ilf_bench \
    bash "$ROOT/scripts/build_with_pip_torch.sh" -DILF_BUILD_TESTS=OFF > "$OUT/build.log" 2>&1 ||
    { grep -B2 -A12 -m5 "error" "$OUT/build.log" | head -80; tail -40 "$OUT/build.log"; return 1; }
  tail -3 "$OUT/build.log"
  "$BENCH" --capabilities | tee "$OUT/capabilities.json"
}

phase_parity() {
  local d=tests/data rc=0
  : > "$OUT/parity.md"
  # case  model settings the weights cannot tell
  while read -r name sets; do
    # shellcheck disable=SC2086
    "$BENCH" --device "${DEVICE:-cuda}" --parity "$d/$name.weights.safetensors" "$d/$name.io.safetensors" $sets \
             --out "$OUT/parity_$name.md" || rc=1
    cat "$OUT/parity_$name.md" >> "$OUT/parity.md"
  done <<'CASES'
dit_tiny --set model.num_heads=4
pixart_tiny --set model.num_heads=4 --set model.variant=alpha
pixartms_tiny --set model.num_heads=4
pixart_sigma_tiny --set model.num_heads=4 --set model.variant=sigma --set model.pe_interpolation=2.0
CASES
  return $rc
}

phase_numerics() {
  local args=()
  for p in "${PRESETS[@]}"; do args+=(--preset "$p"); done
  "$BENCH" "${args[@]}" --config configs/fashion_mnist.json --device cuda --dtype bf16 --numerics \
           --method ilf-10 --method baseline-20 --batch 2 --warmup 0 --repeats 1 \
           --out "$OUT/numerics.md" --json "$OUT/numerics.json"
}

phase_agreement() {
  local dir=/tmp/ilf_agreement rc=0
  rm -rf "$dir" && mkdir -p "$dir"
  # float32 (TF32 off on both sides) on tiny presets, the fashion_mnist model and two full-size presets; bf16 on all presets.
  "$BENCH" --preset dit-tiny --preset pixart-tiny --preset pixart-tiny-ms --preset dit-xl-2-256 --preset pixart-xl-2-512 \
           --config configs/fashion_mnist.json --device cuda --dtype float32 --method baseline-2 --warmup 0 --repeats 1 \
           --dump-forward "$dir/fp32-" > /dev/null || rc=1
  local args=()
  for p in "${PRESETS[@]}"; do args+=(--preset "$p"); done
  "$BENCH" "${args[@]}" --device cuda --dtype bf16 --method baseline-2 --warmup 0 --repeats 1 \
           --dump-forward "$dir/bf16-" > /dev/null || rc=1
  $PY scripts/bench_pytorch_reference.py --check "$dir"/*.safetensors --device cuda \
      --out "$OUT/agreement.md" --json "$OUT/agreement.json" || rc=1
  rm -rf "$dir"
  return $rc
}

phase_bench() {
  # One invocation per preset and mode, so that a failure (e.g. a capture error) loses only its rows.
  local rc=0 p mode
  : > "$OUT/bench_bf16.md"
  for p in "${PRESETS[@]}"; do
    for mode in eager graph; do
      local extra=()
      [ "$mode" = graph ] && extra=(--cuda-graph --no-eager)
      "$BENCH" --preset "$p" --device cuda --dtype bf16 --batch 2 "${extra[@]}" --warmup 1 --repeats "$REPEATS" \
               --out "$OUT/bench_bf16_${p}_$mode.md" --json "$OUT/bench_bf16_${p}_$mode.json" || rc=1
      [ -f "$OUT/bench_bf16_${p}_$mode.md" ] && cat "$OUT/bench_bf16_${p}_$mode.md" >> "$OUT/bench_bf16.md"
    done
  done
  # float32 with TF32 (eager and graphs), DiT only; and the fashion_mnist model with its trained weights.
  "$BENCH" --preset dit-xl-2-256 --device cuda --dtype float32 --tf32 --batch 2 --cuda-graph --warmup 1 --repeats 5 \
           --out "$OUT/bench_fp32_tf32.md" --json "$OUT/bench_fp32_tf32.json" || rc=1
  "$BENCH" --config configs/fashion_mnist.json --device cuda --batch 2 --cuda-graph --warmup 1 --repeats "$REPEATS" \
           --out "$OUT/bench_fashion_mnist.md" --json "$OUT/bench_fashion_mnist.json" || rc=1
  return $rc
}

phase_reference() {
  $PY scripts/bench_pytorch_reference.py --bench "${PRESETS[@]}" --device cuda --dtype bf16 --batch 2 \
      --modes eager graph --warmup 5 --repeats 20 --out "$OUT/reference_bf16.md" --json "$OUT/reference_bf16.json"
}

phase_compile() {
  $PY scripts/bench_pytorch_reference.py --bench dit-xl-2-256 pixart-xl-2-512 --device cuda --dtype bf16 --batch 2 \
      --modes compile --warmup 3 --repeats 20 --out "$OUT/reference_compile.md" --json "$OUT/reference_compile.json"
}

log "ILF GPU checks: phases ${PHASES[*]}; output $OUT"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))'
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
setup_environment
for phase in "${PHASES[@]}"; do
  case $phase in
    build) run_phase build 420 bash -c "$(declare -f phase_build); $(declare -p OUT DEB_DIR BUILD BENCH ROOT TORCH_PREFIX); phase_build" ||
             { log "build failed: stopping"; break; } ;;
    parity) run_phase parity 120 bash -c "$(declare -f phase_parity); $(declare -p OUT BENCH); DEVICE=${DEVICE:-cuda}; phase_parity" ;;
    numerics) run_phase numerics 300 bash -c "$(declare -f phase_numerics); $(declare -p OUT BENCH PRESETS); phase_numerics" ;;
    agreement) run_phase agreement 300 bash -c "$(declare -f phase_agreement); $(declare -p OUT BENCH PRESETS PY); phase_agreement" ;;
    bench) run_phase bench 420 bash -c "$(declare -f phase_bench); $(declare -p OUT BENCH PRESETS REPEATS); phase_bench" ;;
    reference) run_phase reference 300 bash -c "$(declare -f phase_reference); $(declare -p OUT PRESETS PY); phase_reference" ;;
    compile) run_phase compile 400 bash -c "$(declare -f phase_compile); $(declare -p OUT PY); phase_compile" ;;
    *) echo "unknown phase $phase (expected all, build, parity, numerics, agreement, bench, reference, compile)"; exit 2 ;;
  esac
done

# One file with every table, for docs/results/gpu.md.
{
  echo "# ILF GPU checks ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo '```'; cat "$OUT/machine.txt"; cat "$OUT/capabilities.json" 2>/dev/null; cat "$OUT/status.txt"; echo '```'
  for f in parity numerics agreement bench_bf16 bench_fp32_tf32 bench_fashion_mnist reference_bf16 reference_compile; do
    [ -f "$OUT/$f.md" ] && { echo; echo "## $f"; echo; cat "$OUT/$f.md"; }
  done
} > "$OUT/summary.md"
log "done: $OUT/summary.md"
cat "$OUT/status.txt"
