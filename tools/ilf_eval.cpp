// ilf_eval: evaluates one sampling setting of a class-conditional model against references:
//   - FID between generated samples and a reference image set, in the feature space of a TorchScript
//     feature extractor (its `features(x)` method; the standard Inception TorchScript works too);
//   - class accuracy of the samples, judged by the same module's `forward(x)` logits;
//   - fidelity to a reference sampler: MSE and PSNR against same-seed samples saved by an earlier run
//     (typically the 20-step baseline, written with --write-samples);
//   - block forwards and seconds per image, measured in the same run.
// Writes one JSON object to --out (atomically) and prints it.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <chrono>
#include <iostream>

#include "ilf/error.h"
#include "ilf/eval/metrics.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/run_config.h"
#include "ilf/io/safetensors.h"
#include "ilf/models/dit.h"
#include "ilf/sampling/model_loading.h"
#include "ilf/sampling/sampler.h"
#include "ilf/sampling/solvers.h"
#include "ilf/training/datasets.h"

using namespace ilf;

namespace {

struct Args {
  std::string config = "configs/fashion_mnist.json";
  std::vector<std::string> overrides;
  int64_t num_samples = 5000;
  int64_t batch = 500;
  uint64_t seed = 0;
  std::string out, write_samples, reference_samples, label, device = "cpu";
};

// The feature extractor sees images the way it was trained: center-cropped by `crop` pixels.
torch::Tensor crop(const torch::Tensor& images, int64_t pixels) {
  if (pixels == 0) return images;
  return images.slice(2, pixels, images.size(2) - pixels).slice(3, pixels, images.size(3) - pixels);
}

struct Judged {
  torch::Tensor features;  // (N, F)
  torch::Tensor predicted;  // (N,) int64
};

Judged judge(torch::jit::script::Module& extractor, const torch::Tensor& images, int64_t batch) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> features, predicted;
  for (int64_t i = 0; i < images.size(0); i += batch) {
    const torch::Tensor x = images.slice(0, i, std::min(i + batch, images.size(0)));
    features.push_back(extractor.run_method("features", x).toTensor());
    predicted.push_back(extractor.forward({x}).toTensor().argmax(1));
  }
  return {torch::cat(features), torch::cat(predicted)};
}

