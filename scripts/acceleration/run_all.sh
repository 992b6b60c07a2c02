#!/usr/bin/env bash
# The acceleration comparison on the Fashion-MNIST DiT (docs/results/acceleration.md): every sweep in
# configs/sweeps/acceleration/ through `ilf_sweep run --point`, the same seeds in every row, then the
# report. The 20-step baseline runs first (its samples are every other row's PSNR reference); the
# other points run in LANES parallel lanes, one thread each, the sweeps in the order of SWEEP_ORDER (the
# rows the report's targets compare first). Finished points are skipped on a rerun, and each is saved
# to docs/results/acceleration-points/ as it finishes (scripts/acceleration/records.py) and restored
# from there first: the run can be stopped (kill the script's process group) and continued on another
# machine. The report is written once every point has finished.
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

SWEEP_ORDER="baseline ilf_forecast taylorseer l2c ilf teacache fora delta_dit cache ilf_cache"
RECORDS="/usr/bin/python3 scripts/acceleration/records.py"
for sweep in "$SWEEPS"/*.json; do
  name=$(basename "$sweep" .json)
  [[ " $SWEEP_ORDER " == *" $name "* ]] || { echo "run_all.sh: $sweep is not in SWEEP_ORDER" >&2; exit 2; }
done
$RECORDS restore

"$BUILD/ilf_sweep" run --point 0 "$SWEEPS/baseline.json"   # 20 steps: the reference samples
$RECORDS save > /dev/null
# Every other (sweep, point) pair, dealt round-robin to the lanes.
jobs=()
for name in $SWEEP_ORDER; do
  sweep=$SWEEPS/$name.json
  n=$("$BUILD/ilf_sweep" plan "$sweep" | grep -cE '^[0-9]+ ')
  for ((i = 0; i < n; i++)); do
    [ "$name" = baseline ] && [ $i -eq 0 ] && continue
    jobs+=("$sweep:$i")
  done
done
failed=$(mktemp)
for ((lane = 0; lane < LANES; lane++)); do
  (
    for ((j = lane; j < ${#jobs[@]}; j += LANES)); do
      if "$BUILD/ilf_sweep" run --point "${jobs[$j]#*:}" "${jobs[$j]%:*}" > /dev/null 2>&1; then
        flock "$failed" $RECORDS save > /dev/null
      else
        echo "FAILED: ${jobs[$j]}" | tee -a "$failed" >&2
      fi
    done
  ) &
done
wait
[ -s "$failed" ] && { echo "run_all.sh: points failed (see runs/acceleration/*/p*/logs); run again to retry them" >&2; exit 1; }
for sweep in "$SWEEPS"/*.json; do "$BUILD/ilf_sweep" collect "$sweep" > /dev/null; done
echo "all points in $(( $(date +%s) - start )) s"
/usr/bin/python3 scripts/acceleration/report.py --how "one thread per point, $LANES point(s) at a time" \
  --command "bash scripts/acceleration/run_all.sh --lanes $LANES"
