// Text-to-image with PixArt-alpha / PixArt-Sigma (see include/ilf/pipelines/text_to_image.h).
#include "ilf/pipelines/text_to_image.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "ilf/accel/registry.h"
#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/json.h"
#include "ilf/models/loader.h"
#include "ilf/models/weights.h"

namespace ilf {

namespace {

// The 1024-pixel bins; the 512 and 256 ones are these halved and quartered (as in diffusers' tables).
const std::vector<AspectRatioBin> kBins1024 = {
    {0.25, 512, 2048}, {0.28, 512, 1856}, {0.32, 576, 1792}, {0.33, 576, 1728}, {0.35, 576, 1664}, {0.4, 640, 1600},
    {0.42, 640, 1536}, {0.48, 704, 1472}, {0.5, 704, 1408},  {0.52, 704, 1344}, {0.57, 768, 1344}, {0.6, 768, 1280},
    {0.68, 832, 1216}, {0.72, 832, 1152}, {0.78, 896, 1152}, {0.82, 896, 1088}, {0.88, 960, 1088}, {0.94, 960, 1024},
    {1.0, 1024, 1024}, {1.07, 1024, 960}, {1.13, 1088, 960}, {1.21, 1088, 896}, {1.29, 1152, 896}, {1.38, 1152, 832},
    {1.46, 1216, 832}, {1.67, 1280, 768}, {1.75, 1344, 768}, {2.0, 1408, 704},  {2.09, 1472, 704}, {2.4, 1536, 640},
    {2.5, 1600, 640},  {3.0, 1728, 576},  {4.0, 2048, 512}};
const std::vector<AspectRatioBin> kBins2048 = {
    {0.25, 1024, 4096}, {0.26, 1024, 3968}, {0.27, 1024, 3840}, {0.28, 1024, 3712}, {0.32, 1152, 3584}, {0.33, 1152, 3456},
    {0.35, 1152, 3328}, {0.4, 1280, 3200},  {0.42, 1280, 3072}, {0.48, 1408, 2944}, {0.5, 1408, 2816},  {0.52, 1408, 2688},
    {0.57, 1536, 2688}, {0.6, 1536, 2560},  {0.68, 1664, 2432}, {0.72, 1664, 2304}, {0.78, 1792, 2304}, {0.82, 1792, 2176},
    {0.88, 1920, 2176}, {0.94, 1920, 2048}, {1.0, 2048, 2048},  {1.07, 2048, 1920}, {1.13, 2176, 1920}, {1.21, 2176, 1792},
    {1.29, 2304, 1792}, {1.38, 2304, 1664}, {1.46, 2432, 1664}, {1.67, 2560, 1536}, {1.75, 2688, 1536}, {2.0, 2816, 1408},
    {2.09, 2944, 1408}, {2.4, 3072, 1280},  {2.5, 3200, 1280},  {2.89, 3328, 1152}, {3.0, 3456, 1152},  {3.11, 3584, 1152},
    {3.62, 3712, 1024}, {3.75, 3840, 1024}, {3.88, 3968, 1024}, {4.0, 4096, 1024}};

std::vector<AspectRatioBin> scaled_bins(const std::vector<AspectRatioBin>& bins, int64_t divisor) {
  std::vector<AspectRatioBin> out;
  for (const auto& b : bins) out.push_back({b.ratio, b.height / divisor, b.width / divisor});
  return out;
}

// A file from the config ("" = unset); missing files are collected in `missing`.
std::string config_file(const std::string& path, const std::string& key, bool required, std::vector<std::string>& missing) {
  if (path.empty()) {
    if (required) missing.push_back("\"" + key + "\" is not set");
    return "";
  }
  if (!std::filesystem::exists(path)) missing.push_back("\"" + key + "\": " + path + " does not exist");
  return path;
}

std::string size_text(ImageSize s) { return std::to_string(s.width) + "x" + std::to_string(s.height); }

}  // namespace

const std::vector<AspectRatioBin>& aspect_ratio_bins(int64_t resolution) {
  static const std::vector<AspectRatioBin> none, bins512 = scaled_bins(kBins1024, 2), bins256 = scaled_bins(kBins1024, 4);
  switch (resolution) {
    case 256: return bins256;
    case 512: return bins512;
    case 1024: return kBins1024;
    case 2048: return kBins2048;
    default: return none;
  }
}

ImageSize nearest_aspect_ratio_bin(int64_t height, int64_t width, const std::vector<AspectRatioBin>& bins) {
  if (bins.empty()) throw Error("nearest_aspect_ratio_bin: no bins");
  const double ratio = static_cast<double>(height) / static_cast<double>(width);
  const AspectRatioBin* best = &bins.front();
  for (const auto& b : bins)
    if (std::abs(b.ratio - ratio) < std::abs(best->ratio - ratio)) best = &b;
  return {best->height, best->width};
}

torch::Tensor resize_and_crop(const torch::Tensor& images, int64_t height, int64_t width) {
  const int64_t h = images.size(2), w = images.size(3);
  if (h == height && w == width) return images;
  const double ratio = std::max(static_cast<double>(height) / h, static_cast<double>(width) / w);
  const auto resized_h = static_cast<int64_t>(h * ratio), resized_w = static_cast<int64_t>(w * ratio);
  namespace F = torch::nn::functional;
  const torch::Tensor resized = F::interpolate(
      images,
      F::InterpolateFuncOptions().size(std::vector<int64_t>{resized_h, resized_w}).mode(torch::kBilinear).align_corners(false));
  const int64_t top = (resized_h - height) / 2, left = (resized_w - width) / 2;
  return resized.slice(2, top, top + height).slice(3, left, left + width);  // (B, C, height, width)
}

TextToImageModel load_text_to_image_model(const RunConfig& config, const torch::Device& device, const ModelFolder* folder) {
  // Every setting and file first, so that a missing part is reported before anything is loaded.
  std::vector<std::string> missing;
  const std::string weights_path = config_file(config.weights, "weights", true, missing);
  const std::string encoder_path = config_file(config.text.encoder, "text.encoder", true, missing);
  const std::string tokenizer_path = config_file(config.text.tokenizer, "text.tokenizer", true, missing);
  const std::string decoder_path = config_file(config.vae.decoder, "vae.decoder", true, missing);
  config_file(config.vae.encoder, "vae.encoder", false, missing);  // for data preparation; not loaded here
  const bool uses_feedback = find_acceleration_method(config.sampling.method).uses_feedback_module;
  const std::string feedback_path = config_file(config.ilf.weights, "ilf.feedback_weights", uses_feedback, missing);
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += "\n  - " + m;
    throw Error(
        config.source + ": the text-to-image model is incomplete:" + list +
        (uses_feedback && feedback_path.empty()
             ? "\n  (method " + config.sampling.method + " needs a trained feedback module: --feedback or ilf.feedback_weights)"
             : std::string()));
  }
  if (folder && !folder->device.empty() && torch::Device(folder->device).type() != device.type())
    throw Error(folder->manifest + ": its TorchScript modules were traced for " + folder->device +
                " (\"device\") and run only there: sample with --device " + folder->device +
                ", or export the folder again with --device " + device.str());
  if (folder) verify_model_folder_files(*folder);  // its files as recorded when it was made (corruption)
  TextEncoderOptions text_options;
  text_options.max_length = config.text.max_length.value_or(0);
  text_options.lowercase = config.text.lowercase;
  text_options.cache_capacity = config.text.cache_size;
  const std::string encoder_device = config.text.encoder_device.empty() ? device.str() : config.text.encoder_device;

