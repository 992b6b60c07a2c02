// ilf_sample: sampling with a diffusion transformer, plain, with Inner Loop Feedback or with the caching
// baseline, written as PNG files that carry the generation settings in a text chunk.
//   class-to-image (DiT):            ilf_sample --config run.json --class 207,360 --steps 10
//   text-to-image (PixArt-alpha / Sigma, like the diffusers pipelines; see docs/text-to-image.md):
//                                    ilf_sample --model-folder models/pixart_sigma_1024 --prompt "a corgi" --steps 10
//                                    ilf_sample --config configs/pixart_alpha_512.json --prompts-file prompts.txt --out
//                                    samples/
// `--plan` prints what each step will do and the block forwards, without loading any weights.
#include <spdlog/spdlog.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>

#include "ilf/error.h"
#include "ilf/io/image.h"
#include "ilf/io/model_folder.h"
#include "ilf/io/run_config.h"
#include "ilf/models/dit.h"
#include "ilf/sampling/model_loading.h"
#include "ilf/sampling/sampler.h"
#include "ilf/sampling/solvers.h"
#include "ilf/sampling/text_to_image.h"

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
  bool plan = false;
  // Text-to-image.
  std::optional<std::string> prompt, negative_prompt;
  std::string prompts_file, model_folder;
  int64_t height = 0, width = 0;
  bool no_resolution_binning = false;
  bool out_given = false;

  bool text_to_image() const { return prompt.has_value() || !prompts_file.empty(); }
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The method's settings for the PNG metadata.
nlohmann::json method_settings(const SamplingOptions& options, const Solver& solver) {
  nlohmann::json s = {{"method", to_string(options.method)},
                      {"steps", options.steps},
                      {"solver", solver.name()},
                      {"guidance_scale", options.guidance_scale}};
  if (options.method == SamplingMethod::kIlf)
    s["ilf"] = {{"loop_begin", options.loop_begin},
                {"loop_end", options.loop_end},
                {"t_post", to_string(options.t_post)},
                {"feedback_steps", to_string(options.feedback_steps.mode)},
                {"feedback_count", options.feedback_steps.count}};
  if (options.method == SamplingMethod::kCache)
    s["cache"] = {{"location", to_string(options.cache.location)},
                  {"num_blocks", options.cache.num_blocks},
                  {"interval", options.cache.interval}};
  return s;
}

int print_plan(ConfigReader& reader, const SamplingOptions& options, Solver& solver) {
  const int64_t depth = reader.require<int64_t>("model.depth");
  reader.get<std::string>("ilf.init", "copy");
  reader.get<std::string>("ilf.feedback_weights", "");
  const SamplingPlan plan = plan_sampling(options, solver, depth);
  finish_run_config(reader, {"model", "weights", "vae", "training", "data", "eval", "text", "output"});
  nlohmann::json j = plan.to_json();
  j["method"] = to_string(options.method);
  j["solver"] = solver.name();
  j["depth"] = depth;
  std::cout << j.dump(2) << std::endl;
  return 0;
}

