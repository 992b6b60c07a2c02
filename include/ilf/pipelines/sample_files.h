// Sampling to PNG files, the whole of what `ilf_sample` does once its flags are read: class-to-image
// (a grid of class labels from one seed) or text-to-image (one prompt, or a prompts file with one PNG
// per prompt). Every PNG carries the settings that made it (JSON in a `tEXt` chunk named "ilf") so an
// image can be regenerated from its own metadata. The tool maps its flags onto a run config and this
// request; the library parts it calls are the class-to-image and text-to-image pipelines.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ilf/io/config.h"
#include "ilf/pipelines/loading.h"

namespace ilf {

// The PixArt pipelines' default guidance scale, used by text-to-image when the config sets none.
constexpr double kTextToImageGuidanceScale = 4.5;
// PNGs smaller than this on their shorter side are written enlarged by an integer factor (see `enlarge`);
// the factor is recorded in the "ilf" metadata as "enlarged" (absent when 1).
constexpr int64_t kMinWrittenSide = 256;

struct SampleFilesRequest {
  // Class-to-image: labels repeated to fill `batch`; empty = one image of each class (up to `batch`).
  std::vector<int64_t> classes;
  // Text-to-image: one prompt (`batch` images of it, a grid when several), or a file with one prompt
  // per line (one PNG each in the `out` folder, `batch` prompts per sampling run). Image i has seed + i.
  std::optional<std::string> prompt, negative_prompt;
  std::string prompts_file;
  int64_t height = 0, width = 0;   // 0 = the model's resolution
  bool resolution_binning = true;  // multi-scale models: sample at the nearest aspect-ratio bin
  std::string model_folder;        // text-to-image model folder (overrides "model.folder")

  uint64_t seed = 0;
  int64_t batch = 0;            // 0 = the default above
  std::string out;              // "" = sample.png (with a prompts file: the folder samples/)
  std::string device = "auto";  // "auto": CUDA when the build and machine have it (util/device.h)
  std::string config_label;     // the config file recorded in the PNG metadata ("" = none)
  // Small images are written enlarged (nearest neighbour, enlargement_factor: at least kMinWrittenSide px
  // on the shorter side of each PNG, a grid or a single image); false writes the sampled pixels as they are.
  bool enlarge = true;

  bool text_to_image() const { return prompt.has_value() || !prompts_file.empty(); }
};

// The run config of a sampling request: `json` (the config file with the tool's overrides written into
// it) completed by the request's model folder; text-to-image defaults the guidance scale to
// kTextToImageGuidanceScale. Throws ilf::Error on text-to-image flags without a prompt, or a prompt
// without a model. `source` names the config in messages.
LoadedRunConfig load_sample_config(Json json, const std::string& source, const SampleFilesRequest& request);

// The run config of `--plan`: like load_sample_config, but a plan needs only the architecture
// ("model.depth") and the sampling settings, no files: a model folder that is absent (no model.json) is
// dropped and planning goes on from the config's own keys; a folder that is there still supplies them.
LoadedRunConfig load_plan_config(Json json, const std::string& source, const SampleFilesRequest& request);

// Progress of sampling run `run` of `runs`: step k of n.
using SampleFilesProgress = std::function<void(int64_t run, int64_t runs, int64_t k, int64_t n)>;

struct SampleFilesSummary {
  std::string out;  // the PNG (or the folder of PNGs) written
  int64_t images = 0;
  int64_t block_forwards_per_run = 0;  // one sampling run, as --plan counts them
  int64_t block_forwards = 0;          // all runs
  double seconds = 0;
};

struct TextToImageModel;  // pipelines/text_to_image.h

// The "ilf" PNG metadata of text-to-image images that is the same for every image of a run: the
// generation settings (method, steps, solver, guidance), family, negative prompt, null caption, config
// (when `config_label` is not empty) and model folder. Callers add the image's prompt, seed and size.
Json text_to_image_png_settings(const LoadedRunConfig& loaded, const TextToImageModel& model,
                                const std::optional<std::string>& negative_prompt, const std::string& config_label);

// Loads the model of `loaded`, samples and writes the PNG(s). Errors name the flag or file at fault
// and leave no partial PNG.
SampleFilesSummary write_sample_files(const LoadedRunConfig& loaded, const SampleFilesRequest& request,
                                      const SampleFilesProgress& progress = nullptr);

}  // namespace ilf
