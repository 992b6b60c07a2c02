// Evaluation of a sampling setting (see include/ilf/pipelines/evaluation.h).
#include "ilf/pipelines/evaluation.h"

#include <torch/script.h>

#include <chrono>
#include <iostream>

#include "ilf/error.h"
#include "ilf/eval/metrics.h"
#include "ilf/io/safetensors.h"
#include "ilf/pipelines/class_to_image.h"
#include "ilf/training/datasets.h"

namespace ilf {

namespace {

// The feature extractor sees images the way it was trained: center-cropped by `crop` pixels.
torch::Tensor crop(const torch::Tensor& images, int64_t pixels) {
  if (pixels == 0) return images;
  return images.slice(2, pixels, images.size(2) - pixels).slice(3, pixels, images.size(3) - pixels);
}

struct Judged {
  torch::Tensor features;   // (N, F)
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

torch::jit::script::Module load_extractor(const std::string& path, const torch::Device& device) {
  try {
    torch::jit::script::Module extractor = torch::jit::load(path, device);
    extractor.eval();
    return extractor;
  } catch (const c10::Error& e) {
    throw Error(path + ": cannot load the TorchScript feature extractor (" + e.what_without_backtrace() + ")");
  }
}

}  // namespace

nlohmann::json evaluate_class_to_image(const RunConfig& config, const EvalRequest& request) {
  if (request.num_samples < 2) throw Error("--num-samples must be >= 2 (FID needs a covariance)");
  if (request.batch < 1) throw Error("--batch must be >= 1");
  const torch::Device device(request.device);
  ClassToImageModel model = load_class_to_image_model(config, device);
  torch::jit::script::Module extractor = load_extractor(config.eval.feature_extractor, device);

  std::vector<torch::Tensor> samples;
  std::vector<int64_t> labels;
  int64_t block_forwards_per_image = 0;
  double sampling_seconds = 0;
  for (int64_t start = 0; start < request.num_samples; start += request.batch) {
    const int64_t n = std::min(request.batch, request.num_samples - start);
    std::vector<int64_t> ys;
    for (int64_t i = start; i < start + n; ++i) ys.push_back(i % model.num_classes());
    const auto t0 = std::chrono::steady_clock::now();
    const ClassToImageResult result = generate(model, ys, request.seed + static_cast<uint64_t>(start));
    sampling_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    block_forwards_per_image = result.sampling.block_forwards;
    samples.push_back(result.images.clamp(-1, 1).to(torch::kCPU));
    labels.insert(labels.end(), ys.begin(), ys.end());
    std::cerr << "\rilf_eval: " << start + n << "/" << request.num_samples << " samples" << std::flush;
  }
  std::cerr << std::endl;
  const torch::Tensor images = torch::cat(samples);  // (N, C, H, W) in [-1, 1]
  if (!request.write_samples.empty())
    write_safetensors(request.write_samples, {{"samples", images}}, {{"config", config.source}});

  // Quality: FID against the reference set, class accuracy.
  const Judged generated = judge(extractor, crop(images, config.eval.crop).to(device), 1000);
  FashionMnistDataset test_set(config.eval.dataset_folder, "test");
  std::vector<int64_t> all(static_cast<size_t>(test_set.size()));
  for (int64_t i = 0; i < test_set.size(); ++i) all[static_cast<size_t>(i)] = i;
  const Judged reference = judge(extractor, crop(test_set.load(all).x0, config.eval.crop).to(device), 1000);
  const double fid = frechet_distance(feature_statistics(generated.features), feature_statistics(reference.features));
  const double accuracy =
      generated.predicted.to(torch::kCPU).eq(torch::tensor(labels, torch::kInt64)).to(torch::kFloat64).mean().item<double>();

  nlohmann::json metrics = {{"label", request.label},
                            {"fid", fid},
                            {"class_accuracy", accuracy},
                            {"block_forwards", block_forwards_per_image},
                            {"seconds_per_image", sampling_seconds / static_cast<double>(request.num_samples)},
                            {"num_samples", request.num_samples},
                            {"reference_set", config.eval.reference_set},
                            {"settings", generation_settings(config, *model.sampling.method, *model.sampling.solver)}};
  if (!request.reference_samples.empty()) {
    const TensorMap ref = read_safetensors(request.reference_samples).tensors;
    const torch::Tensor& r = require_tensor(ref, "samples", request.reference_samples);
    if (r.sizes() != images.sizes())
      throw Error(request.reference_samples +
                  ": reference samples have another shape than this run's (same --num-samples and model needed)");
    metrics["psnr_vs_reference"] = mean_psnr(images, r);
    metrics["mse_vs_reference"] = mean_squared_error(images, r);
  }
  return metrics;
}

}  // namespace ilf