int run_class_to_image(const Args& args, ConfigReader& reader, const SamplingOptions& options, Solver& solver) {
  const torch::Device device(args.device);
  BackbonePtr backbone = load_backbone_from_config(reader, device);
  if (backbone->family() != "dit")
    throw Error("ilf_sample: class-conditional sampling needs a DiT backbone; this one is " + backbone->family() +
                " (for PixArt give --prompt or --prompts-file)");
  const auto& dit = dynamic_cast<const DiTImpl&>(*backbone).config();
  FeedbackModule feedback = load_feedback_from_config(reader, *backbone, options, device);

  // Optional VAE decoder for latent models.
  const std::string vae_path = reader.get<std::string>("vae.decoder", "");
  const double vae_scale = reader.get<double>("vae.scale_factor", 0.18215);
  finish_run_config(reader, {"training", "data", "eval", "text", "output"});
  torch::jit::script::Module vae;
  if (!vae_path.empty()) {
    try {
      vae = torch::jit::load(resolve_config_path(reader, vae_path), device);
    } catch (const c10::Error& e) {
      throw Error(vae_path + ": cannot load the TorchScript VAE decoder (" + e.what_without_backtrace() + ")");
    }
  } else if (backbone->in_channels() != 1 && backbone->in_channels() != 3) {
    throw Error(reader.source() + ": the model makes " + std::to_string(backbone->in_channels()) +
                "-channel latents; set \"vae.decoder\" to a TorchScript VAE decoder");
  }

  // Class labels: --class values, repeated up to --batch; default one of each class.
  std::vector<int64_t> classes = args.classes;
  if (classes.empty())
    for (int64_t c = 0; c < std::min<int64_t>(dit.num_classes, args.batch > 0 ? args.batch : dit.num_classes); ++c)
      classes.push_back(c);
  const int64_t batch = args.batch > 0 ? args.batch : static_cast<int64_t>(classes.size());
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(classes[i % classes.size()]);
  for (int64_t y : labels)
    if (y < 0 || y >= dit.num_classes)
      throw Error("--class " + std::to_string(y) + " is outside [0, " + std::to_string(dit.num_classes) + ")");
  ConditionInputs inputs;
  inputs.class_labels = torch::tensor(labels, torch::kInt64).to(device);

  auto generator = at::detail::createCPUGenerator(args.seed);
  const torch::Tensor x_T =
      torch::randn({batch, backbone->in_channels(), dit.input_size, dit.input_size}, generator).to(device);
  const auto start = std::chrono::steady_clock::now();
  SamplingResult result = sample(*backbone, feedback ? feedback.get() : nullptr, solver, options, x_T, inputs,
                                 backbone->null_condition(inputs), [](int64_t k, int64_t n) {
                                   std::cerr << "\rsampling: step " << k << "/" << n << std::flush;
                                   if (k == n) std::cerr << std::endl;
                                 });
  torch::Tensor images = result.samples;
  if (!vae_path.empty()) {
    torch::NoGradGuard no_grad;
    images = vae.forward({images / vae_scale}).toTensor();
  }
  const double seconds = seconds_since(start);

  nlohmann::json settings = method_settings(options, solver);
  settings["seed"] = args.seed;
  settings["classes"] = labels;
  settings["block_forwards"] = result.block_forwards;
  settings["config"] = args.config;
  const torch::Tensor picture = batch == 1 ? images[0] : make_image_grid(images);
  write_png(args.out, picture, {{"Software", "ilf_sample"}, {"ilf", settings.dump()}});
  spdlog::info("wrote {} ({} image{}, {} block forwards, {:.2f} s)", args.out, batch, batch == 1 ? "" : "s",
               result.block_forwards, seconds);
  return 0;
}

// The prompts of a --prompts-file: one image per non-empty line (a trailing '\r' is dropped).
std::vector<std::string> read_prompts_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot read the prompts file");
  std::vector<std::string> prompts;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) prompts.push_back(line);
  }
  if (prompts.empty()) throw Error(path + ": the prompts file has no prompts (one per line)");
  return prompts;
}

