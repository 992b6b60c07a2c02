// ilf_sample: class-conditional sampling with a backbone, optionally with Inner Loop Feedback or the
// caching baseline, written as a PNG (one image or a grid) that carries the settings in a text chunk.
// `--plan` prints what each step will do and the block forwards, without loading any weights.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "ilf/error.h"
#include "ilf/ilf/feedback.h"
#include "ilf/io/image.h"
#include "ilf/io/run_config.h"
#include "ilf/models/weights.h"
#include "ilf/sampling/sampler.h"
#include "ilf/sampling/solvers.h"

using namespace ilf;

namespace {

struct Args {
  std::string config = "configs/fashion_mnist.json";
  std::vector<std::string> overrides;
  std::vector<int64_t> classes;
  uint64_t seed = 0;
  int64_t steps = 0;
  double cfg = -1;
  int64_t batch = 0;
  std::string method, weights, feedback, out = "sample.png", device = "cpu";
  bool plan = false;
};

int run(const Args& args) {
  Json config = load_run_config(args.config, args.overrides);
  if (args.steps > 0) config["sampling"]["steps"] = args.steps;
  if (args.cfg >= 0) config["sampling"]["guidance_scale"] = args.cfg;
  if (!args.method.empty()) config["sampling"]["method"] = args.method;
  if (!args.weights.empty()) config["weights"] = args.weights;
  if (!args.feedback.empty()) config["ilf"]["feedback_weights"] = args.feedback;
  ConfigReader reader(config, args.config);

  const SamplingOptions options = sampling_options_from_config(reader);
  const SolverOptions solver_options = SolverOptions::from_config(reader, "sampling");
  SolverPtr solver = make_solver(solver_options);

  if (args.plan) {
    const int64_t depth = reader.require<int64_t>("model.depth");
    reader.get<std::string>("ilf.init", "copy");
    reader.get<std::string>("ilf.feedback_weights", "");
    const SamplingPlan plan = plan_sampling(options, *solver, depth);
    finish_run_config(reader, {"model", "weights", "vae", "training", "data", "eval", "text", "output"});
    nlohmann::json j = plan.to_json();
    j["method"] = to_string(options.method);
    j["solver"] = solver->name();
    j["depth"] = depth;
    std::cout << j.dump(2) << std::endl;
    return 0;
  }

  // The backbone and its weights.
  const std::string weights_path = resolve_config_path(reader, reader.require<std::string>("weights"));
  TensorMap weights = read_weights(weights_path);
  BackbonePtr backbone = make_backbone_for_weights(weights, reader, "model");
  load_backbone_weights(*backbone, std::move(weights), weights_path);
  const torch::Device device(args.device);
  move_backbone(*backbone, device, torch::kFloat32);
  backbone->eval();
  if (backbone->family() != "dit")
    throw Error("ilf_sample: class-conditional sampling needs a DiT backbone; this one is " + backbone->family());
  const auto& dit = dynamic_cast<const DiTImpl&>(*backbone).config();

  // The feedback module (ILF only).
  FeedbackModule feedback{nullptr};
  const std::string init = reader.choice("ilf.init", "copy", {"copy", "random"});
  const std::string feedback_path = reader.get<std::string>("ilf.feedback_weights", "");
  if (options.method == SamplingMethod::kIlf) {
    if (feedback_path.empty()) throw Error(args.config + ": method ilf needs \"ilf.feedback_weights\" (or --feedback)");
    feedback = FeedbackModule(*backbone, FeedbackOptions{options.loop_begin, options.loop_end,
                                                         init == "copy" ? FeedbackInit::kCopyLoopEnd : FeedbackInit::kRandom});
    feedback->load(resolve_config_path(reader, feedback_path));
    feedback->to(device);
    feedback->eval();
  }

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
    throw Error(args.config + ": the model makes " + std::to_string(backbone->in_channels()) +
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
  SamplingResult result = sample(*backbone, feedback ? feedback.get() : nullptr, *solver, options, x_T, inputs,
                                 backbone->null_condition(inputs), [](int64_t k, int64_t n) {
                                   std::cerr << "\rsampling: step " << k << "/" << n << std::flush;
                                   if (k == n) std::cerr << std::endl;
                                 });
  torch::Tensor images = result.samples;
  if (!vae_path.empty()) {
    torch::NoGradGuard no_grad;
    images = vae.forward({images / vae_scale}).toTensor();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  nlohmann::json settings = {{"method", to_string(options.method)},
                             {"steps", options.steps},
                             {"solver", solver->name()},
                             {"guidance_scale", options.guidance_scale},
                             {"seed", args.seed},
                             {"classes", labels},
                             {"block_forwards", result.block_forwards},
                             {"config", args.config}};
  if (options.method == SamplingMethod::kIlf)
    settings["ilf"] = {{"loop_begin", options.loop_begin},
                       {"loop_end", options.loop_end},
                       {"t_post", to_string(options.t_post)},
                       {"feedback_steps", to_string(options.feedback_steps.mode)},
                       {"feedback_count", options.feedback_steps.count}};
  if (options.method == SamplingMethod::kCache)
    settings["cache"] = {{"location", to_string(options.cache.location)},
                         {"num_blocks", options.cache.num_blocks},
                         {"interval", options.cache.interval}};
  const torch::Tensor picture = batch == 1 ? images[0] : make_image_grid(images);
  write_png(args.out, picture, {{"Software", "ilf_sample"}, {"ilf", settings.dump()}});
  spdlog::info("wrote {} ({} image{}, {} block forwards, {:.2f} s)", args.out, batch, batch == 1 ? "" : "s",
               result.block_forwards, seconds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ilf_sample: sample images with a diffusion transformer, plain, with Inner Loop Feedback, or with caching"};
  Args args;
  app.add_option("--config", args.config, "run config (JSON)")->capture_default_str();
  app.add_option("--set", args.overrides, "override a config value: key.path=value (repeatable)");
  app.add_option("--class", args.classes, "class label(s) to sample (repeatable or comma-separated)")->delimiter(',');
  app.add_option("--seed", args.seed, "random seed of the initial noise")->capture_default_str();
  app.add_option("--steps", args.steps, "sampling steps (overrides sampling.steps)");
  app.add_option("--cfg", args.cfg, "classifier-free guidance scale (overrides sampling.guidance_scale)");
  app.add_option("--batch", args.batch, "number of images (classes repeat to fill it)");
  app.add_option("--method", args.method, "baseline, ilf or cache (overrides sampling.method)");
  app.add_option("--weights", args.weights, "backbone weights (overrides weights)");
  app.add_option("--feedback", args.feedback, "feedback module weights (overrides ilf.feedback_weights)");
  app.add_option("--out", args.out, "output PNG")->capture_default_str();
  app.add_option("--device", args.device, "cpu or cuda")->capture_default_str();
  app.add_flag("--plan", args.plan, "print the per-step plan and block forwards as JSON; loads no weights");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(args);
  } catch (const std::exception& e) {
    std::cerr << "ilf_sample: error: " << e.what() << std::endl;
    return 1;
  }
}
