#!/usr/bin/env bash
# ilf_eval_prompts end to end on the embedded text-to-image model (models/fashion_mnist_t2i), a few
# prompts and few steps so that it stays short on two cores:
#   1. a reference run (baseline, 8 steps) and a whole run (ILF, 10 steps) against it, single process:
#      one PNG per prompt named by index and seed with the settings in its text, records, the merged JSON
#      and the Markdown row shaped like Table 1;
#   2. the same run sharded over 2 ranks (two processes: one with --rank/--world-size, one with
#      torchrun's RANK/WORLD_SIZE), merged: the per-image records (all but the timing) and the images
#      equal the single run's;
#   3. a run killed with kill -9 after its first batch's records appear, resumed: equal again; and a
#      records file torn in the middle of a batch's line (what kill -9 during the write leaves), resumed:
#      equal again, the torn batch recomputed whole;
#   4. bad inputs fail with a message naming the file and leave no output folder: an empty prompt set, a
#      missing metric file; a rerun with other settings names what differs; a merge with a rank missing
#      names the rank's file.
# Every metric runs, with the tiny random metric models of tests/data/metrics/ (their scores mean nothing;
# their parity with the reference packages is tests/metrics/): CLIP score and CLIP-IQA (clip_tiny/),
# ImageReward (image_reward_tiny/), LPIPS (lpips_alex_tiny.safetensors), and FID with inception_tiny.pt
# against statistics that ilf_fid_stats writes from the reference run's images. SSIM and PSNR need no file.
#   tests/prompt_eval_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$1
SOURCE=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
cd "$SOURCE"
TOOL="$BUILD/ilf_eval_prompts"
fail() { echo "FAILED: $*"; exit 1; }

# Eight held-out captions with their class as the category (DrawBench's CSV layout).
{
  echo "Prompts,Category"
  awk -F'\t' 'NR % 19 == 1 && n < 8 { n++; printf "\"%s\",class %s\n", $2, $1 }' models/fashion_mnist_t2i/captions_eval.txt
} >"$WORK/prompts.csv"

DATA=tests/data/metrics
for f in "$DATA/clip_tiny/model.safetensors" "$DATA/image_reward_tiny/ImageReward.safetensors" "$DATA/image_reward_tiny/vocab.txt" \
         "$DATA/image_reward_tiny/med_config.json" "$DATA/inception_tiny.pt" "$DATA/lpips_alex_tiny.safetensors"; do
  [ -f "$f" ] || fail "missing test data $f"
done
METRICS=(--set "metrics.clip=$DATA/clip_tiny"
         --set "metrics.image_reward=$DATA/image_reward_tiny/ImageReward.safetensors"
         --set "metrics.image_reward_vocab=$DATA/image_reward_tiny/vocab.txt"
         --set "metrics.image_reward_med_config=$DATA/image_reward_tiny/med_config.json"
         --set "metrics.lpips=$DATA/lpips_alex_tiny.safetensors")
FID=(--set "metrics.inception=$DATA/inception_tiny.pt" --set "metrics.fid_statistics=$WORK/ref_stats.npz")
echo "metric options: ${METRICS[*]:-(none: only SSIM and PSNR)}"

BASE=(--config configs/fashion_mnist_t2i.json --model-folder models/fashion_mnist_t2i --batch 3 --seed 7 --quiet)
COMMON=("${BASE[@]}" --prompt-set "$WORK/prompts.csv")
start=$(date +%s)

# 1. Reference and whole run, single process.
"$TOOL" "${COMMON[@]}" "${METRICS[@]}" --method baseline --steps 8 --label baseline-8 --out-dir "$WORK/ref" \
  >"$WORK/ref.log" 2>&1 || { cat "$WORK/ref.log"; fail "the reference run"; }
# FID statistics of the reference run's images, in clean-fid's .npz format.
"$BUILD/ilf_fid_stats" --images "$WORK/ref/images" --inception "$DATA/inception_tiny.pt" --out "$WORK/ref_stats.npz" \
  >"$WORK/stats.log" 2>&1 || { cat "$WORK/stats.log"; fail "ilf_fid_stats"; }
