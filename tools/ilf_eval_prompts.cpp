// ilf_eval_prompts: evaluates one sampling setting of a text-to-image model over a prompt set (plain
// text, MJHQ-30K's meta_data.json, DrawBench's CSV, ImageReward's benchmark JSON), the way the paper's
// Table 1 is measured: every image as a PNG, per-image scores as JSON lines, sharded over ranks, resumable,
// merged into one JSON and a Markdown row (see include/ilf/pipelines/prompt_set_evaluation.h).
//
//   run (one rank, or the whole set):
//     ilf_eval_prompts --config configs/fashion_mnist_t2i.json --model-folder models/fashion_mnist_t2i
//                      --prompt-set prompts.txt --out-dir runs/eval/ilf10 [--label ILF-10]
//                      [--reference-dir runs/eval/base20] [--batch 8] [--seed 0] [--limit N]
//                      [--format auto|text|mjhq|drawbench|imagereward] [--rank r --world-size W]
//                      [--set key=value ...] [--steps N] [--method M] [--device auto|cpu|cuda] [--quiet]
//                      [--out merged.json] [--markdown row.md]
//   merge (after every rank finished):
//     ilf_eval_prompts merge --out-dir runs/eval/ilf10 [--out merged.json] [--markdown row.md] [--device cuda]
//
// The shard comes from --rank / --world-size, else torchrun's RANK / WORLD_SIZE, else a Slurm array
// (SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT / SLURM_ARRAY_TASK_MIN) or Slurm's SLURM_PROCID /
// SLURM_NTASKS, else one process. A one-process run (world size 1) merges by itself at the end (into
// <out-dir>/merged.json and <out-dir>/table1_row.md, or --out / --markdown); sharded runs are merged by
// `merge` once every rank has finished. Metric models come from the run config's "metrics" section
// (--set metrics.clip=DIR, ...): a metric runs only when its file is set. Rerunning the same command
// resumes; a rerun with other settings is refused.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "ilf/error.h"
#include "ilf/pipelines/loading.h"
#include "ilf/pipelines/prompt_set_evaluation.h"
#include "ilf/pipelines/sample_files.h"
#include "tool_common.h"

using namespace ilf;

