// Evaluation of a sampling setting (see include/ilf/pipelines/evaluation.h).
#include "ilf/pipelines/evaluation.h"

#include <torch/script.h>

#include <chrono>
#include <cmath>
#include <map>

#include "ilf/error.h"
#include "ilf/eval/metrics.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/safetensors.h"
#include "ilf/pipelines/class_to_image.h"
#include "ilf/pipelines/text_to_image.h"
#include "ilf/sampling/sampler.h"
#include "ilf/text/text_encoder.h"
#include "ilf/training/datasets.h"
#include "ilf/util/checks.h"
#include "ilf/util/progress.h"
#include "ilf/util/device.h"
#include "ilf/util/strings.h"

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
  require_regular_file(path, "TorchScript feature extractor");
  try {
    torch::jit::script::Module extractor = torch::jit::load(path, device);
    extractor.eval();
    require_finite_module(extractor, path);
    return extractor;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(path + ": cannot load the TorchScript feature extractor (" + short_torch_error(e) + ")");
  }
}

// The mean block forwards per image: an integer when every batch cost the same (all methods but those
// that decide while sampling, such as TeaCache).
nlohmann::json block_forwards_per_image(int64_t total, int64_t images) {
  if (total % images == 0) return total / images;
  return static_cast<double>(total) / static_cast<double>(images);
}

}  // namespace

namespace {

// What the generation loops of both kinds hand to the scoring.
struct Generated {
  torch::Tensor images;  // (N, C, H, W) in [-1, 1], CPU
  std::vector<int64_t> labels;
  int64_t block_forwards = 0;  // summed over the images
  double seconds = 0;
  nlohmann::json settings;
};

nlohmann::json score(const RunConfig& config, const EvalRequest& request, EvalReference& ref, const Generated& g) {
  const EvalSection& eval = config.eval;
  if (eval.feature_extractor != ref.eval.feature_extractor || eval.crop != ref.eval.crop ||
      eval.dataset_folder != ref.eval.dataset_folder || resolve_device(request.device) != ref.device)
    throw Error(config.source + ": evaluated against a reference loaded for another \"eval\" section or device");
  check_and_write_evaluation_samples(g.images, request.write_samples, config.source);

  // Quality: FID against the reference set (judged by the first evaluation), class accuracy.
  const Judged generated = judge(*ref.extractor, crop(g.images, eval.crop).to(ref.device), 1000);
  if (!ref.statistics) {
    FashionMnistDataset test_set(eval.dataset_folder, "test");
    std::vector<int64_t> all(static_cast<size_t>(test_set.size()));
    for (int64_t i = 0; i < test_set.size(); ++i) all[static_cast<size_t>(i)] = i;
    ref.statistics =
        feature_statistics(judge(*ref.extractor, crop(test_set.load(all).x0, eval.crop).to(ref.device), 1000).features);
    ++ref.reference_judgements;
  }
  const double fid = frechet_distance(feature_statistics(generated.features), *ref.statistics);
  const double accuracy =
      generated.predicted.to(torch::kCPU).eq(torch::tensor(g.labels, torch::kInt64)).to(torch::kFloat64).mean().item<double>();

  nlohmann::json metrics = {{"label", request.label},
                            {"fid", fid},
                            {"class_accuracy", accuracy},
                            {"block_forwards", block_forwards_per_image(g.block_forwards, request.num_samples)},
                            {"seconds_per_image", g.seconds / static_cast<double>(request.num_samples)},
                            {"num_samples", request.num_samples},
                            {"reference_set", config.eval.reference_set},
                            {"settings", g.settings}};
  if (!request.reference_samples.empty()) {
    const TensorMap ref = read_safetensors(request.reference_samples).tensors;
    const torch::Tensor& r = require_tensor(ref, "samples", request.reference_samples);
    require_finite(r, request.reference_samples + ": tensor \"samples\"");
    if (r.sizes() != g.images.sizes())
      throw Error(request.reference_samples +
                  ": reference samples have another shape than this run's (same --num-samples and model needed)");
    metrics["psnr_vs_reference"] = mean_psnr(g.images, r);
    metrics["mse_vs_reference"] = mean_squared_error(g.images, r);
  }
  check_evaluation_metrics(metrics);
  return metrics;
}

// The prompts round-robin over their classes (first caption of each class in class order, then the
// second, ...), so that any number of samples is as balanced as the file allows.
std::vector<LabelledPrompt> interleave_classes(const std::vector<LabelledPrompt>& prompts) {
  std::map<int64_t, std::vector<LabelledPrompt>> by_class;
  for (const auto& p : prompts) by_class[p.label].push_back(p);
  std::vector<LabelledPrompt> order;
  for (size_t round = 0; order.size() < prompts.size(); ++round)
    for (const auto& [label, list] : by_class)
      if (round < list.size()) order.push_back(list[round]);
  return order;
}

void check_request(const EvalRequest& request) {
  if (request.num_samples < 2) throw Error("--num-samples must be >= 2 (FID needs a covariance)");
  if (request.batch < 1 || request.batch > kMaxBatch)
    throw Error("--batch must be an integer from 1 to " + std::to_string(kMaxBatch) + " (got " + std::to_string(request.batch) +
                ")");
  if (request.num_samples > kMaxEvalSamples)
    throw Error("--num-samples must be at most " + std::to_string(kMaxEvalSamples) + " (got " +
                std::to_string(request.num_samples) + ")");
}

}  // namespace

