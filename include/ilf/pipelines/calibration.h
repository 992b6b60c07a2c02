// Per-model calibration of the acceleration methods that need one, run by `ilf_calibrate`. Today that
// is TeaCache (accel/teacache.h): it samples with the plain method, records for every step the relative
// L1 change of the first block's modulated input (d) and of the block stack's residual (e) against the
// previous step, and fits e ~ p(d) with a least-squares polynomial. The result is a small JSON file
// ({"format": "ilf.teacache", "coefficients": [...], ...}) that "teacache.calibration" names; by
// default it goes next to the backbone weights as teacache.json.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "ilf/config/run_config.h"
#include "ilf/pipelines/loading.h"

namespace ilf {

struct CalibrationRequest {
  int64_t num_samples = 64;     // images sampled
  int64_t batch = 16;           // images per sampling run
  uint64_t seed = 0;            // batch i starts from the noise of seed + i * batch
  int64_t degree = 4;           // the polynomial's degree (TeaCache uses 4)
  std::string device = "auto";  // "auto": CUDA when the build and machine have it (util/device.h)
  // Text-to-image: the prompts, cycled over the samples. Empty: a class-to-image model, sampling its
  // classes in turn.
  std::vector<std::string> prompts;
};

struct TeaCacheCalibration {
  std::vector<double> coefficients;                   // highest degree first
  std::vector<double> input_changes, output_changes;  // the (d, e) pairs of the fit
  double rms_error = 0;                               // of the fit on its pairs
  nlohmann::json file;                                // what is written: format, coefficients, how it was made
};

// Calibrates TeaCache for the model of `config` with its sampling section (steps, solver, guidance);
// the config's method is ignored (the plain sampler is recorded). Throws ilf::Error naming the setting
// at fault.
TeaCacheCalibration calibrate_teacache(const LoadedRunConfig& loaded, const CalibrationRequest& request);

// Writes `calibration.file` to `out` as ilf_calibrate does: atomically (io/atomic_file.h), JSON indented
// by 2 and a newline. The fit must be finite: a NaN or Inf step pair, coefficient or rms error (JSON
// writes them as null: 16 null coefficients at exit 0 with guidance 1e308, before the guidance range)
// is refused before anything is written, with ilf::Error "<out>: TeaCache calibration: the fitted
// <step pairs | coefficients> are not finite ..." or "<out>: TeaCache calibration: the fit's rms error
// is not finite ...". calibrate_teacache makes the same check (without "<out>: ") before it returns.
void write_teacache_calibration(const std::string& out, const TeaCacheCalibration& calibration);

// The default calibration file of a config: teacache.json next to its backbone weights.
std::string default_teacache_calibration_path(const RunConfig& config);

// A shipped model file is an existing file in the folder of the model's backbone weights (a model
// folder such as models/fashion_mnist/ or a --model-folder): the calibration that came with the model.
// Throws ilf::Error naming `out` when writing it would replace such a file and `overwrite` is false
// (ilf_calibrate --overwrite-model-file); a new file there, or any file elsewhere, is fine.
void check_not_replacing_a_model_file(const std::string& out, const RunConfig& config, bool overwrite);

}  // namespace ilf