int run(const Args& args) {
  if (args.num_samples < 2) throw Error("--num-samples must be >= 2 (FID needs a covariance)");
  if (args.batch < 1) throw Error("--batch must be >= 1");
  const torch::Device device(args.device);
  ConfigReader reader(load_run_config(args.config, args.overrides), args.config);
  const SamplingOptions options = sampling_options_from_config(reader);
  SolverPtr solver = make_solver(SolverOptions::from_config(reader, "sampling"));
  BackbonePtr backbone = load_backbone_from_config(reader, device);
  FeedbackModule feedback = load_feedback_from_config(reader, *backbone, options, device);
  const std::string extractor_path =
      resolve_config_path(reader, reader.get<std::string>("eval.feature_extractor", "models/fashion_mnist/classifier.pt"));
  const int64_t crop_pixels = reader.get<int64_t>("eval.crop", 2);
  const std::string reference_set = reader.choice("eval.reference_set", "fashion_mnist_test", {"fashion_mnist_test"});
  const std::string dataset_folder = reader.get<std::string>("eval.dataset_folder", "/usr/share/datasets/fashion-mnist");
  finish_run_config(reader, {"training", "data", "vae", "text", "output"});
  if (backbone->family() != "dit") throw Error("ilf_eval evaluates class-conditional (DiT) models");
  const DiTConfig& dit = dynamic_cast<const DiTImpl&>(*backbone).config();

  torch::jit::script::Module extractor;
  try {
    extractor = torch::jit::load(extractor_path, device);
  } catch (const c10::Error& e) {
    throw Error(extractor_path + ": cannot load the TorchScript feature extractor (" + e.what_without_backtrace() + ")");
  }
  extractor.eval();

  // Generate: balanced classes (i % num_classes), one seeded generator per batch so that every
  // setting sees the same initial noise for the same sample index.
  std::vector<torch::Tensor> samples;
  std::vector<int64_t> labels;
  int64_t block_forwards_per_image = 0;
  double sampling_seconds = 0;
  for (int64_t start = 0; start < args.num_samples; start += args.batch) {
    const int64_t n = std::min(args.batch, args.num_samples - start);
    std::vector<int64_t> ys;
    for (int64_t i = start; i < start + n; ++i) ys.push_back(i % dit.num_classes);
    ConditionInputs inputs;
    inputs.class_labels = torch::tensor(ys, torch::kInt64).to(device);
    auto generator = at::detail::createCPUGenerator(args.seed + static_cast<uint64_t>(start));
    const torch::Tensor x_T = torch::randn({n, dit.in_channels, dit.input_size, dit.input_size}, generator).to(device);
    const auto t0 = std::chrono::steady_clock::now();
    SamplingResult result = sample(*backbone, feedback ? feedback.get() : nullptr, *solver, options, x_T, inputs,
                                   backbone->null_condition(inputs));
    sampling_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    block_forwards_per_image = result.block_forwards;
    samples.push_back(result.samples.clamp(-1, 1).to(torch::kCPU));
    labels.insert(labels.end(), ys.begin(), ys.end());
    std::cerr << "\rilf_eval: " << start + n << "/" << args.num_samples << " samples" << std::flush;
  }
  std::cerr << std::endl;
  const torch::Tensor images = torch::cat(samples);  // (N, C, H, W) in [-1, 1]
  if (!args.write_samples.empty()) write_safetensors(args.write_samples, {{"samples", images}}, {{"config", args.config}});

  // Quality: FID against the reference set, class accuracy.
  const Judged generated = judge(extractor, crop(images, crop_pixels).to(device), 1000);
  FashionMnistDataset test_set(dataset_folder, "test");
  std::vector<int64_t> all(static_cast<size_t>(test_set.size()));
  for (int64_t i = 0; i < test_set.size(); ++i) all[i] = i;
  const Judged reference = judge(extractor, crop(test_set.load(all).x0, crop_pixels).to(device), 1000);
  const double fid = frechet_distance(feature_statistics(generated.features), feature_statistics(reference.features));
  const double accuracy =
      generated.predicted.to(torch::kCPU).eq(torch::tensor(labels, torch::kInt64)).to(torch::kFloat64).mean().item<double>();

  nlohmann::json metrics = {{"label", args.label},
                            {"fid", fid},
                            {"class_accuracy", accuracy},
                            {"block_forwards", block_forwards_per_image},
                            {"seconds_per_image", sampling_seconds / static_cast<double>(args.num_samples)},
                            {"num_samples", args.num_samples},
                            {"reference_set", reference_set},
                            {"settings",
                             {{"method", to_string(options.method)},
                              {"steps", options.steps},
                              {"guidance_scale", options.guidance_scale},
                              {"solver", solver->name()},
                              {"t_post", to_string(options.t_post)},
                              {"loop", {options.loop_begin, options.loop_end}},
                              {"feedback_steps", to_string(options.feedback_steps.mode)},
                              {"feedback_count", options.feedback_steps.count},
                              {"cache", {to_string(options.cache.location), options.cache.num_blocks, options.cache.interval}}}}};
  if (!args.reference_samples.empty()) {
    const TensorMap ref = read_safetensors(args.reference_samples).tensors;
    const torch::Tensor& r = require_tensor(ref, "samples", args.reference_samples);
    if (r.sizes() != images.sizes())
      throw Error(args.reference_samples + ": reference samples have another shape than this run's (same --num-samples and model needed)");
    metrics["psnr_vs_reference"] = mean_psnr(images, r);
    metrics["mse_vs_reference"] = mean_squared_error(images, r);
  }
  const std::string text = metrics.dump(2);
  if (!args.out.empty()) write_file_atomically(args.out, [&](std::ostream& o) { o << text << "\n"; });
  std::cout << text << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ilf_eval: FID, class accuracy, fidelity and cost of one sampling setting"};
  Args args;
  app.add_option("--config", args.config, "run config (JSON)")->capture_default_str();
  app.add_option("--set", args.overrides, "override a config value: key.path=value (repeatable)");
  app.add_option("--num-samples", args.num_samples, "samples to generate")->capture_default_str();
  app.add_option("--batch", args.batch, "samples per sampling batch")->capture_default_str();
  app.add_option("--seed", args.seed, "base seed of the initial noise")->capture_default_str();
  app.add_option("--write-samples", args.write_samples, "save the generated samples (safetensors) for later fidelity runs");
  app.add_option("--reference-samples", args.reference_samples, "same-seed reference samples for MSE/PSNR");
  app.add_option("--label", args.label, "a name for this row in reports");
  app.add_option("--out", args.out, "metrics JSON file");
  app.add_option("--device", args.device, "cpu or cuda")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return run(args);
  } catch (const std::exception& e) {
    std::cerr << "ilf_eval: error: " << e.what() << std::endl;
    return 1;
  }
}