void check_and_write_evaluation_samples(const torch::Tensor& samples, const std::string& write_samples,
                                        const std::string& config_source) {
  require_finite(samples, "evaluation: the generated samples");  // nothing non-finite is scored or written
  if (!write_samples.empty()) write_safetensors(write_samples, {{"samples", samples}}, {{"config", config_source}});
}

void check_evaluation_metrics(const nlohmann::json& metrics) {
  // A NaN metric would be written as null at exit 0 (a PSNR of +inf is identical images, and stays).
  for (const char* key : {"fid", "class_accuracy", "psnr_vs_reference", "mse_vs_reference"})
    if (metrics.contains(key) && metrics.at(key).is_number_float() &&
        (std::string(key) == "psnr_vs_reference" ? std::isnan(metrics.at(key).get<double>())
                                                 : !std::isfinite(metrics.at(key).get<double>())))
      throw Error(std::string("evaluation: the metric \"") + key + "\" is not finite (" +
                  number_text(metrics.at(key).get<double>()) + ")");
}

int64_t extractor_classes(EvalReference& ref) {
  if (ref.classes > 0) return ref.classes;
  torch::NoGradGuard no_grad;
  FashionMnistDataset test_set(ref.eval.dataset_folder, "test");
  const torch::Tensor one = crop(test_set.load({0}).x0, ref.eval.crop).to(ref.device);
  const torch::Tensor logits = ref.extractor->forward({one}).toTensor();
  if (logits.dim() != 2 || logits.size(1) < 1)
    throw Error(ref.eval.feature_extractor + ": the feature extractor's forward(x) must return (N, classes) logits");
  ref.classes = logits.size(1);
  return ref.classes;
}

EvalReference load_eval_reference(const RunConfig& config, const torch::Device& device) {
  EvalReference r;
  r.eval = config.eval;
  r.device = device;
  r.extractor = std::make_shared<torch::jit::script::Module>(load_extractor(config.eval.feature_extractor, device));
  return r;
}

nlohmann::json evaluate_class_to_image(const RunConfig& config, const EvalRequest& request) {
  check_request(request);
  const torch::Device device = resolve_device(request.device);
  ClassToImageModel model = load_class_to_image_model(config, device);
  EvalReference reference = load_eval_reference(config, device);  // a bad extractor fails before sampling
  return evaluate_class_to_image(model, config, request, reference);
}

nlohmann::json evaluate_class_to_image(ClassToImageModel& model, const RunConfig& config, const EvalRequest& request,
                                       EvalReference& reference) {
  check_request(request);
  Generated g;
  std::vector<torch::Tensor> samples;
  Progress progress(request.quiet ? Progress::Mode::kQuiet : Progress::Mode::kAuto);
  for (int64_t start = 0; start < request.num_samples; start += request.batch) {
    const int64_t n = std::min(request.batch, request.num_samples - start);
    std::vector<int64_t> ys;
    for (int64_t i = start; i < start + n; ++i) ys.push_back(i % model.num_classes());
    const auto t0 = std::chrono::steady_clock::now();
    const ClassToImageResult result = generate(model, ys, request.seed + static_cast<uint64_t>(start));
    g.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    g.block_forwards += result.sampling.block_forwards * n;
    samples.push_back(result.images.clamp(-1, 1).to(torch::kCPU));
    g.labels.insert(g.labels.end(), ys.begin(), ys.end());
    progress.update("ilf_eval: " + std::to_string(start + n) + "/" + std::to_string(request.num_samples) + " samples", start + n,
                    request.num_samples);
  }
  g.images = torch::cat(samples);  // (N, C, H, W) in [-1, 1]
  g.settings = generation_settings(config, *model.sampling.method, *model.sampling.solver);
  return score(config, request, reference, g);
}