  // The backbone, checked against the folder.
  TextToImageModel model;
  model.device = device;
  model.options = config.sampling.options;
  model.backbone = load_backbone(weights_path, config.model);
  if (model.backbone->condition_kind() != ConditionKind::kCaption)
    throw Error(weights_path + ": text-to-image needs a PixArt backbone; these weights are " + model.backbone->family());
  Backbone& backbone = *model.backbone;
  model.family = text_to_image_family_of_variant(backbone.variant()).name;
  const double family_scale = text_to_image_family(model.family).latent_scale;
  const double scale_factor = config.vae.scale_factor.value_or(family_scale);
  const int64_t downsampling = config.vae.downsampling;
  model.vae = std::make_shared<TorchScriptVae>(decoder_path, "", scale_factor, device, downsampling);
  if (folder) {
    if (folder->family != model.family)
      throw Error(folder->manifest + ": family " + folder->family + " but the backbone is a PixArt " + backbone.variant() +
                  " model (" + model.family + ")");
    if (folder->resolution != model.resolution())
      throw Error(folder->manifest + ": resolution " + std::to_string(folder->resolution) + " but the backbone's input_size " +
                  std::to_string(backbone.input_size()) + " makes " + std::to_string(model.resolution()) + "-pixel images");
  }
  if (text_options.max_length == 0) text_options.max_length = backbone.caption_length();
  if (text_options.max_length != backbone.caption_length())
    throw Error(config.source + ": \"text.max_length\" must be the backbone's caption length model.model_max_length = " +
                std::to_string(backbone.caption_length()) + " (got " + std::to_string(text_options.max_length) + ")");
  if (std::abs(scale_factor - family_scale) > 1e-9 && downsampling == kVaeDownsampling)
    spdlog::warn("vae.scale_factor {} is not the {} latent scale {}", scale_factor, model.family, family_scale);
  move_backbone(backbone, device, torch::kFloat32);
  backbone.eval();

