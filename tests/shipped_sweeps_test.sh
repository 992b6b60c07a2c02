#!/usr/bin/env bash
# Every sweep file the project ships (configs/sweeps/) plans: its keys, axes and points are valid for
# the tools, so a sweep a user starts does not fail on a typo after hours of other points.
#   bash tests/shipped_sweeps_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
cd "$2"
count=0
while IFS= read -r sweep; do
  "$build/ilf_sweep" plan "$sweep" > /dev/null || { echo "FAILED: ilf_sweep plan $sweep" >&2; exit 1; }
  count=$((count + 1))
done < <(find configs/sweeps -name '*.json' | sort)
[ "$count" -gt 0 ] || { echo "no sweep files found under configs/sweeps" >&2; exit 1; }
echo "$count sweep files plan"