int run_text_to_image(const Args& args, ConfigReader& reader, const SamplingOptions& options, Solver& solver,
                      const std::optional<ModelFolder>& folder) {
  if (!args.classes.empty())
    throw Error("--class is for class-to-image models; text-to-image takes --prompt or --prompts-file");
  if (args.prompt && !args.prompts_file.empty()) throw Error("give either --prompt or --prompts-file, not both");
  const torch::Device device(args.device);
  TextToImageModel model = load_text_to_image_model(reader, options, device, folder ? &*folder : nullptr);
  finish_run_config(reader, {"training", "data", "eval", "output"});

  // --prompt: --batch images of one prompt in one PNG (a grid when several); --prompts-file: one PNG per
  // prompt in the --out folder, --batch prompts per sampling run. Image i has seed --seed + i.
  const bool from_file = !args.prompts_file.empty();
  const std::vector<std::string> prompts =
      from_file ? read_prompts_file(args.prompts_file)
                : std::vector<std::string>(std::max<int64_t>(args.batch, 1), *args.prompt);
  const int64_t total = static_cast<int64_t>(prompts.size());
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
  const int64_t runs = (total + per_run - 1) / per_run;
  spdlog::info("{} ({}), {} image{} at {}x{} (sampled at {}x{}), {} {} steps, guidance {}", model.family,
               model.pixart().config().variant, total, total == 1 ? "" : "s",
               args.width ? args.width : model.resolution(), args.height ? args.height : model.resolution(),
               generated.width, generated.height, options.steps, to_string(options.method), options.guidance_scale);

  nlohmann::json settings = method_settings(options, solver);
  settings["family"] = model.family;
  settings["negative_prompt"] = args.negative_prompt ? nlohmann::json(*args.negative_prompt) : nlohmann::json(nullptr);
  settings["null_caption"] = args.negative_prompt                    ? "negative prompt"
                             : model.uses_y_embedding_null_caption() ? "y_embedding"
                                                                     : "empty prompt";
  if (args.config_given) settings["config"] = args.config;
  if (folder) settings["model_folder"] = folder->path;

  const auto start = std::chrono::steady_clock::now();
  int64_t block_forwards = 0;
  for (int64_t r = 0; r < runs; ++r) {
    const int64_t begin = r * per_run, end = std::min(total, begin + per_run);
    request.prompts.assign(prompts.begin() + begin, prompts.begin() + end);
    request.seeds.clear();
    for (int64_t i = begin; i < end; ++i) request.seeds.push_back(args.seed + static_cast<uint64_t>(i));
    const TextToImageResult result = generate(model, solver, options, request, [&](int64_t k, int64_t n) {
      std::cerr << "\rsampling";
      if (runs > 1) std::cerr << ": batch " << r + 1 << "/" << runs;
      std::cerr << ": step " << k << "/" << n << std::flush;
      if (k == n && r + 1 == runs) std::cerr << std::endl;
    });
    block_forwards += result.sampling.block_forwards;
    settings["block_forwards"] = result.sampling.block_forwards;  // one sampling run, as --plan counts them
    settings["width"] = result.requested.width;
    settings["height"] = result.requested.height;
    settings["sampled_size"] = {result.generated.width, result.generated.height};
    if (from_file) {
      for (int64_t i = begin; i < end; ++i) {
        char name[32];
        std::snprintf(name, sizeof(name), "%05lld.png", static_cast<long long>(i));
        settings["prompt"] = prompts[static_cast<size_t>(i)];
        settings["seed"] = args.seed + static_cast<uint64_t>(i);
        settings["index"] = i;
        write_png((std::filesystem::path(out) / name).string(), result.images[i - begin],
                  {{"Software", "ilf_sample"}, {"ilf", settings.dump()}});
      }
    } else {
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
  Json config = load_run_config(config_path, args.overrides);
  if (args.steps > 0) config["sampling"]["steps"] = args.steps;
  if (args.cfg >= 0) config["sampling"]["guidance_scale"] = args.cfg;
  if (!args.method.empty()) config["sampling"]["method"] = args.method;
  if (!args.weights.empty()) config["weights"] = args.weights;
  if (!args.feedback.empty()) config["ilf"]["feedback_weights"] = args.feedback;
  std::optional<ModelFolder> folder;
  if (text) {
    if (!config.contains("sampling") || !config["sampling"].contains("guidance_scale"))
      config["sampling"]["guidance_scale"] = kTextToImageGuidance;
    folder = apply_model_folder(config, config_path, args.model_folder);
    if (!folder && !config.contains("weights"))
      throw Error(
          "text-to-image needs a model: --model-folder DIR (scripts/export_pixart_model_folder.py makes one from a "
          "PixArt checkpoint; see docs/text-to-image.md), or a --config that names one (\"model.folder\")");
  } else if (!args.model_folder.empty() || args.negative_prompt || args.height || args.width) {
    throw Error(
        "--model-folder, --negative-prompt, --height and --width are for text-to-image (--prompt or --prompts-file)");
  }
  ConfigReader reader(config, config_path.empty() ? "ilf_sample" : config_path);

  const SamplingOptions options = sampling_options_from_config(reader);
  const SolverOptions solver_options = SolverOptions::from_config(reader, "sampling");
  SolverPtr solver = make_solver(solver_options);
  if (args.plan) return print_plan(reader, options, *solver);
  return text ? run_text_to_image(args, reader, options, *solver, folder)
              : run_class_to_image(args, reader, options, *solver);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "ilf_sample: sample images with a diffusion transformer, plain, with Inner Loop Feedback, or with caching"};
  Args args;
  std::string prompt, negative_prompt;
  app.add_option("--config", args.config, "run config (JSON); text-to-image: none by default (--model-folder)")
      ->capture_default_str();
  app.add_option("--set", args.overrides, "override a config value: key.path=value (repeatable)");
  app.add_option("--class", args.classes, "class label(s) to sample (repeatable or comma-separated)")->delimiter(',');
  app.add_option("--seed", args.seed, "random seed of the initial noise (text-to-image: image i uses seed + i)")
      ->capture_default_str();
  app.add_option("--steps", args.steps, "sampling steps (overrides sampling.steps)");
  app.add_option("--cfg", args.cfg,
                 "classifier-free guidance scale (overrides sampling.guidance_scale; text-to-image default 4.5)");
  app.add_option("--batch", args.batch,
                 "number of images (classes repeat to fill it; with --prompt: images of the prompt; "
                 "with --prompts-file: prompts per sampling run)");
  app.add_option("--method", args.method, "baseline, ilf or cache (overrides sampling.method)");
  app.add_option("--weights", args.weights, "backbone weights (overrides weights)");
  app.add_option("--feedback", args.feedback, "feedback module weights (overrides ilf.feedback_weights)");
  app.add_option("--out", args.out, "output PNG (with --prompts-file: output folder, default samples/)")
      ->capture_default_str();
  app.add_option("--device", args.device, "cpu or cuda")->capture_default_str();
  app.add_flag("--plan", args.plan, "print the per-step plan and block forwards as JSON; loads no weights");
  app.add_option("--prompt", prompt, "text-to-image: the prompt");
  app.add_option("--prompts-file", args.prompts_file,
                 "text-to-image: a file with one prompt per line (one image each)");
  app.add_option("--negative-prompt", negative_prompt,
                 "text-to-image: the negative prompt (default: the family's null caption: PixArt-alpha's y_embedding, "
                 "PixArt-Sigma's empty prompt)");
  app.add_option("--model-folder", args.model_folder,
                 "text-to-image: model folder with model.json (overrides model.folder)");
  app.add_option("--height", args.height, "text-to-image: image height in pixels (default: the model's resolution)");
  app.add_option("--width", args.width, "text-to-image: image width in pixels (default: the model's resolution)");
  app.add_flag(
      "--no-resolution-binning", args.no_resolution_binning,
      "text-to-image: sample at --height x --width instead of the nearest aspect-ratio bin of the multi-scale models");
  CLI11_PARSE(app, argc, argv);
  if (app.count("--prompt")) args.prompt = prompt;
  if (app.count("--negative-prompt")) args.negative_prompt = negative_prompt;
  args.out_given = app.count("--out") > 0;
  args.config_given = app.count("--config") > 0;
  try {
    return run(args);
  } catch (const std::exception& e) {
    std::cerr << "ilf_sample: error: " << e.what() << std::endl;
    return 1;
  }
}
