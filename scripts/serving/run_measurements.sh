#!/usr/bin/env bash
# What cross-request batching buys ilf_serve under load, measured: the built server on the embedded
# class-to-image model, loaded by scripts/serving/load_test.py with 1, 4, 16 and 64 concurrent clients
# for 60 s each, in four configurations: batching on (--max-batch 16) and off (--max-batch 1), each
# with the default ILF sampler (11 steps) and with the 20-step baseline (--set sampling.method=baseline
# --set sampling.steps=20) at the same load. Writes docs/results/serving.md (the table, the commands,
# the machine) and docs/results/serving.png (images/s and latency against clients). About 20 minutes.
#
# --short is the same run in a few seconds per point (1 and 4 clients, 3 s each, into a scratch folder):
# ctest Serve.LoadShort runs it to show that a loaded server fails no request except by saying 429.
#
#   scripts/serving/run_measurements.sh [--short] [--build DIR] [--python PY] [--out-dir DIR]
#       [--duration S] [--loads "1 4 16 64"] [--keep]
# Environment: OMP_NUM_THREADS etc. pass to the server as they are (recorded in the report); --short
# sets one thread each, as the other tests do.
set -euo pipefail
SOURCE=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$SOURCE/build
PYTHON=python3
SHORT=0
KEEP=0
OUT_DIR=""
DURATION=""
LOADS=""
while [ $# -gt 0 ]; do
  case $1 in
    --short) SHORT=1 ;;
    --build) BUILD=$(cd "$2" && pwd); shift ;;
    --python) PYTHON=$2; shift ;;
    --out-dir) OUT_DIR=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --loads) LOADS=$2; shift ;;
    --keep) KEEP=1 ;;
    *) echo "run_measurements: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$SHORT" = 1 ]; then
  DURATION=${DURATION:-3}
  LOADS=${LOADS:-1 4}
  export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
else
  DURATION=${DURATION:-60}
  LOADS=${LOADS:-1 4 16 64}
  OUT_DIR=${OUT_DIR:-$SOURCE/docs/results}
fi
SERVE=$BUILD/ilf_serve
[ -x "$SERVE" ] || { echo "run_measurements: $SERVE is not there (build it first)" >&2; exit 1; }
WORK=$(mktemp -d)
[ -n "$OUT_DIR" ] || OUT_DIR=$WORK/out
mkdir -p "$OUT_DIR"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  if [ "$KEEP" = 1 ]; then echo "run_measurements: scratch folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
cd "$SOURCE"
RESULTS=$WORK/results.jsonl
COMMANDS=$WORK/commands.txt
: > "$RESULTS"
: > "$COMMANDS"

# Starts ilf_serve with the given flags on a free port; sets SERVER_PID and PORT.
start_server() {
  local log=$WORK/serve.log
  echo "build/ilf_serve --config configs/fashion_mnist.json --port 0 --max-queue 64 $*" >> "$COMMANDS"
  "$SERVE" --config configs/fashion_mnist.json --port 0 --max-queue 64 "$@" > "$log" 2>&1 &
  SERVER_PID=$!
  PORT=""
  for _ in $(seq 600); do
    PORT=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$log" | head -n 1)
    [ -n "$PORT" ] && return 0
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      cat "$log" >&2
      echo "run_measurements: ilf_serve exited before listening" >&2
      exit 1
    fi
    sleep 0.1
  done
  cat "$log" >&2
  echo "run_measurements: ilf_serve did not listen within 60 s" >&2
  exit 1
}

stop_server() {
  kill -TERM "$SERVER_PID"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  [ "$rc" = 0 ] || { cat "$WORK/serve.log" >&2; echo "run_measurements: ilf_serve exited with $rc after SIGTERM" >&2; exit 1; }
}

BASELINE=(--set sampling.method=baseline --set sampling.steps=20)
# label | server flags
CONFIGS=(
  "ILF 11 steps (default), batching on|--max-batch 16"
  "ILF 11 steps (default), batching off|--max-batch 1"
  "baseline 20 steps, batching on|--max-batch 16 ${BASELINE[*]}"
  "baseline 20 steps, batching off|--max-batch 1 ${BASELINE[*]}"
)
BODY='{"prompt": "7", "n": 1}'
first=1
start=$SECONDS
for entry in "${CONFIGS[@]}"; do
  label=${entry%%|*}
  read -r -a flags <<< "${entry#*|}"
  start_server "${flags[@]}"
  # One request first, not counted: the first sampling run allocates what the later ones reuse.
  "$PYTHON" scripts/serving/load_test.py --url "http://127.0.0.1:$PORT" --concurrency 1 --duration 0.01 \
    --body "$BODY" --label warm-up > /dev/null 2>&1
  for c in $LOADS; do
    header=()
    [ $first = 1 ] && header=(--markdown-header)
    first=0
    "$PYTHON" scripts/serving/load_test.py --url "http://127.0.0.1:$PORT" --concurrency "$c" --duration "$DURATION" \
      --body "$BODY" --label "$label" --json-out "$RESULTS" "${header[@]}" 2> /dev/null
  done
  stop_server
done
echo "run_measurements: $((SECONDS - start)) s"
echo "python3 scripts/serving/load_test.py --url http://127.0.0.1:PORT --concurrency C --duration $DURATION --body '$BODY'" \
  "  (C in $LOADS, one after another against each server)" >> "$COMMANDS"

MACHINE="$(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(free -g | awk '/^Mem:/ { print $2 }') GiB memory, $(uname -sr)"
THREADS="OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
COMMIT=$(git -C "$SOURCE" rev-parse --short HEAD 2> /dev/null || echo unknown)
INVOCATION="scripts/serving/run_measurements.sh"
[ "$SHORT" = 1 ] && INVOCATION="$INVOCATION --short"
# The plot needs matplotlib (Debian: python3-matplotlib, installed by scripts/setup.sh); the Python that
# runs the load client may be another one.
PLOT_PYTHON=""
for py in "$PYTHON" python3 /usr/bin/python3; do
  if command -v "$py" > /dev/null 2>&1 && "$py" -c 'import matplotlib' 2> /dev/null; then PLOT_PYTHON=$py; break; fi
done
PLOT=(--png "$OUT_DIR/serving.png")
if [ -z "$PLOT_PYTHON" ]; then
  [ "$SHORT" = 1 ] || { echo "run_measurements: no Python with matplotlib for the plot (python3-matplotlib)" >&2; exit 1; }
  echo "run_measurements: no Python with matplotlib: no plot in the short mode"
  PLOT_PYTHON=$PYTHON
  PLOT=()
fi
"$PLOT_PYTHON" scripts/serving/serving_report.py --results "$RESULTS" --commands "$COMMANDS" --md "$OUT_DIR/serving.md" \
  "${PLOT[@]}" --machine "$MACHINE" --threads "$THREADS" --commit "$COMMIT" --invocation "$INVOCATION"
echo "run_measurements: wrote $OUT_DIR/serving.md${PLOT:+ and $OUT_DIR/serving.png}"

# No request may fail but by a 429 (a full queue is an answer; anything else is a fault).
"$PYTHON" - "$RESULTS" << 'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
bad = [r for r in rows if r["requests_other"] or not r["requests_ok"]]
for r in bad:
    print(f"FAILED: {r['label']}, {r['concurrency']} clients: {r['requests_ok']} ok, {r['requests_other']} failed "
          f"other than 429: {r['statuses']} {r['errors']}")
print(f"load points: {len(rows) - len(bad)} passed, {len(bad)} failed")
sys.exit(1 if bad else 0)
EOF
