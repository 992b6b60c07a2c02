// Evaluating one sampling setting of a class-conditional or a text-to-image model against references,
// what ilf_eval, the sweeps and the reports run:
//   - FID between generated samples and a reference image set, in the feature space of a TorchScript
//     feature extractor (its `features(x)` method; the standard Inception TorchScript works too);
//   - class accuracy of the samples, judged by the same module's `forward(x)` logits;
//   - fidelity to a reference sampler: MSE and PSNR against same-seed samples saved by an earlier run
//     (typically the 20-step baseline);
//   - block forwards and seconds per image, measured in the same run.
// Class-to-image: samples are generated in batches with balanced classes (sample i has class
// i % num_classes); batch b starts at sample s and draws its noise from seed + s, so every setting sees
// the same initial noise for the same sample index.
// Text-to-image: the prompts of a labelled prompts file (lines "class<TAB>caption", e.g.
// models/fashion_mnist_t2i/captions_eval.txt) are taken round-robin over the classes (the first caption
// of every class, then the second, ...; cycled), sample i with the noise of seed + i; the class is what
// the accuracy is judged against. The extractor sees the decoded images.
// A caller that evaluates many settings of one model (ilf_search) loads the model and an EvalReference
// once and passes them to every evaluation, so the reference images are judged once.
#pragma once
#include <torch/script.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "ilf/config/run_config.h"
#include "ilf/eval/metrics.h"
#include "ilf/pipelines/class_to_image.h"
#include "ilf/pipelines/loading.h"
#include "ilf/pipelines/text_to_image.h"

namespace ilf {

// The most samples one evaluation takes: 10^9, far above FID's 50,000 (larger counts overflowed the
// sample index arithmetic).
constexpr int64_t kMaxEvalSamples = 1000000000;

struct EvalRequest {
  int64_t num_samples = 5000;
  int64_t batch = 500;
  uint64_t seed = 0;
  std::string write_samples;      // save the samples (safetensors "samples") here ("" = no)
  std::string reference_samples;  // same-seed reference samples for MSE / PSNR ("" = none)
  std::string label;              // a name for this row in reports
  std::string device = "auto";    // "auto": CUDA when the build and machine have it (util/device.h)
  bool quiet = false;             // no "n/N samples" progress on stderr (util/progress.h otherwise)
};

// The metrics as JSON: label, fid, class_accuracy, block_forwards (mean per image), seconds_per_image, num_samples,
// reference_set, settings (the generation settings) and, with reference samples, psnr_vs_reference and
// mse_vs_reference. Throws ilf::Error naming the file or flag for bad inputs.
nlohmann::json evaluate_class_to_image(const RunConfig& config, const EvalRequest& request);

// A labelled prompt: the class its image should show, and the caption.
struct LabelledPrompt {
  int64_t label = 0;
  std::string prompt;
  std::string where;  // "<file>: line <n>" for messages (empty when not read from a file)
};
// Lines "class<TAB>caption"; errors name the file and line.
std::vector<LabelledPrompt> read_labelled_prompts(const std::string& path);

// The same metrics for a text-to-image model (a model folder or a config that names its files), its
// images generated from `prompts` as described at the top; settings also record the prompts file.
nlohmann::json evaluate_text_to_image(const LoadedRunConfig& loaded, const std::vector<LabelledPrompt>& prompts,
                                      const EvalRequest& request);

// The reference side of the judging ("eval": the feature extractor, the crop, the reference set), which
// evaluations of one model share: the extractor loaded once, the reference set's feature statistics
// computed by the first evaluation and kept.
struct EvalReference {
  EvalSection eval;
  torch::Device device{torch::kCPU};
  std::shared_ptr<torch::jit::script::Module> extractor;
  std::optional<FeatureStatistics> statistics;  // the reference set's, once judged
  int64_t reference_judgements = 0;             // how often the reference set was judged
  int64_t classes = 0;                          // classes the extractor judges (its logits), once known
};

// The number of classes reference.extractor judges (the width of its logits on one reference image);
// computed once and kept in reference.classes.
int64_t extractor_classes(EvalReference& reference);
// Loads config.eval's extractor on `device` (errors name the file); judges nothing yet.
EvalReference load_eval_reference(const RunConfig& config, const torch::Device& device);

// The evaluations above with a loaded model (its method, solver and options as `config` sets them) and a
// shared reference (loaded for the same "eval" section and device as request.device): the same metrics.
nlohmann::json evaluate_class_to_image(ClassToImageModel& model, const RunConfig& config, const EvalRequest& request,
                                       EvalReference& reference);
nlohmann::json evaluate_text_to_image(TextToImageModel& model, const LoadedRunConfig& loaded,
                                      const std::vector<LabelledPrompt>& prompts, const EvalRequest& request,
                                      EvalReference& reference);

// The checks at the end of every evaluation above, before anything is scored or written (exposed so
// that tests can hand them non-finite values, which finite weights, inputs and the sampler's per-step
// check no longer let through):
//  - the generated samples (N, C, H, W) must be finite: a NaN or Inf is refused with ilf::Error
//    "evaluation: the generated samples: holds N NaN or Inf values of M" before `write_samples` (when not
//    empty; safetensors "samples", metadata "config": `config_source`) is written;
//  - the metrics fid, class_accuracy and mse_vs_reference must be finite and psnr_vs_reference not NaN
//    (+inf is identical images): otherwise ilf::Error "evaluation: the metric "<key>" is not finite
//    (<value>)", so that a caller writes no metrics file (a NaN would be written as null).
void check_and_write_evaluation_samples(const torch::Tensor& samples, const std::string& write_samples,
                                        const std::string& config_source);
void check_evaluation_metrics(const nlohmann::json& metrics);

}  // namespace ilf