int main(int argc, char** argv) {
  CLI::App app{"ilf_eval_prompts: evaluate one sampling setting of a text-to-image model over a prompt set"};
  std::string config = "configs/fashion_mnist_t2i.json", model_folder, format = "auto", out_json, markdown;
  std::vector<std::string> overrides;
  int64_t steps = 0;
  std::string method;
  uint64_t rank = 0, world_size = 0;
  PromptSetEvalRequest request;
  app.add_option("--config", config, "run config (JSON)")->capture_default_str();
  app.add_option("--set", overrides, "override a config value: key.path=value (repeatable), e.g. metrics.clip=DIR");
  app.add_option("--model-folder", model_folder, "text-to-image model folder with model.json (overrides model.folder)");
  app.add_option("--steps", steps, "sampling steps (overrides sampling.steps)")->transform(cli::Count);
  app.add_option("--method", method, "sampling method (overrides sampling.method)");
  app.add_option("--prompt-set", request.prompt_set,
                 "prompts: .txt (one per line), MJHQ meta_data.json, DrawBench .csv, ImageReward benchmark .json")
      ->check(cli::NonEmpty);
  app.add_option("--format", format, "prompt set format: auto, text, mjhq, drawbench or imagereward")->capture_default_str();
  app.add_option("--out-dir", request.out_dir, "output folder (images/, records/, settings.json; rerun to resume)")
      ->check(cli::NonEmpty);
  app.add_option("--label", request.label, "the setting's name in the table (default: the folder's name)");
  app.add_option("--reference-dir", request.reference_dir,
                 "another run's --out-dir (same prompt set and seed): LPIPS / SSIM / PSNR to its same-index images")
      ->check(cli::NonEmpty);
  app.add_option("--batch", request.batch, "images per sampling batch (fixed for a folder)")
      ->capture_default_str()
      ->transform(cli::Count);
  app.add_option("--seed", request.seed, "base seed: item i uses seed + i")->capture_default_str()->transform(cli::Seed);
  app.add_option("--limit", request.limit, "evaluate the first N prompts only")->transform(cli::Count);
  app.add_option("--rank", rank, "this process's rank (with --world-size; default: torchrun / Slurm variables)")
      ->transform(cli::Seed);
  app.add_option("--world-size", world_size, "number of ranks (with --rank)")->transform(cli::Count);
  app.add_option("--device", request.device, "auto (CUDA when the build and machine have it), cpu or cuda")
      ->capture_default_str();
  app.add_option("--out", out_json, "merged JSON (default <out-dir>/merged.json; a one-process run merges at its end)")
      ->check(cli::NonEmpty);
  app.add_option("--markdown", markdown, "merged Markdown table row (default <out-dir>/table1_row.md)")->check(cli::NonEmpty);
  app.add_flag("--quiet", request.quiet, "no progress lines");

  CLI::App* merge = app.add_subcommand("merge", "merge every rank's records into one JSON and a Markdown row (FID here)");
  PromptSetMergeRequest merge_request;
  merge->add_option("--out-dir", merge_request.out_dir, "the evaluation's output folder")->check(cli::NonEmpty)->required();
  merge->add_option("--out", merge_request.out_json, "merged JSON (default <out-dir>/merged.json)")->check(cli::NonEmpty);
  merge->add_option("--markdown", merge_request.markdown, "Markdown table (default <out-dir>/table1_row.md)")
      ->check(cli::NonEmpty);
  merge->add_option("--device", merge_request.device, "where FID's Inception runs: auto, cpu or cuda")->capture_default_str();
  merge->add_flag("--quiet", merge_request.quiet, "no progress lines");
  if (const int code = cli::parse(app, argc, argv, "ilf_eval_prompts"); code >= 0) return code;
  if (!merge->parsed() && (request.prompt_set.empty() || request.out_dir.empty())) {
    std::cerr << "ilf_eval_prompts: error: --prompt-set and --out-dir are required (or: ilf_eval_prompts merge --out-dir DIR)"
              << " (see ilf_eval_prompts --help)" << std::endl;
    return cli::kUsageError;
  }

  try {
    if (merge->parsed()) {
      const Json merged = merge_prompt_set_evaluation(merge_request);
      std::cout << table1_markdown(merged);
      return 0;
    }
    request.format = parse_prompt_set_format(format);
    const EvalShard shard =
        eval_shard(app.count("--rank") ? std::optional<int64_t>(static_cast<int64_t>(rank)) : std::nullopt,
                   app.count("--world-size") ? std::optional<int64_t>(static_cast<int64_t>(world_size)) : std::nullopt);

    Json json = read_run_config_json(config, overrides);
    if (steps > 0) json["sampling"]["steps"] = steps;
    if (!method.empty()) json["sampling"]["method"] = method;
    SampleFilesRequest sample;  // the text-to-image config as ilf_sample loads it (guidance default included)
    sample.prompts_file = request.prompt_set;
    sample.model_folder = model_folder;
    const LoadedRunConfig loaded = load_sample_config(std::move(json), config, sample);
    request.config_label = config;

    const PromptSetEvalSummary s = run_prompt_set_evaluation(loaded, request, shard);
    spdlog::info("rank {}/{} ({}): {} of the set's {} images are this rank's; {} generated now, {} were done", shard.rank,
                 shard.world_size, shard.launcher, s.shard_items, s.items, s.generated_items, s.skipped_items);
    if (shard.world_size == 1 && s.complete) {
      PromptSetMergeRequest m;
      m.out_dir = request.out_dir;
      m.out_json = out_json;
      m.markdown = markdown;
      m.device = request.device;
      m.quiet = request.quiet;
      std::cout << table1_markdown(merge_prompt_set_evaluation(m));
    } else if (!out_json.empty() || !markdown.empty()) {
      spdlog::info("--out / --markdown: sharded runs are merged with `ilf_eval_prompts merge --out-dir {}` after every rank",
                   request.out_dir);
    } else {
      spdlog::info("records in {}; merge with `ilf_eval_prompts merge --out-dir {}` once every rank has finished", s.records,
                   request.out_dir);
    }
    return 0;
  } catch (...) {
    return cli::report_error("ilf_eval_prompts");
  }
}