std::vector<LabelledPrompt> read_labelled_prompts(const std::string& path) {
  std::vector<LabelledPrompt> prompts;
  const std::vector<std::string> lines = read_prompts_file(path);
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto tab = lines[i].find('\t');
    LabelledPrompt p;
    try {
      if (tab == std::string::npos) throw std::invalid_argument("no tab");
      size_t used = 0;
      p.label = std::stoll(lines[i].substr(0, tab), &used);
      if (used != tab || p.label < 0) throw std::invalid_argument("not a class");
    } catch (const std::exception&) {
      throw Error(path + ": line " + std::to_string(i + 1) + " must be \"class<TAB>caption\" with a class index >= 0, got \"" +
                  abbreviated(lines[i]) + "\"");
    }
    p.prompt = lines[i].substr(tab + 1);
    p.where = path + ": line " + std::to_string(i + 1);
    prompts.push_back(p);
  }
  if (prompts.empty()) throw Error(path + ": no prompts");
  return prompts;
}

nlohmann::json evaluate_text_to_image(const LoadedRunConfig& loaded, const std::vector<LabelledPrompt>& prompts,
                                      const EvalRequest& request) {
  check_request(request);
  if (prompts.empty()) throw Error("text-to-image evaluation: no prompts");
  const torch::Device device = resolve_device(request.device);
  TextToImageModel model = load_text_to_image_model(loaded.config, device, loaded.folder ? &*loaded.folder : nullptr);
  EvalReference reference = load_eval_reference(loaded.config, device);  // a bad extractor fails before sampling
  return evaluate_text_to_image(model, loaded, prompts, request, reference);
}

nlohmann::json evaluate_text_to_image(TextToImageModel& model, const LoadedRunConfig& loaded,
                                      const std::vector<LabelledPrompt>& prompts, const EvalRequest& request,
                                      EvalReference& reference) {
  check_request(request);
  if (prompts.empty()) throw Error("text-to-image evaluation: no prompts");
  const RunConfig& config = loaded.config;
  // Before sampling: a class the extractor cannot predict would only score 0 % accuracy.
  const int64_t classes = extractor_classes(reference);
  for (const LabelledPrompt& p : prompts)
    if (p.label >= classes)
      throw Error((p.where.empty() ? std::string("a labelled prompt") : p.where) + ": class " + std::to_string(p.label) +
                  ", but the feature extractor " + reference.eval.feature_extractor + " judges " + std::to_string(classes) +
                  " classes (0.." + std::to_string(classes - 1) + ")");
  const std::vector<LabelledPrompt> order = interleave_classes(prompts);
  Generated g;
  std::vector<torch::Tensor> samples;
  Progress progress(request.quiet ? Progress::Mode::kQuiet : Progress::Mode::kAuto);
  for (int64_t start = 0; start < request.num_samples; start += request.batch) {
    const int64_t n = std::min(request.batch, request.num_samples - start);
    TextToImageRequest r;
    for (int64_t i = start; i < start + n; ++i) {
      const LabelledPrompt& p = order[static_cast<size_t>(i) % order.size()];
      r.prompts.push_back(p.prompt);
      r.seeds.push_back(request.seed + static_cast<uint64_t>(i));
      g.labels.push_back(p.label);
    }
    const auto t0 = std::chrono::steady_clock::now();
    const TextToImageResult result = generate(model, r);
    g.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    g.block_forwards += result.sampling.block_forwards * n;
    samples.push_back(result.images.clamp(-1, 1).to(torch::kCPU));
    progress.update("ilf_eval: " + std::to_string(start + n) + "/" + std::to_string(request.num_samples) + " samples", start + n,
                    request.num_samples);
  }
  g.images = torch::cat(samples);
  g.settings = generation_settings(config, *model.sampling.method, *model.sampling.solver);
  if (loaded.folder) g.settings["model_folder"] = loaded.folder->path;
  return score(config, request, reference, g);
}

}  // namespace ilf
