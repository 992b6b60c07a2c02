// Sampling to PNG files (see include/ilf/pipelines/sample_files.h).
#include "ilf/pipelines/sample_files.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "ilf/error.h"
#include "ilf/io/image.h"
#include "ilf/io/json.h"
#include "ilf/pipelines/class_to_image.h"
#include "ilf/pipelines/model_folder.h"
#include "ilf/pipelines/text_to_image.h"
#include "ilf/util/device.h"
#include "ilf/sampling/sampler.h"
#include "ilf/util/checks.h"

namespace ilf {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// image (C, H, W) in [-1, 1]; enlarged (nearest neighbour) when the request asks for it and it is small.
// Enlarging before quantisation keeps each block equal to the original pixel's 8-bit value.
void write_sample_png(const std::string& path, const torch::Tensor& image, nlohmann::json settings, bool enlarge) {
  const int64_t factor = enlarge ? enlargement_factor(image.size(1), image.size(2), kMinWrittenSide) : 1;
  if (factor > 1) settings["enlarged"] = factor;
  write_png(path, enlarge_image(image, factor), {{"Software", "ilf_sample"}, {"ilf", settings.dump()}});
}

SampleFilesSummary write_class_to_image(const RunConfig& config, const SampleFilesRequest& request,
                                        const SampleFilesProgress& progress) {
  ClassToImageModel model = load_class_to_image_model(config, resolve_device(request.device));
  // Class labels: the requested ones, repeated up to the batch; default one of each class.
  std::vector<int64_t> classes = request.classes;
  if (classes.empty())
    for (int64_t c = 0; c < std::min(model.num_classes(), request.batch > 0 ? request.batch : model.num_classes()); ++c)
      classes.push_back(c);
  const int64_t batch = request.batch > 0 ? request.batch : static_cast<int64_t>(classes.size());
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(classes[static_cast<size_t>(i) % classes.size()]);
  for (int64_t y : labels)
    if (y < 0 || y >= model.num_classes())
      throw Error("--class " + std::to_string(y) + " is outside [0, " + std::to_string(model.num_classes()) + ")");

  const auto start = std::chrono::steady_clock::now();
  const ClassToImageResult result = generate(model, labels, request.seed, [&](int64_t k, int64_t n) {
    if (progress) progress(0, 1, k, n);
  });
  SampleFilesSummary summary;
  summary.seconds = seconds_since(start);
  nlohmann::json settings = generation_settings(config, *model.sampling.method, *model.sampling.solver);
  settings["seed"] = request.seed;
  settings["classes"] = labels;
  settings["block_forwards"] = result.sampling.block_forwards;
  if (!request.config_label.empty()) settings["config"] = request.config_label;
  summary.out = request.out.empty() ? "sample.png" : request.out;
  write_sample_png(summary.out, batch == 1 ? result.images[0] : make_image_grid(result.images), settings, request.enlarge);
  summary.images = batch;
  summary.block_forwards_per_run = summary.block_forwards = result.sampling.block_forwards;
  return summary;
}

SampleFilesSummary write_text_to_image(const LoadedRunConfig& loaded, const SampleFilesRequest& request,
                                       const SampleFilesProgress& progress) {
  if (!request.classes.empty())
    throw Error("--class is for class-to-image models; text-to-image takes --prompt or --prompts-file");
  if (request.prompt && !request.prompts_file.empty()) throw Error("give either --prompt or --prompts-file, not both");
  // Before any sampling: the PNG metadata holds the prompts as JSON text, which must be UTF-8.
  if (request.prompt && !is_valid_utf8(*request.prompt)) throw Error("--prompt: not valid UTF-8 text (prompts must be UTF-8)");
  if (request.negative_prompt && !is_valid_utf8(*request.negative_prompt))
    throw Error("--negative-prompt: not valid UTF-8 text (prompts must be UTF-8)");
  const RunConfig& config = loaded.config;
  TextToImageModel model =
      load_text_to_image_model(config, resolve_device(request.device), loaded.folder ? &*loaded.folder : nullptr);

  // A prompt: `batch` images of it in one PNG (a grid when several); a prompts file: one PNG per prompt
  // in the `out` folder, `batch` prompts per sampling run. Image i has seed + i.
  const bool from_file = !request.prompts_file.empty();
  const std::vector<std::string> prompts = from_file
                                               ? read_prompts_file(request.prompts_file)
                                               : std::vector<std::string>(std::max<int64_t>(request.batch, 1), *request.prompt);
  const auto total = static_cast<int64_t>(prompts.size());
  const int64_t per_run = from_file ? std::min(std::max<int64_t>(request.batch, 1), std::max<int64_t>(total, 1)) : total;
  SampleFilesSummary summary;
  summary.out = !request.out.empty() ? request.out : from_file ? "samples" : "sample.png";
  summary.images = total;
  const std::string& out = summary.out;
  if (from_file) {
    if (std::filesystem::path(out).extension() == ".png")
      throw Error("--out " + out + ": with --prompts-file, --out names a folder (one PNG per prompt)");
    std::filesystem::create_directories(out);
  }
  TextToImageRequest generation;
  generation.negative_prompt = request.negative_prompt;
  generation.height = request.height;
  generation.width = request.width;
  generation.resolution_binning = request.resolution_binning;
  const ImageSize generated = generation_size(model, {request.height, request.width}, generation.resolution_binning);
  spdlog::info("{} ({}), {} image{} at {}x{} (sampled at {}x{}), {} {} steps, guidance {}", model.family,
               model.backbone->variant(), total, total == 1 ? "" : "s", request.width ? request.width : model.resolution(),
               request.height ? request.height : model.resolution(), generated.width, generated.height, model.options.steps,
               model.sampling.method->name(), model.options.guidance_scale);

  nlohmann::json settings = text_to_image_png_settings(loaded, model, request.negative_prompt, request.config_label);

  const auto start = std::chrono::steady_clock::now();
  const int64_t runs = ceil_div(total, per_run);  // (total + per_run - 1) / per_run overflowed at --batch 2^63-1
  for (int64_t r = 0; r < runs; ++r) {
    const int64_t begin = r * per_run, end = std::min(total, begin + per_run);
    generation.prompts.assign(prompts.begin() + begin, prompts.begin() + end);
    generation.seeds.clear();
    for (int64_t i = begin; i < end; ++i) generation.seeds.push_back(request.seed + static_cast<uint64_t>(i));
    const TextToImageResult result = generate(model, generation, [&](int64_t k, int64_t n) {
      if (progress) progress(r, runs, k, n);
    });
    summary.block_forwards += result.sampling.block_forwards;
    summary.block_forwards_per_run = result.sampling.block_forwards;
    settings["block_forwards"] = result.sampling.block_forwards;  // one sampling run, as --plan counts them
    settings["width"] = result.requested.width;
    settings["height"] = result.requested.height;
    settings["sampled_size"] = {result.generated.width, result.generated.height};
    for (int64_t i = begin; from_file && i < end; ++i) {
      char name[32];
      std::snprintf(name, sizeof(name), "%05lld.png", static_cast<long long>(i));
      settings["prompt"] = prompts[static_cast<size_t>(i)];
      settings["seed"] = request.seed + static_cast<uint64_t>(i);
      settings["index"] = i;
      write_sample_png((std::filesystem::path(out) / name).string(), result.images[i - begin], settings, request.enlarge);
    }
    if (!from_file) {
      settings["prompt"] = *request.prompt;
      settings["seed"] = total == 1 ? nlohmann::json(request.seed) : nlohmann::json(generation.seeds);
      write_sample_png(out, total == 1 ? result.images[0] : make_image_grid(result.images), settings, request.enlarge);
    }
  }
  summary.seconds = seconds_since(start);
  return summary;
}

}  // namespace

