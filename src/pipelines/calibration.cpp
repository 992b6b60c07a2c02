// Calibration of the acceleration methods (see include/ilf/pipelines/calibration.h).
#include "ilf/pipelines/calibration.h"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "ilf/accel/teacache.h"
#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/pipelines/class_to_image.h"
#include "ilf/pipelines/evaluation.h"
#include "ilf/pipelines/text_to_image.h"
#include "ilf/util/device.h"
#include "ilf/sampling/sampler.h"

namespace ilf {

namespace {

// A non-finite coefficient is written as null (16 of them at exit 0 with guidance 1e308). `where`
// prefixes the message ("" or "<out>: ").
void require_finite_teacache_fit(const TeaCacheCalibration& c, const std::string& where) {
  const auto finite = [](const std::vector<double>& v) {
    return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
  };
  for (const auto& [name, values] : {std::pair<const char*, const std::vector<double>*>{"step pairs", &c.input_changes},
                                     {"step pairs", &c.output_changes},
                                     {"coefficients", &c.coefficients}})
    if (!finite(*values))
      throw Error(where + "TeaCache calibration: the fitted " + name +
                  " are not finite (NaN or Inf); nothing written (check the guidance scale and the weights)");
  if (!std::isfinite(c.rms_error))
    throw Error(where + "TeaCache calibration: the fit's rms error is not finite; nothing written");
}

}  // namespace

void write_teacache_calibration(const std::string& out, const TeaCacheCalibration& calibration) {
  require_finite_teacache_fit(calibration, out + ": ");
  write_file_atomically(out, [&](std::ostream& o) { o << calibration.file.dump(2) << "\n"; });
}

std::string default_teacache_calibration_path(const RunConfig& config) {
  if (config.weights.empty()) throw Error(config.source + ": \"weights\" is not set (the calibration goes next to them)");
  return (std::filesystem::path(config.weights).parent_path() / "teacache.json").string();
}

void check_not_replacing_a_model_file(const std::string& out, const RunConfig& config, bool overwrite) {
  if (overwrite || config.weights.empty()) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path target = fs::weakly_canonical(resolve_output_path(out), ec);
  if (ec || !fs::exists(target, ec)) return;
  const fs::path model_folder = fs::weakly_canonical(fs::path(config.weights).parent_path(), ec);
  if (ec || target.parent_path() != model_folder) return;
  throw Error(out + ": would replace a file of the model in " + model_folder.string() +
              " (shipped with it); write elsewhere with --out, or pass --overwrite-model-file to replace it");
}

TeaCacheCalibration calibrate_teacache(const LoadedRunConfig& loaded, const CalibrationRequest& request) {
  if (request.num_samples < 1 || request.num_samples > kMaxEvalSamples)
    throw Error("--num-samples must be an integer from 1 to " + std::to_string(kMaxEvalSamples));
  if (request.batch < 1 || request.batch > kMaxBatch)
    throw Error("--batch must be an integer from 1 to " + std::to_string(kMaxBatch));
  if (request.degree < 0 || request.degree > 8) throw Error("--degree must be in [0, 8]");
  RunConfig config = loaded.config;
  config.sampling.method = "baseline";  // the recorder replaces it; no feedback weights are needed
  const torch::Device device = resolve_device(request.device);
  const bool text = !request.prompts.empty();
  TeaCacheCalibration c;
  // The recorder replaces the model's sampling method, which owns it: `install` keeps a view of it, and
  // its pairs are read before the model goes.
  const TeaCacheRecorder* recorder = nullptr;
  const auto install = [&](AccelerationMethodPtr& method) {
    auto owned = std::make_unique<TeaCacheRecorder>();
    recorder = owned.get();
    method = std::move(owned);
  };
  const auto keep_pairs = [&] {
    c.input_changes = recorder->input_changes();
    c.output_changes = recorder->output_changes();
  };

  if (text) {
    TextToImageModel model = load_text_to_image_model(config, device, loaded.folder ? &*loaded.folder : nullptr);
    install(model.sampling.method);
    for (int64_t i = 0; i < request.num_samples; i += request.batch) {
      TextToImageRequest r;
      for (int64_t j = i; j < std::min(i + request.batch, request.num_samples); ++j) {
        r.prompts.push_back(request.prompts[static_cast<size_t>(j) % request.prompts.size()]);
        r.seeds.push_back(request.seed + static_cast<uint64_t>(j));
      }
      generate(model, r);
    }
    keep_pairs();
  } else {
    ClassToImageModel model = load_class_to_image_model(config, device);
    install(model.sampling.method);
    for (int64_t i = 0; i < request.num_samples; i += request.batch) {
      std::vector<int64_t> labels;
      for (int64_t j = i; j < std::min(i + request.batch, request.num_samples); ++j) labels.push_back(j % model.num_classes());
      generate(model, labels, request.seed + static_cast<uint64_t>(i));
    }
    keep_pairs();
  }

  if (static_cast<int64_t>(c.input_changes.size()) <= request.degree)
    throw Error("TeaCache calibration: " + std::to_string(c.input_changes.size()) + " step pairs recorded, a degree-" +
                std::to_string(request.degree) + " fit needs more (raise sampling.steps or --num-samples)");
  c.coefficients = fit_polynomial(c.input_changes, c.output_changes, request.degree);
  double squared = 0;
  for (size_t i = 0; i < c.input_changes.size(); ++i)
    squared += std::pow(evaluate_polynomial(c.coefficients, c.input_changes[i]) - c.output_changes[i], 2);
  c.rms_error = std::sqrt(squared / static_cast<double>(c.input_changes.size()));
  require_finite_teacache_fit(c, "");
  c.file = {{"format", "ilf.teacache"},
            {"coefficients", c.coefficients},
            {"weights", config.weights},
            {"kind", text ? "text-to-image" : "class-to-image"},
            {"steps", config.sampling.options.steps},
            {"guidance_scale", config.sampling.options.guidance_scale},
            {"solver", config.sampling.solver.solver},
            {"samples", request.num_samples},
            {"seed", request.seed},
            {"pairs", c.input_changes.size()},
            {"rms_error", c.rms_error},
            {"input_changes", c.input_changes},
            {"output_changes", c.output_changes}};
  return c;
}

}  // namespace ilf
