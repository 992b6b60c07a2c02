#!/usr/bin/env bash
# The README's ilf_search commands, taken from the README itself (so the docs cannot drift), with a
# tiny search (2 candidates of 10 samples, 1 finalist of 10) in a scratch folder: the search writes
# its state, report and best config, a second run resumes without evaluating anything, and
# ilf_sample runs the best config from the README's ilf_sample command of runs/search/best.json (the
# block's other commands run in Readme.EveryCommandRuns).
#   tests/search_readme_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$1
SOURCE=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
cd "$SOURCE"

# The README block: the two commands after "## Choosing a schedule", line continuations joined.
commands=$(awk '/^## Choosing a schedule/ {on = 1} on && /^```bash/ {block = 1; next} block && /^```/ {exit} block' README.md |
  sed -e ':a' -e '/\\$/N; s/\\\n//; ta')
search=$(echo "$commands" | grep '^./build/ilf_search') || { echo "FAILED: no ilf_search command in the README"; exit 1; }
sample=$(echo "$commands" | grep '^./build/ilf_sample.*runs/search/best.json') ||
  { echo "FAILED: no ilf_sample command of runs/search/best.json in the README"; exit 1; }
small() {
  sed -e "s|^./build/|$BUILD/|" -e "s|runs/search|$WORK/search|g" -e 's|--evaluations [0-9]*|--evaluations 2 --finalists 1|' \
      -e 's|--search-samples [0-9]*|--search-samples 10 --batch 10|' -e 's|--heldout-samples [0-9]*|--heldout-samples 10|' \
      -e "s|--out best.png|--out $WORK/best.png|"
}
eval "$(echo "$search" | small)" > "$WORK/search.log" 2>&1 || { cat "$WORK/search.log"; echo "FAILED: ilf_search"; exit 1; }
for f in state.json report.md best.json reference_search.json reference_heldout.json; do
  [ -s "$WORK/search/$f" ] || { echo "FAILED: ilf_search wrote no $f"; exit 1; }
done
grep -q "Pareto front" "$WORK/search/report.md" || { echo "FAILED: no Pareto front in report.md"; exit 1; }
# Resumed: everything is in the state, nothing is sampled again.
eval "$(echo "$search" | small)" > "$WORK/resume.log" 2>&1 || { cat "$WORK/resume.log"; echo "FAILED: resumed ilf_search"; exit 1; }
if grep -qE 'ilf_eval: |\] candidate |\] held-out ' "$WORK/resume.log"; then
  cat "$WORK/resume.log"; echo "FAILED: the resumed search evaluated again"; exit 1
fi
(cd "$WORK" && eval "$(echo "$sample" | small)") > "$WORK/sample.log" 2>&1 || { cat "$WORK/sample.log"; echo "FAILED: ilf_sample of best.json"; exit 1; }
[ -s "$WORK/best.png" ] || { echo "FAILED: no image from best.json"; exit 1; }
echo "PASSED"