RUN=("${COMMON[@]}" "${METRICS[@]}" "${FID[@]}" --label ILF-10 --reference-dir "$WORK/ref")
"$TOOL" "${RUN[@]}" --out-dir "$WORK/single" >"$WORK/single.log" 2>&1 || { cat "$WORK/single.log"; fail "the single run"; }
[ -f "$WORK/single/images/000000_s7.png" ] && [ -f "$WORK/single/images/000007_s14.png" ] || fail "images not named index_seed"
[ "$(ls "$WORK/single/images" | wc -l)" = 8 ] || fail "expected 8 PNGs"
grep -q '"prompt_id"' "$WORK/single/images/000003_s10.png" || fail "no settings in the PNG text"
[ -f "$WORK/single/merged.json" ] && [ -f "$WORK/single/table1_row.md" ] || fail "the single run did not merge"

python3 - "$WORK/single/merged.json" "$WORK/single/table1_row.md" <<'EOF' || fail "merged JSON or Markdown row"
import json, re, sys
m = json.load(open(sys.argv[1]))
assert m["items"] == 8 and len(m["records"]) == 8, m["items"]
assert [r["index"] for r in m["records"]] == list(range(8))
assert [r["seed"] for r in m["records"]] == list(range(7, 15))
assert m["means"]["block_forwards"] == 140, m["means"]  # ILF, 10 steps: 140 block forwards per image
assert "ssim" in m["means"] and m["reference"] == "baseline-8", (m["means"], m["reference"])
cats = {r["category"] for r in m["records"]}
assert len(cats) >= 2 and set(m["categories"]) == cats, m["categories"].keys()
assert sum(c["items"] for c in m["categories"].values()) == 8
lines = open(sys.argv[2]).read().splitlines()
assert lines[0] == ("| setting | s/img | block forwards | ImageReward | CLIP | FID | CLIP-IQA Good | Noisy | Colorful"
                    " | Natural | LPIPS | SSIM | PSNR (vs baseline-8) |"), lines[0]
assert lines[1] == "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", lines[1]
cells = [c.strip() for c in lines[2].strip("|").split("|")]
assert len(cells) == 13 and cells[0] == "ILF-10" and cells[2] == "140", cells
num = re.compile(r"^-?[0-9]+\.[0-9]+$")
for c in cells[1:2] + cells[3:]:
    assert c == "—" or num.match(c), cells
assert num.match(cells[11]) and num.match(cells[12]), cells  # SSIM and PSNR always run against the reference
for key in ("image_reward", "clip_score", "clip_iqa_quality", "clip_iqa_noisiness", "clip_iqa_colorfulness",
            "clip_iqa_naturalness", "lpips", "ssim", "psnr"):
    assert isinstance(m["means"].get(key), float), (key, m["means"])
    assert all(isinstance(r.get(key), float) for r in m["records"]), key
assert isinstance(m["fid"], float) and m["fid"] >= 0, m["fid"]
assert "—" not in cells, cells  # every column measured
print("merged JSON and row:", lines[2])
EOF

# Records and images equal to the single run's (timing aside).
same_as_single() {
  python3 - "$WORK/single/merged.json" "$1/merged.json" <<'EOF' || fail "$1: records differ from the single run's"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]
