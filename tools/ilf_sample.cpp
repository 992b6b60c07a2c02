// ilf_sample: sampling with a diffusion transformer and any acceleration method (plain, Inner Loop
// Feedback, caching, ...), written as PNG files that carry the generation settings in a text chunk.
//   class-to-image (DiT):            ilf_sample --config run.json --class 207,360 --steps 10
//   text-to-image (PixArt-alpha / Sigma, like the diffusers pipelines; see docs/text-to-image.md):
//                                    ilf_sample --model-folder models/pixart_sigma_1024 --prompt "a corgi" --steps 10
//                                    ilf_sample --config configs/pixart_alpha_512.json --prompts-file prompts.txt --out samples/
// `--plan` prints what each step will do and the block forwards, without loading any weights.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>

#include "ilf/error.h"
#include "ilf/io/image.h"
#include "ilf/pipelines/class_to_image.h"
#include "ilf/pipelines/loading.h"
#include "ilf/pipelines/text_to_image.h"
#include "tool_common.h"

using namespace ilf;

namespace {

constexpr double kTextToImageGuidance = 4.5;  // the PixArt pipelines' default guidance scale

struct Args {
  std::string config = "configs/fashion_mnist.json";  // text-to-image: none unless given
  bool config_given = false;
  std::vector<std::string> overrides;
  std::vector<int64_t> classes;
  uint64_t seed = 0;
  int64_t steps = 0;
  double cfg = -1;
  int64_t batch = 0;
  std::string method, weights, feedback, out = "sample.png", device = "cpu";
  bool plan = false, out_given = false;
  std::optional<std::string> prompt, negative_prompt;  // text-to-image
  std::string prompts_file, model_folder;
  int64_t height = 0, width = 0;
  bool no_resolution_binning = false;