namespace {

// load_sample_config and load_plan_config: `need_model` = text-to-image must have a model.
LoadedRunConfig load_config(Json json, const std::string& source, const SampleFilesRequest& request, bool need_model) {
  const bool text = request.text_to_image();
  if (text && !(json.contains("sampling") && json["sampling"].contains("guidance_scale")))
    json["sampling"]["guidance_scale"] = kTextToImageGuidanceScale;
  if (!text && (!request.model_folder.empty() || request.negative_prompt || request.height || request.width))
    throw Error("--model-folder, --negative-prompt, --height and --width are for text-to-image (--prompt or --prompts-file)");
  LoadedRunConfig loaded = load_tool_config(std::move(json), source, request.model_folder);
  if (need_model && text && !loaded.folder && loaded.config.weights.empty())
    throw Error(
        "text-to-image needs a model: --model-folder DIR (scripts/export_pixart_model_folder.py makes one from a "
        "PixArt checkpoint; see docs/text-to-image.md), or a --config that names one (\"model.folder\")");
  return loaded;
}

}  // namespace

LoadedRunConfig load_sample_config(Json json, const std::string& source, const SampleFilesRequest& request) {
  return load_config(std::move(json), source, request, true);
}

LoadedRunConfig load_plan_config(Json json, const std::string& source, const SampleFilesRequest& request) {
  // A folder without its model.json is not read: the plan goes on from the config's own keys.
  const std::string folder = model_folder_path(json, source, request.model_folder);
  if (folder.empty() || std::filesystem::exists(std::filesystem::path(folder) / "model.json"))
    return load_config(std::move(json), source, request, false);
  if (json.contains("model") && json["model"].is_object()) {
    json["model"].erase("folder");
    if (json["model"].empty()) json.erase("model");  // then the plan names the missing "model.depth"
  }
  SampleFilesRequest without_folder = request;
  without_folder.model_folder.clear();
  return load_config(std::move(json), source, without_folder, false);
}

Json text_to_image_png_settings(const LoadedRunConfig& loaded, const TextToImageModel& model,
                                const std::optional<std::string>& negative_prompt, const std::string& config_label) {
  nlohmann::json settings = generation_settings(loaded.config, *model.sampling.method, *model.sampling.solver);
  settings["family"] = model.family;
  settings["negative_prompt"] = negative_prompt ? nlohmann::json(*negative_prompt) : nlohmann::json(nullptr);
  settings["null_caption"] = negative_prompt                         ? "negative prompt"
                             : model.uses_y_embedding_null_caption() ? "y_embedding"
                                                                     : "empty prompt";
  if (!config_label.empty()) settings["config"] = config_label;
  if (loaded.folder) settings["model_folder"] = loaded.folder->path;
  return settings;
}

SampleFilesSummary write_sample_files(const LoadedRunConfig& loaded, const SampleFilesRequest& request,
                                      const SampleFilesProgress& progress) {
  if (request.batch < 0 || request.batch > kMaxBatch)
    throw Error("--batch must be an integer from 1 to " + std::to_string(kMaxBatch) + " (got " + std::to_string(request.batch) +
                ")");
  for (const auto& [flag, side] : {std::pair<const char*, int64_t>{"--height", request.height}, {"--width", request.width}})
    if (side < 0 || side > kMaxImageSide)
      throw Error(std::string(flag) + " must be an integer from 1 to " + std::to_string(kMaxImageSide) + " (got " +
                  std::to_string(side) + ")");
  return request.text_to_image() ? write_text_to_image(loaded, request, progress)
                                 : write_class_to_image(loaded.config, request, progress);
}

}  // namespace ilf