assert strip(a["records"]) == strip(b["records"]), "records differ"
ma = {k: v for k, v in a["means"].items() if k != "seconds_per_image"}
mb = {k: v for k, v in b["means"].items() if k != "seconds_per_image"}
assert ma == mb and a["fid"] == b["fid"] and a["categories"].keys() == b["categories"].keys(), (ma, mb)
EOF
  for f in "$WORK"/single/images/*.png; do cmp -s "$f" "$1/images/$(basename "$f")" || fail "$1: $(basename "$f") differs"; done
}

# 2. Sharded over 2 ranks (flags for one, torchrun's variables for the other), then merged.
"$TOOL" "${RUN[@]}" --out-dir "$WORK/sharded" --rank 0 --world-size 2 >"$WORK/rank0.log" 2>&1 &
pid0=$!
RANK=1 WORLD_SIZE=2 "$TOOL" "${RUN[@]}" --out-dir "$WORK/sharded" >"$WORK/rank1.log" 2>&1 ||
  { cat "$WORK/rank1.log"; fail "rank 1"; }
wait $pid0 || { cat "$WORK/rank0.log"; fail "rank 0"; }
[ -f "$WORK/sharded/records/rank-00000-of-00002.jsonl" ] && [ -f "$WORK/sharded/records/rank-00001-of-00002.jsonl" ] ||
  fail "per-rank records files"
[ ! -f "$WORK/sharded/merged.json" ] || fail "a rank of a sharded run merged by itself"
"$TOOL" merge --out-dir "$WORK/sharded" --quiet >"$WORK/merge.log" 2>&1 || { cat "$WORK/merge.log"; fail "merge"; }
same_as_single "$WORK/sharded"
echo "sharded over 2 ranks = single run"

# 3a. Killed with kill -9 after its first batch's records appear, then resumed.
"$TOOL" "${RUN[@]}" --out-dir "$WORK/killed" >"$WORK/killed.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -s "$WORK/killed/records/rank-00000-of-00001.jsonl" ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.02
done
if kill -9 $pid 2>/dev/null; then
  echo "killed after $(wc -l <"$WORK/killed/records/rank-00000-of-00001.jsonl") records"
else
  echo "note: the run finished before the kill (the torn-file case below still checks a resume)"
fi
wait $pid 2>/dev/null || true
"$TOOL" "${RUN[@]}" --out-dir "$WORK/killed" >"$WORK/resumed.log" 2>&1 || { cat "$WORK/resumed.log"; fail "resume after kill -9"; }
same_as_single "$WORK/killed"

# 3b. A torn write: records cut in the middle of the second batch's second line, an image of it lost.
cp -r "$WORK/single" "$WORK/torn"
rm -f "$WORK/torn/merged.json" "$WORK/torn/images/000004_s11.png"
python3 - "$WORK/torn/records/rank-00000-of-00001.jsonl" <<'EOF'
import sys
lines = open(sys.argv[1]).read().splitlines(keepends=True)
open(sys.argv[1], "w").write("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])
EOF
"$TOOL" "${RUN[@]}" --out-dir "$WORK/torn" >"$WORK/torn.log" 2>&1 || { cat "$WORK/torn.log"; fail "resume of a torn records file"; }
[ "$(wc -l <"$WORK/torn/records/rank-00000-of-00001.jsonl")" = 8 ] || fail "the torn batch was not recomputed whole"
grep -q "5 generated now, 3 were done" "$WORK/torn.log" || { cat "$WORK/torn.log"; fail "expected batches 2 and 3 recomputed"; }
same_as_single "$WORK/torn"
echo "killed and torn runs resumed = single run"

# 4. Bad inputs: clear errors naming the file, no output.
: >"$WORK/empty.txt"
if "$TOOL" "${BASE[@]}" --prompt-set "$WORK/empty.txt" --out-dir "$WORK/bad1" >"$WORK/bad1.log" 2>&1; then fail "an empty prompt set ran"; fi
grep -q "ilf_eval_prompts: error: $WORK/empty.txt: the prompt set has no prompts" "$WORK/bad1.log" || { cat "$WORK/bad1.log"; fail "empty set message"; }
[ ! -e "$WORK/bad1" ] || fail "an empty prompt set left output"
if "$TOOL" "${COMMON[@]}" --set metrics.lpips="$WORK/absent_lpips.safetensors" --out-dir "$WORK/bad2" >"$WORK/bad2.log" 2>&1; then
  fail "a missing metric file ran"
fi
grep -q "$WORK/absent_lpips.safetensors: no such file (\"metrics.lpips\"" "$WORK/bad2.log" || { cat "$WORK/bad2.log"; fail "missing metric file message"; }
[ ! -e "$WORK/bad2" ] || fail "a missing metric file left output"
if "$TOOL" "${RUN[@]}" --steps 12 --out-dir "$WORK/single" >"$WORK/bad3.log" 2>&1; then fail "a rerun with other settings ran"; fi
grep -q "settings.json: this folder holds a run with other settings (config.sampling.steps" "$WORK/bad3.log" ||
  { cat "$WORK/bad3.log"; fail "settings mismatch message"; }
"$TOOL" "${RUN[@]}" --out-dir "$WORK/half" --rank 0 --world-size 2 >/dev/null 2>&1 || fail "rank 0 of the half run"
if "$TOOL" merge --out-dir "$WORK/half" >"$WORK/bad4.log" 2>&1; then fail "a merge with a rank missing succeeded"; fi
grep -q "missing records files: rank-00001-of-00002.jsonl" "$WORK/bad4.log" || { cat "$WORK/bad4.log"; fail "missing rank message"; }
[ ! -e "$WORK/half/merged.json" ] || fail "a failed merge wrote output"

echo "PASSED ($(($(date +%s) - start)) s)"