  bool text_to_image() const { return prompt.has_value() || !prompts_file.empty(); }
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void print_progress(int64_t k, int64_t n) {
  std::cerr << "\rsampling: step " << k << "/" << n << std::flush;
  if (k == n) std::cerr << std::endl;
}

int run_class_to_image(const Args& args, const RunConfig& config) {
  ClassToImageModel model = load_class_to_image_model(config, torch::Device(args.device));
  // Class labels: --class values, repeated up to --batch; default one of each class.
  std::vector<int64_t> classes = args.classes;
  if (classes.empty())
    for (int64_t c = 0; c < std::min(model.num_classes(), args.batch > 0 ? args.batch : model.num_classes()); ++c)
      classes.push_back(c);
  const int64_t batch = args.batch > 0 ? args.batch : static_cast<int64_t>(classes.size());
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(classes[static_cast<size_t>(i) % classes.size()]);
  for (int64_t y : labels)
    if (y < 0 || y >= model.num_classes())
      throw Error("--class " + std::to_string(y) + " is outside [0, " + std::to_string(model.num_classes()) + ")");

  const auto start = std::chrono::steady_clock::now();
  const ClassToImageResult result = generate(model, labels, args.seed, print_progress);
  const double seconds = seconds_since(start);
  nlohmann::json settings = generation_settings(config, *model.sampling.method, *model.sampling.solver);
  settings["seed"] = args.seed;
  settings["classes"] = labels;
  settings["block_forwards"] = result.sampling.block_forwards;
  settings["config"] = args.config;
  write_png(args.out, batch == 1 ? result.images[0] : make_image_grid(result.images),
            {{"Software", "ilf_sample"}, {"ilf", settings.dump()}});
  spdlog::info("wrote {} ({} image{}, {} block forwards, {:.2f} s)", args.out, batch, batch == 1 ? "" : "s",
               result.sampling.block_forwards, seconds);
  return 0;
}

int run_text_to_image(const Args& args, const LoadedRunConfig& loaded) {
  if (!args.classes.empty()) throw Error("--class is for class-to-image models; text-to-image takes --prompt or --prompts-file");
  if (args.prompt && !args.prompts_file.empty()) throw Error("give either --prompt or --prompts-file, not both");
  const RunConfig& config = loaded.config;
  TextToImageModel model = load_text_to_image_model(config, torch::Device(args.device), loaded.folder ? &*loaded.folder : nullptr);

  // --prompt: --batch images of one prompt in one PNG (a grid when several); --prompts-file: one PNG per
  // prompt in the --out folder, --batch prompts per sampling run. Image i has seed --seed + i.
  const bool from_file = !args.prompts_file.empty();
  const std::vector<std::string> prompts = from_file ? read_prompts_file(args.prompts_file)
                                                     : std::vector<std::string>(std::max<int64_t>(args.batch, 1), *args.prompt);
  const auto total = static_cast<int64_t>(prompts.size());
  const int64_t per_run = from_file ? std::max<int64_t>(args.batch, 1) : total;
  const std::string out = from_file && !args.out_given ? "samples" : args.out;
  if (from_file) {
    if (std::filesystem::path(out).extension() == ".png")
      throw Error("--out " + out + ": with --prompts-file, --out names a folder (one PNG per prompt)");
    std::filesystem::create_directories(out);
  }
  TextToImageRequest request;
  request.negative_prompt = args.negative_prompt;
  request.height = args.height;
  request.width = args.width;
  request.resolution_binning = !args.no_resolution_binning;
  const ImageSize generated = generation_size(model, {args.height, args.width}, request.resolution_binning);
  spdlog::info("{} ({}), {} image{} at {}x{} (sampled at {}x{}), {} {} steps, guidance {}", model.family,
               model.backbone->variant(), total, total == 1 ? "" : "s", args.width ? args.width : model.resolution(),
               args.height ? args.height : model.resolution(), generated.width, generated.height, model.options.steps,
               model.sampling.method->name(), model.options.guidance_scale);

  nlohmann::json settings = generation_settings(config, *model.sampling.method, *model.sampling.solver);
  settings["family"] = model.family;
  settings["negative_prompt"] = args.negative_prompt ? nlohmann::json(*args.negative_prompt) : nlohmann::json(nullptr);
  settings["null_caption"] = args.negative_prompt                    ? "negative prompt"
                             : model.uses_y_embedding_null_caption() ? "y_embedding"
                                                                     : "empty prompt";
  if (args.config_given) settings["config"] = args.config;
  if (loaded.folder) settings["model_folder"] = loaded.folder->path;

  const auto start = std::chrono::steady_clock::now();
  const int64_t runs = (total + per_run - 1) / per_run;
  int64_t block_forwards = 0;
  for (int64_t r = 0; r < runs; ++r) {
    const int64_t begin = r * per_run, end = std::min(total, begin + per_run);
    request.prompts.assign(prompts.begin() + begin, prompts.begin() + end);
    request.seeds.clear();
    for (int64_t i = begin; i < end; ++i) request.seeds.push_back(args.seed + static_cast<uint64_t>(i));
    const TextToImageResult result = generate(model, request, [&](int64_t k, int64_t n) {
      std::cerr << "\rsampling" << (runs > 1 ? ": batch " + std::to_string(r + 1) + "/" + std::to_string(runs) : "")
                << ": step " << k << "/" << n << std::flush;
      if (k == n && r + 1 == runs) std::cerr << std::endl;
    });
    block_forwards += result.sampling.block_forwards;
    settings["block_forwards"] = result.sampling.block_forwards;  // one sampling run, as --plan counts them
    settings["width"] = result.requested.width;
    settings["height"] = result.requested.height;
    settings["sampled_size"] = {result.generated.width, result.generated.height};
    for (int64_t i = begin; from_file && i < end; ++i) {
      char name[32];
      std::snprintf(name, sizeof(name), "%05lld.png", static_cast<long long>(i));
      settings["prompt"] = prompts[static_cast<size_t>(i)];
      settings["seed"] = args.seed + static_cast<uint64_t>(i);
      settings["index"] = i;
      write_png((std::filesystem::path(out) / name).string(), result.images[i - begin],
                {{"Software", "ilf_sample"}, {"ilf", settings.dump()}});
    }
    if (!from_file) {
      settings["prompt"] = *args.prompt;
      settings["seed"] = total == 1 ? nlohmann::json(args.seed) : nlohmann::json(request.seeds);
      write_png(out, total == 1 ? result.images[0] : make_image_grid(result.images),
                {{"Software", "ilf_sample"}, {"ilf", settings.dump()}});
    }
  }
  spdlog::info("wrote {} ({} image{}; {} block forwards per sampling run, {} in all; {:.2f} s)", out, total,
               total == 1 ? "" : "s", settings["block_forwards"].get<int64_t>(), block_forwards, seconds_since(start));
  return 0;
}

int run(const Args& args) {
  const bool text = args.text_to_image();
  const std::string config_path = text && !args.config_given ? "" : args.config;
  Json json = read_run_config_json(config_path, args.overrides);
  if (args.steps > 0) json["sampling"]["steps"] = args.steps;
  if (args.cfg >= 0) json["sampling"]["guidance_scale"] = args.cfg;
  if (!args.method.empty()) json["sampling"]["method"] = args.method;
  if (!args.weights.empty()) json["weights"] = args.weights;
  if (!args.feedback.empty()) json["ilf"]["feedback_weights"] = args.feedback;
  if (text && !(json.contains("sampling") && json["sampling"].contains("guidance_scale")))
    json["sampling"]["guidance_scale"] = kTextToImageGuidance;
  if (!text && (!args.model_folder.empty() || args.negative_prompt || args.height || args.width))
    throw Error("--model-folder, --negative-prompt, --height and --width are for text-to-image (--prompt or --prompts-file)");
  const LoadedRunConfig loaded =
      load_tool_config(std::move(json), config_path.empty() ? "ilf_sample" : config_path, args.model_folder);
  if (text && !loaded.folder && loaded.config.weights.empty())
    throw Error("text-to-image needs a model: --model-folder DIR (scripts/export_pixart_model_folder.py makes one from a "
                "PixArt checkpoint; see docs/text-to-image.md), or a --config that names one (\"model.folder\")");
  if (args.plan) {
    std::cout << plan_run(loaded.config).dump(2) << std::endl;
    return 0;
  }
  return text ? run_text_to_image(args, loaded) : run_class_to_image(args, loaded.config);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ilf_sample: sample images with a diffusion transformer, plain or with an acceleration method"};
  Args args;
  std::string prompt, negative_prompt;
  app.add_option("--config", args.config, "run config (JSON); text-to-image: none by default (--model-folder)")->capture_default_str();
  app.add_option("--set", args.overrides, "override a config value: key.path=value (repeatable)");
  app.add_option("--class", args.classes, "class label(s) to sample (repeatable or comma-separated)")->delimiter(',');
  app.add_option("--seed", args.seed, "random seed of the initial noise (text-to-image: image i uses seed + i)")->capture_default_str()->transform(cli::Seed);
  app.add_option("--steps", args.steps, "sampling steps (overrides sampling.steps)")->transform(cli::Count);
  app.add_option("--cfg", args.cfg, "classifier-free guidance scale (overrides sampling.guidance_scale; text-to-image default 4.5)")->check(cli::FiniteNonNegative);
  app.add_option("--batch", args.batch,
                 "number of images (classes repeat to fill it; with --prompt: images of the prompt; "
                 "with --prompts-file: prompts per sampling run)")->transform(cli::Count);
  app.add_option("--method", args.method, "sampling method: baseline, ilf, cache, ... (overrides sampling.method)");
  app.add_option("--weights", args.weights, "backbone weights (overrides weights)");
  app.add_option("--feedback", args.feedback, "feedback module weights (overrides ilf.feedback_weights)");
  app.add_option("--out", args.out, "output PNG (with --prompts-file: output folder, default samples/)")->capture_default_str();
  app.add_option("--device", args.device, "cpu or cuda")->capture_default_str();
  app.add_flag("--plan", args.plan, "print the per-step plan and block forwards as JSON; loads no weights");
  app.add_option("--prompt", prompt, "text-to-image: the prompt");
  app.add_option("--prompts-file", args.prompts_file, "text-to-image: a file with one prompt per line (one image each)");
  app.add_option("--negative-prompt", negative_prompt,
                 "text-to-image: the negative prompt (default: the family's null caption: PixArt-alpha's y_embedding, "
                 "PixArt-Sigma's empty prompt)");
  app.add_option("--model-folder", args.model_folder, "text-to-image: model folder with model.json (overrides model.folder)");
  app.add_option("--height", args.height, "text-to-image: image height in pixels (default: the model's resolution)")->transform(cli::Count);
  app.add_option("--width", args.width, "text-to-image: image width in pixels (default: the model's resolution)")->transform(cli::Count);
  app.add_flag("--no-resolution-binning", args.no_resolution_binning,
               "text-to-image: sample at --height x --width instead of the nearest aspect-ratio bin of the multi-scale models");
  if (const int code = cli::parse(app, argc, argv, "ilf_sample"); code >= 0) return code;
  if (app.count("--prompt")) args.prompt = prompt;
  if (app.count("--negative-prompt")) args.negative_prompt = negative_prompt;
  args.out_given = app.count("--out") > 0;
  args.config_given = app.count("--config") > 0;
  try {
    return run(args);
  } catch (...) {
    return cli::report_error("ilf_sample");
  }
}
