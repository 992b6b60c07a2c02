#!/usr/bin/env bash
# The acceleration comparison on the Fashion-MNIST DiT (docs/results/acceleration.md): every sweep in
# configs/sweeps/acceleration/ through `ilf_sweep run --local`, the same seeds in every row, then the
# report. The 20-step baseline runs first (its samples are every other row's PSNR reference); the
# other points run in LANES parallel lanes, one thread each. Finished points are skipped on a rerun.
#   bash scripts/acceleration/run_all.sh [--lanes 2] [--build build]
set -euo pipefail
LANES=2
BUILD=build
while [ $# -gt 0 ]; do
  case $1 in
    --lanes) LANES=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
SWEEPS=configs/sweeps/acceleration
start=$(date +%s)

"$BUILD/ilf_sweep" run --point 0 "$SWEEPS/baseline.json"   # 20 steps: the reference samples
# Every other (sweep, point) pair, dealt round-robin to the lanes.
jobs=()
for sweep in "$SWEEPS"/*.json; do
  n=$("$BUILD/ilf_sweep" plan "$sweep" | grep -cE '^[0-9]+ ')
  for ((i = 0; i < n; i++)); do
    [ "$sweep" = "$SWEEPS/baseline.json" ] && [ $i -eq 0 ] && continue
    jobs+=("$sweep:$i")
  done
done
for ((lane = 0; lane < LANES; lane++)); do
  (
    for ((j = lane; j < ${#jobs[@]}; j += LANES)); do
      "$BUILD/ilf_sweep" run --point "${jobs[$j]#*:}" "${jobs[$j]%:*}" > /dev/null 2>&1 ||
        echo "FAILED: ${jobs[$j]}" >&2
    done
  ) &
done
wait
for sweep in "$SWEEPS"/*.json; do "$BUILD/ilf_sweep" collect "$sweep" > /dev/null; done
echo "all points in $(( $(date +%s) - start )) s"
/usr/bin/python3 scripts/acceleration/report.py --machine "${ILF_MACHINE:-$(nproc --all)-core $(uname -m) CPU}, one thread per point, $LANES point(s) at a time" \
  --command "bash scripts/acceleration/run_all.sh --lanes $LANES"
