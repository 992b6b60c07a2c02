// Evaluating ONE sampling setting of a text-to-image model over a prompt set (pipelines/prompt_sets.h)
// at the scale the paper does it (30,000 MJHQ prompts over many GPUs): every image written as a PNG,
// per-image scores as JSON lines, work sharded over ranks without any communication between them, runs
// that resume after kill -9, and a merge into one JSON and a Markdown row shaped like the paper's Table 1.
//
// Items: item i is prompt i of the set (after --limit) with seed base_seed + i (its initial noise is
// randn from a CPU generator with that seed, pipelines/text_to_image.h).
// Batches: global batch k holds items kB .. kB+B-1 (B = --batch). Rank r of W takes the batches r, r+W,
// r+2W, ... (with B = 1: the items r, r+W, ...). Sharding whole batches rather than single items keeps
// every batch's membership independent of W, so that a sharded run, a resumed run and an uninterrupted
// single-process run generate every image in the same batch and give bit-identical images and scores.
// Output folder (--out-dir):
//   settings.json                          what defines the results (config, generation settings, prompt
//                                          set digest, seed, batch, limit, device, reference, metric files);
//                                          a rerun with other settings is refused, naming what differs
//   images/000123_s123.png                 item 123 with seed 123 ("ilf" tEXt: the generation settings,
//                                          prompt, prompt id, category, seed, index), the sampled pixels
//   records/rank-00000-of-00002.jsonl      one JSON object per item, in the order computed:
//       {"index", "id", "prompt", "category", "seed", "batch", "seconds" (the batch's sampling time / its
//        size), "block_forwards" (per image, as --plan counts them), and each configured metric:
//        "image_reward", "clip_score", "clip_iqa_quality", "clip_iqa_noisiness", "clip_iqa_colorfulness",
//        "clip_iqa_naturalness", and against the reference run's same-index PNG "lpips", "ssim", "psnr"
//        (psnr null for identical images)}
//   merged.json, table1_row.md             written by merge (other paths with --out / --markdown)
// Resume: a rank skips the batches whose items all have records (in any rank's file: a folder can be
// resumed with another world size); a batch is recomputed whole otherwise. Records of a batch are
// appended in one write, flushed and fsynced; a torn or incomplete last batch in the rank's own file
// (kill -9 while writing) is cut off before appending. PNGs are written atomically.
// Metrics (the run config's "metrics" section; each runs only when its file is set): ImageReward,
// CLIP score, CLIP-IQA per image while generating; LPIPS / SSIM / PSNR against --reference-dir (another
// run's folder with the same prompt set and seed; the run's own folder means no fidelity metrics, the
// table header still naming the reference: a sweep's reference point); FID
// (clean-fid against metrics.fid_statistics) at merge time, from the PNGs.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "ilf/io/config.h"
#include "ilf/pipelines/loading.h"
#include "ilf/pipelines/prompt_sets.h"

namespace ilf {

// Which part of the work this process does.
struct EvalShard {
  int64_t rank = 0;
  int64_t world_size = 1;
  std::string launcher = "single";  // "flags", "torchrun", "slurm", "slurm_array" or "single"
  int64_t local_rank = 0;           // this process's index on its node (LOCAL_RANK, else SLURM_LOCALID, else 0): with
                           // --device cuda it runs on cuda:<local_rank>, one GPU per process as torchrun / srun start them
};

using EvalEnvironment = std::function<std::optional<std::string>(const std::string&)>;

// The shard: the flags when given (both or neither); else torchrun's RANK / WORLD_SIZE; else a Slurm
// array (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT, times SLURM_NTASKS with
// SLURM_PROCID when each array task has several tasks); else Slurm's SLURM_PROCID / SLURM_NTASKS; else
// one process. Errors name the flag or variable. `lookup` defaults to the process environment.
EvalShard eval_shard(std::optional<int64_t> rank_flag, std::optional<int64_t> world_size_flag,
                     const EvalEnvironment& lookup = nullptr);

struct PromptSetEvalRequest {
  std::string prompt_set;  // the file
  PromptSetFormat format = PromptSetFormat::kAuto;
  std::string out_dir;
  std::string label;          // the row's name ("" = the folder's name)
  std::string reference_dir;  // another run's --out-dir for LPIPS / SSIM / PSNR ("" = none)
  int64_t batch = 8;
  uint64_t seed = 0;
  int64_t limit = 0;            // the first `limit` prompts only (0 = all)
  std::string device = "auto";  // util/device.h; "cuda" (or auto choosing CUDA) runs on cuda:<local rank>
  std::string config_label;     // the config file, recorded in the PNGs ("" = none)
  bool quiet = false;           // no progress lines
};

struct PromptSetEvalSummary {
  int64_t items = 0;            // in the whole set (after limit)
  int64_t shard_items = 0;      // this rank's
  int64_t skipped_items = 0;    // this rank's, finished by an earlier run
  int64_t generated_items = 0;  // this rank's, generated now
  std::string records;          // this rank's records file
  bool complete = false;        // every item of the set has a record (any rank)
};

// Runs this rank's part. Loads the model and the configured metric models first (so bad files fail
// before any output), checks or writes settings.json, then generates and scores the missing batches.
// Throws ilf::Error naming the file, key or flag at fault.
PromptSetEvalSummary run_prompt_set_evaluation(const LoadedRunConfig& loaded, const PromptSetEvalRequest& request,
                                               const EvalShard& shard);

struct PromptSetMergeRequest {
  std::string out_dir;
  std::string out_json;         // "" = <out_dir>/merged.json
  std::string markdown;         // "" = <out_dir>/table1_row.md
  std::string device = "auto";  // where FID's Inception runs (util/device.h)
  bool quiet = false;
};

// Merges every rank's records (an error names the missing items and rank files), computes FID when
// "metrics.inception" and "metrics.fid_statistics" are set in the stored settings, and writes the
// merged JSON and the Markdown table (header, separator and this setting's row), both atomically.
// Returns the merged JSON:
//   {"format": "ilf.prompt_set_evaluation", "label", "items", "settings" (settings.json),
//    "means": {"seconds_per_image", "block_forwards", each metric's mean over the items that have it},
//    "fid" (null without FID), "counts": {"items", "with_<metric>"...},
//    "categories": {"<category>": {"items", "means": {...}}} (when the set has categories),
//    "reference" (the reference run's label, this run's own when it is the reference, or null), "records": [every record in index
//    order]}
// Means are sums in index order divided by the count, so the result does not depend on the sharding.
Json merge_prompt_set_evaluation(const PromptSetMergeRequest& request);

// The Markdown header + separator + row of a merged result, Table 1's columns:
// setting | s/img | block forwards | ImageReward | CLIP | FID | CLIP-IQA Good | Noisy | Colorful | Natural |
// LPIPS | SSIM | PSNR (vs <reference>); a metric that was not computed is "—".
std::string table1_markdown(const Json& merged);

}  // namespace ilf
