// ilf_calibrate: fits the per-model calibration of an acceleration method and writes it as a small JSON
// file (see pipelines/calibration.h). Today: TeaCache's polynomial.
//   ilf_calibrate --config configs/fashion_mnist.json --method teacache
//   ilf_calibrate --model-folder models/fashion_mnist_t2i --prompts-file models/fashion_mnist_t2i/captions_eval.txt
#include <CLI/CLI.hpp>
#include <iostream>

#include "ilf/io/atomic_file.h"
#include "ilf/pipelines/calibration.h"
#include "ilf/pipelines/text_to_image.h"
#include "ilf/sampling/sampler.h"
#include "tool_common.h"

using namespace ilf;

int main(int argc, char** argv) {
  CLI::App app{"ilf_calibrate: per-model calibration of an acceleration method (TeaCache's polynomial)"};
  std::string config, method = "teacache", out, model_folder, prompts_file;
  std::vector<std::string> overrides;
  CalibrationRequest request;
  app.add_option("--config", config, "run config (JSON); its sampling section (steps, solver, guidance) is calibrated");
  app.add_option("--set", overrides, "override a config value: key.path=value (repeatable)");
  app.add_option("--method", method, "the method to calibrate")->check(CLI::IsMember({"teacache"}))->capture_default_str();
  app.add_option("--model-folder", model_folder, "text-to-image: model folder with model.json");
  app.add_option("--prompts-file", prompts_file, "text-to-image: prompts, one per line (cycled over the samples)");
  app.add_option("--num-samples", request.num_samples, "images sampled")->capture_default_str()->transform(cli::Count);
  app.add_option("--batch", request.batch, "images per sampling run")
      ->capture_default_str()
      ->transform(cli::CountUpTo(kMaxBatch));
  app.add_option("--seed", request.seed, "base seed of the initial noise")->capture_default_str()->transform(cli::Seed);
  app.add_option("--degree", request.degree, "degree of the fitted polynomial")->capture_default_str();
  app.add_option("--out", out, "calibration file (default: teacache.json next to the backbone weights)")->check(cli::NonEmpty);
  bool overwrite_model_file = false;
  app.add_flag("--overwrite-model-file", overwrite_model_file,
               "replace an existing file in the folder of the backbone weights (the model's own teacache.json)");
  app.add_option("--device", request.device, "cpu, cuda or auto (CUDA when the build and machine have it)")
      ->capture_default_str();
  if (const int code = cli::parse(app, argc, argv, "ilf_calibrate"); code >= 0) return code;
  try {
    if (config.empty() && model_folder.empty()) throw Error("give --config or --model-folder");
    if (!model_folder.empty() && prompts_file.empty()) throw Error("--model-folder needs --prompts-file (text-to-image)");
    if (!prompts_file.empty()) request.prompts = read_prompts_file(prompts_file);
    const LoadedRunConfig loaded = load_tool_config(config, overrides, model_folder, "ilf_calibrate");
    // Checked before the calibration runs: the output can be written and replaces no shipped model file.
    if (out.empty()) out = default_teacache_calibration_path(loaded.config);
    check_output_path(out, "--out");
    check_not_replacing_a_model_file(out, loaded.config, overwrite_model_file);
    const TeaCacheCalibration c = calibrate_teacache(loaded, request);
    write_teacache_calibration(out, c);
    std::cout << "TeaCache calibration of " << loaded.config.weights << ": " << c.input_changes.size()
              << " step pairs, rms error " << c.rms_error << "; wrote " << out << "\n"
              << "use it with --set teacache.calibration=" << out << std::endl;
    return 0;
  } catch (...) {
    return cli::report_error("ilf_calibrate");
  }
}
