// ilf_sample: sampling with a diffusion transformer and any acceleration method (plain, Inner Loop
// Feedback, caching, ...), written as PNG files that carry the generation settings in a text chunk.
//   class-to-image (DiT):            ilf_sample --config run.json --class 207,360 --steps 10
//   text-to-image (PixArt-alpha / Sigma, like the diffusers pipelines; see docs/text-to-image.md):
//                                    ilf_sample --model-folder models/pixart_sigma_1024 --prompt "a corgi" --steps 10
//                                    ilf_sample --config configs/pixart_alpha_512.json --prompts-file prompts.txt --out samples/
// `--plan` prints what each step will do and the block forwards, without loading any weights (nor
// needing the model folder: only "model.depth" and the sampling settings).
// Images smaller than 256 px on their shorter side are written enlarged by an integer factor (nearest
// neighbour) so they can be seen; --no-enlarge writes the sampled pixels as they are.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "ilf/pipelines/loading.h"
#include "ilf/pipelines/sample_files.h"
#include "ilf/sampling/sampler.h"
#include "ilf/util/progress.h"
#include "tool_common.h"

using namespace ilf;

namespace {

struct Args {
  std::string config = "configs/fashion_mnist.json";  // text-to-image: none unless given
  std::vector<std::string> overrides;
  int64_t steps = 0;
  double cfg = -1;
  std::string method, weights, feedback;
  bool plan = false, quiet = false;
  SampleFilesRequest request;
};

// "sampling[: batch r/R]: step k/n" as a live line on a terminal, whole lines elsewhere (util/progress.h).
SampleFilesProgress progress_report(Progress& progress) {
  return [&progress](int64_t run, int64_t runs, int64_t k, int64_t n) {
    const std::string batch = runs > 1 ? ": batch " + std::to_string(run + 1) + "/" + std::to_string(runs) : "";
    progress.update("sampling" + batch + ": step " + std::to_string(k) + "/" + std::to_string(n), run * n + k, runs * n);
  };
}

int run(const Args& args, bool config_given) {
  const SampleFilesRequest& request = args.request;
  const std::string config_path = request.text_to_image() && !config_given ? "" : args.config;
  Json json = read_run_config_json(config_path, args.overrides);
  if (args.steps > 0) json["sampling"]["steps"] = args.steps;
  if (args.cfg >= 0) json["sampling"]["guidance_scale"] = args.cfg;
  if (!args.method.empty()) json["sampling"]["method"] = args.method;
  if (!args.weights.empty()) json["weights"] = args.weights;
  if (!args.feedback.empty()) json["ilf"]["feedback_weights"] = args.feedback;
  const std::string source = config_path.empty() ? "ilf_sample" : config_path;
  if (args.plan) {  // no files: the architecture keys and the sampling settings are all a plan needs
    std::cout << plan_run(load_plan_config(std::move(json), source, request).config).dump(2) << std::endl;
    return 0;
  }
  const LoadedRunConfig loaded = load_sample_config(std::move(json), source, request);
  Progress progress(args.quiet ? Progress::Mode::kQuiet : Progress::Mode::kAuto);
  const SampleFilesSummary s = write_sample_files(loaded, request, progress_report(progress));
  const char* plural = s.images == 1 ? "" : "s";
  if (request.text_to_image())
    spdlog::info("wrote {} ({} image{}; {} block forwards per sampling run, {} in all; {:.2f} s)", s.out, s.images, plural,
                 s.block_forwards_per_run, s.block_forwards, s.seconds);
  else
    spdlog::info("wrote {} ({} image{}, {} block forwards, {:.2f} s)", s.out, s.images, plural, s.block_forwards, s.seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ilf_sample: sample images with a diffusion transformer, plain or with an acceleration method"};
  Args args;
  SampleFilesRequest& request = args.request;
  bool no_resolution_binning = false;
  std::string prompt, negative_prompt, out = "sample.png";
  app.add_option("--config", args.config, "run config (JSON); text-to-image: none by default (--model-folder)")
      ->capture_default_str();
  app.add_option("--set", args.overrides, "override a config value: key.path=value (repeatable)");
  app.add_option("--class", request.classes, "class label(s) to sample (repeatable or comma-separated)")->delimiter(',');
  app.add_option("--seed", request.seed, "random seed of the initial noise (text-to-image: image i uses seed + i)")
      ->capture_default_str()
      ->transform(cli::Seed);
  app.add_option("--steps", args.steps, "sampling steps (overrides sampling.steps)")->transform(cli::Count);
  app.add_option("--cfg", args.cfg,
                 "classifier-free guidance scale (overrides sampling.guidance_scale; text-to-image default 4.5)")
      ->check(cli::NumberInRange(0, kMaxGuidanceScale));
  app.add_option("--batch", request.batch,
                 "number of images (classes repeat to fill it; with --prompt: images of the prompt; "
                 "with --prompts-file: prompts per sampling run)")
      ->transform(cli::CountUpTo(kMaxBatch));
  app.add_option("--method", args.method, "sampling method: baseline, ilf, cache, ... (overrides sampling.method)");
  app.add_option("--weights", args.weights, "backbone weights (overrides weights)");
  app.add_option("--feedback", args.feedback, "feedback module weights (overrides ilf.feedback_weights)");
  app.add_option("--out", out, "output PNG (with --prompts-file: output folder, default samples/)")
      ->capture_default_str()
      ->check(cli::NonEmpty);
  app.add_option("--device", request.device, "auto (CUDA when the build and machine have it), cpu or cuda")
      ->capture_default_str();
  app.add_flag("--plan", args.plan,
               "print the per-step plan and block forwards as JSON; reads no weights (an absent model folder is skipped: "
               "set model.depth)");
  bool no_enlarge = false;
  app.add_flag("--no-enlarge", no_enlarge,
               "write the sampled pixels as they are; by default a PNG under 256 px on its shorter side (a single image "
               "or a grid) is enlarged by the smallest integer factor that makes it at least 256 px, each pixel a "
               "factor x factor block of its value (recorded as \"enlarged\" in the PNG's ilf metadata)");
  app.add_flag("--quiet", args.quiet,
               "no progress lines (on a terminal the step counter is one live line; on a pipe or file whole lines, "
               "one per tenth of the run at most, and the last)");
  app.add_option("--prompt", prompt, "text-to-image: the prompt");
  app.add_option("--prompts-file", request.prompts_file, "text-to-image: a file with one prompt per line (one image each)");
  app.add_option("--negative-prompt", negative_prompt,
                 "text-to-image: the negative prompt (default: the family's null caption: PixArt-alpha's y_embedding, "
                 "PixArt-Sigma's empty prompt)");
  app.add_option("--model-folder", request.model_folder, "text-to-image: model folder with model.json (overrides model.folder)");
  app.add_option("--height", request.height, "text-to-image: image height in pixels (default: the model's resolution)")
      ->transform(cli::CountUpTo(kMaxImageSide));
  app.add_option("--width", request.width, "text-to-image: image width in pixels (default: the model's resolution)")
      ->transform(cli::CountUpTo(kMaxImageSide));
  app.add_flag("--no-resolution-binning", no_resolution_binning,
               "text-to-image: sample at --height x --width instead of the nearest aspect-ratio bin of the multi-scale models");
  if (const int code = cli::parse(app, argc, argv, "ilf_sample"); code >= 0) return code;
  if (app.count("--prompt")) request.prompt = prompt;
  if (app.count("--negative-prompt")) request.negative_prompt = negative_prompt;
  if (app.count("--out")) request.out = out;
  request.resolution_binning = !no_resolution_binning;
  request.enlarge = !no_enlarge;
  const bool config_given = app.count("--config") > 0;
  if (config_given || !request.text_to_image()) request.config_label = args.config;
  try {
    return run(args, config_given);
  } catch (...) {
    return cli::report_error("ilf_sample");
  }
}