  model.sampling = load_sampling(config, backbone, device);

  const torch::Device text_device(encoder_device);
  if (text_device.is_cuda() && !torch::cuda::is_available())
    throw Error(encoder_path + ": the text encoder runs on " + encoder_device +
                " (text.encoder_device / the model folder's \"device\") but CUDA is not available; "
                "re-export it for the CPU (scripts/export_pixart_model_folder.py --device cpu)");
  model.text_encoder = std::make_shared<TextEncoder>(encoder_path, tokenizer_path, text_options, text_device);
  if (folder && !folder->tokenizer_check.empty()) {
    const std::vector<std::string> different = model.text_encoder->tokenizer().mismatches(folder->tokenizer_check);
    for (const auto& prompt : different)
      spdlog::warn("{}: the tokenizer gives other ids than Hugging Face's T5Tokenizer for \"{}\" ({})", tokenizer_path, prompt,
                   folder->tokenizer_check);
  }

  // Probes: the text encoder's width (the empty prompt, which is also Sigma's null caption) and the VAE's output.
  const CaptionEmbeddings empty = model.text_encoder->encode({""});
  if (empty.features.size(2) != backbone.caption_channels())
    throw Error(encoder_path + ": the text encoder makes " + std::to_string(empty.features.size(2)) +
                "-dimensional features but the backbone (" + weights_path +
                ") expects caption_channels = " + std::to_string(backbone.caption_channels()));
  if (!model.uses_y_embedding_null_caption()) {
    ConditionInputs null;
    null.caption = empty.features[0].to(device);
    null.caption_mask = empty.mask[0].to(device);
    backbone.set_null_condition(null);
  }
  if (model.family == "pixart_alpha" && !model.uses_y_embedding_null_caption())
    spdlog::info("{}: no y_embedder.y_embedding in the weights; the null caption is the embedding of the empty prompt",
                 weights_path);
  const torch::Tensor probe =
      model.vae->decode(torch::zeros({1, backbone.in_channels(), 2, 2}, torch::TensorOptions().device(device)));
  if (probe.size(2) != 2 * downsampling || probe.size(3) != 2 * downsampling)
    throw Error(decoder_path + ": the VAE decoder turns a 2x2 latent into " + std::to_string(probe.size(3)) + "x" +
                std::to_string(probe.size(2)) + " pixels; expected " + std::to_string(downsampling) +
                "x upsampling (vae.downsampling)");
  return model;
}

ImageSize generation_size(const TextToImageModel& model, ImageSize requested, bool binning) {
  const Backbone& backbone = *model.backbone;
  const int64_t resolution = model.resolution();
  if (requested.height == 0) requested.height = resolution;
  if (requested.width == 0) requested.width = resolution;
  if (requested.height < 0 || requested.width < 0) throw Error("image size " + size_text(requested) + ": must be positive");
  ImageSize size = requested;
  if (binning && backbone.accepts_any_size() && !aspect_ratio_bins(resolution).empty())
    size = nearest_aspect_ratio_bin(requested.height, requested.width, aspect_ratio_bins(resolution));
  if (!backbone.accepts_any_size() && (size.height != resolution || size.width != resolution))
    throw Error("PixArt " + backbone.variant() + " at " + std::to_string(resolution) +
                " pixels has a fixed positional embedding and makes only " + std::to_string(resolution) + "x" +
                std::to_string(resolution) + " images (asked for " + size_text(requested) +
                "); the multi-scale models (PixArt-alpha 1024-MS, PixArt-Sigma) make other sizes");
  const int64_t step = model.vae->downsampling() * backbone.patch_size();
  if (size.height % step != 0 || size.width % step != 0)
    throw Error("image size " + size_text(size) + ": height and width must be multiples of " + std::to_string(step) + " (" +
                std::to_string(model.vae->downsampling()) + " pixels per latent x patch size " +
                std::to_string(backbone.patch_size()) + ")");
  return size;
}

ConditionInputs caption_conditions(TextToImageModel& model, const std::vector<std::string>& prompts, ImageSize size) {
  const CaptionEmbeddings e = model.text_encoder->encode(prompts);
  ConditionInputs inputs;
  inputs.caption = e.features.to(model.device);   // (B, L, C)
  inputs.caption_mask = e.mask.to(model.device);  // (B, L)
  if (model.backbone->uses_size_conditioning()) {
    const int64_t batch = static_cast<int64_t>(prompts.size());
    const auto options = torch::TensorOptions().dtype(torch::kFloat32).device(model.device);
    inputs.image_hw =
        torch::tensor({static_cast<float>(size.height), static_cast<float>(size.width)}, options).repeat({batch, 1});  // (B, 2)
    inputs.aspect_ratio =
        torch::full({batch, 1}, static_cast<double>(size.height) / static_cast<double>(size.width), options);  // (B, 1)
  }
  return inputs;
}

ConditionInputs null_caption_conditions(TextToImageModel& model, const ConditionInputs& cond,
                                        const std::optional<std::string>& negative_prompt) {
  if (negative_prompt) {
    const int64_t batch = cond.caption.size(0);
    const CaptionEmbeddings e = model.text_encoder->encode({*negative_prompt});
    ConditionInputs null = cond;
    null.caption = e.features.to(model.device).expand({batch, -1, -1}).contiguous();  // (B, L, C)
    null.caption_mask = e.mask.to(model.device).expand({batch, -1}).contiguous();     // (B, L)
    return null;
  }
  ConditionInputs null = model.backbone->null_condition(cond);
  // PixArt-alpha's learned null caption takes each image's own caption mask (official inference).
  if (model.uses_y_embedding_null_caption()) null.caption_mask = cond.caption_mask;
  return null;
}

TextToImageResult generate(TextToImageModel& model, const TextToImageRequest& request, const ProgressCallback& progress) {
  const SamplingOptions& options = model.options;
  if (request.prompts.empty()) throw Error("text-to-image: no prompts");
  if (request.seeds.size() != request.prompts.size())
    throw Error("text-to-image: " + std::to_string(request.prompts.size()) + " prompts but " +
                std::to_string(request.seeds.size()) + " seeds (one per image)");
  TextToImageResult result;
  result.generated = generation_size(model, {request.height, request.width}, request.resolution_binning);
  result.requested = {request.height == 0 ? model.resolution() : request.height,
                      request.width == 0 ? model.resolution() : request.width};

  const ConditionInputs cond = caption_conditions(model, request.prompts, result.generated);
  const bool guided = options.guidance_scale != 1.0;
  const ConditionInputs null = guided ? null_caption_conditions(model, cond, request.negative_prompt) : ConditionInputs{};

  // Each image's noise from its own seed, so that an image does not depend on the batch it is in.
  const int64_t channels = model.backbone->in_channels();
  const int64_t d = model.vae->downsampling();
  const int64_t h = result.generated.height / d, w = result.generated.width / d;
  std::vector<torch::Tensor> noise;
  for (uint64_t seed : request.seeds) {
    auto generator = at::detail::createCPUGenerator(seed);
    noise.push_back(torch::randn({1, channels, h, w}, generator));
  }
  const torch::Tensor x_T = torch::cat(noise).to(model.device);  // (B, C, h, w)

  result.sampling = sample(*model.backbone, *model.sampling.method, *model.sampling.solver, options, x_T, cond, null, progress);
  const torch::Tensor images = model.vae->decode(result.sampling.samples);  // (B, 3, 8h, 8w)
  result.images = resize_and_crop(images, result.requested.height, result.requested.width);
  return result;
}

std::vector<std::string> read_prompts_file(const std::string& path) {
  require_regular_file(path, "prompts file");  // a fifo would block the open, a folder read as empty
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read the prompts file");
  std::vector<std::string> prompts;
  std::string line;
  int64_t number = 0;
  auto finish = [&] {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    // Found here, not when the PNG metadata is written after the sampling ran (a json type_error 316).
    if (!is_valid_utf8(line))
      throw Error(path + ": line " + std::to_string(number) + " is not valid UTF-8 text (prompts must be UTF-8)");
    if (line.find_first_not_of(" \t") != std::string::npos) prompts.push_back(line);
    line.clear();
  };
  // Read with the limit applied while reading: one huge line never fills the memory.
  for (std::istreambuf_iterator<char> it(in), end; it != end; ++it) {
    if (*it == '\n') {
      finish();
      continue;
    }
    if (line.size() >= kMaxPromptLineBytes)
      throw Error(path + ": line " + std::to_string(number + 1) + " is longer than the limit of " +
                  std::to_string(kMaxPromptLineBytes) + " bytes (a prompt is truncated to the model's caption length anyway)");
    line.push_back(*it);
  }
  if (!line.empty()) finish();
  if (prompts.empty()) throw Error(path + ": the prompts file has no prompts (one per line)");
  return prompts;
}

}  // namespace ilf
