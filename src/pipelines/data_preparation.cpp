// Data preparation: images (+ labels or captions) -> ilf_train shards (see
// include/ilf/pipelines/data_preparation.h).
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_STATIC
#include "ilf/pipelines/data_preparation.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#if __has_include(<stb/stb_image.h>)
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#else
#include <stb_image.h>
#include <stb_image_resize.h>
#endif

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "ilf/config/run_config.h"
#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/image.h"
#include "ilf/io/safetensors.h"
#include "ilf/models/vae.h"
#include "ilf/sampling/sampler.h"
#include "ilf/text/text_encoder.h"
#include "ilf/training/datasets.h"
#include "ilf/util/device.h"
#include "ilf/util/checks.h"
#include "ilf/util/strings.h"

namespace ilf {

namespace fs = std::filesystem;

namespace {

struct Item {
  std::string path;
  int64_t label = -1;
  std::string caption;
};

bool is_image(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tga" || ext == ".gif";
}

std::vector<Item> list_items(const DataPreparationOptions& args, std::vector<std::string>* class_names) {
  std::vector<std::string> paths;
  for (const auto& entry : fs::recursive_directory_iterator(args.images))
    if (entry.is_regular_file() && is_image(entry.path())) paths.push_back(entry.path().string());
  std::sort(paths.begin(), paths.end());
  if (paths.empty()) throw Error(args.images + ": no images (png, jpg, bmp, tga, gif) found");

  std::map<std::string, int64_t> classes;
  if (args.labels_from_folders) {
    for (const auto& p : paths) classes[fs::relative(p, args.images).begin()->string()] = 0;
    int64_t next = 0;
    for (auto& [name, index] : classes) {
      index = next++;
      class_names->push_back(name);
    }
  }
  std::vector<Item> items;
  for (const auto& p : paths) {
    Item item;
    item.path = p;
    if (args.labels_from_folders) {
      const fs::path rel = fs::relative(p, args.images);
      if (std::distance(rel.begin(), rel.end()) < 2) throw Error(p + ": --labels-from-folders needs images inside class folders");
      item.label = classes.at(rel.begin()->string());
    }
    if (args.captions) {
      const fs::path txt = fs::path(p).replace_extension(".txt");
      std::error_code ec;
      if (!fs::exists(txt, ec)) throw Error(p + ": caption file " + txt.string() + " is missing");
      require_regular_file(txt.string(), "caption file");  // a folder read as an empty caption, a fifo blocked
      std::ifstream in(txt);
      if (!in) throw Error(p + ": caption file " + txt.string() + " cannot be read");
      std::getline(in, item.caption, '\0');
      while (!item.caption.empty() && std::isspace(static_cast<unsigned char>(item.caption.back()))) item.caption.pop_back();
    }
    items.push_back(std::move(item));
  }
  return items;
}

// Decodes an image to `channels` channels (3: RGB, 1: grey), resizes the shorter side to `resolution`
// and centre-crops: (channels, resolution, resolution) float32 in [-1, 1]; `original_hw` receives the
// source size. The size in the header, and after the resize, must stay within `max_pixels`.
torch::Tensor load_image(const std::string& path, int64_t resolution, int64_t channels, int64_t max_pixels,
                         std::pair<int64_t, int64_t>* original_hw) {
  require_regular_file(path, "image");
  std::vector<unsigned char> bytes;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot read the image");
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) throw Error(path + ": the image file is over 2 GiB");
  static const unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPngSignature, 8) == 0) check_png_container(path, bytes);
  int w = 0, h = 0, file_channels = 0;
  const int c = static_cast<int>(channels);
  const int size = static_cast<int>(bytes.size());
  if (!stbi_info_from_memory(bytes.data(), size, &w, &h, &file_channels) || w < 1 || h < 1)
    throw Error(path + ": cannot decode image (" + std::string(stbi_failure_reason() ? stbi_failure_reason() : "no size") + ")");
  // Limits from the header, before any pixel is decoded or resized.
  const double scale = static_cast<double>(resolution) / std::min(w, h);
  const double resized_w = std::max<double>(static_cast<double>(resolution), std::round(w * scale));
  const double resized_h = std::max<double>(static_cast<double>(resolution), std::round(h * scale));
  if (static_cast<double>(w) * h > static_cast<double>(max_pixels) || resized_w * resized_h > static_cast<double>(max_pixels))
    throw Error(path + ": image of " + std::to_string(w) + " x " + std::to_string(h) + " pixels (" +
                std::to_string(static_cast<int64_t>(resized_w)) + " x " + std::to_string(static_cast<int64_t>(resized_h)) +
                " after resizing its shorter side to " + std::to_string(resolution) + ") exceeds the limit of " +
                std::to_string(max_pixels) + " pixels (--max-image-pixels)");
  if (resized_w > std::numeric_limits<int>::max() || resized_h > std::numeric_limits<int>::max())
    throw Error(path + ": image of " + std::to_string(w) + " x " + std::to_string(h) + " pixels is too elongated to resize");
  unsigned char* pixels = stbi_load_from_memory(bytes.data(), size, &w, &h, &file_channels, c);
  if (!pixels) throw Error(path + ": cannot decode image (" + std::string(stbi_failure_reason()) + ")");
  *original_hw = {h, w};
  const int rw = static_cast<int>(resized_w);
  const int rh = static_cast<int>(resized_h);
  std::vector<unsigned char> resized(static_cast<size_t>(rw) * rh * c);
  const int ok = stbir_resize_uint8(pixels, w, h, 0, resized.data(), rw, rh, 0, c);
  stbi_image_free(pixels);
  if (!ok) throw Error(path + ": resizing failed");
  const int x0 = (rw - static_cast<int>(resolution)) / 2, y0 = (rh - static_cast<int>(resolution)) / 2;
  torch::Tensor hwc = torch::from_blob(resized.data(), {rh, rw, channels}, torch::kUInt8)
                          .slice(0, y0, y0 + resolution)
                          .slice(1, x0, x0 + resolution);                 // (res, res, c)
  return hwc.permute({2, 0, 1}).to(torch::kFloat32).div(127.5).sub(1.0);  // (c, res, res)
}

}  // namespace

void write_prepared_shard(const std::string& path, const torch::Tensor& latents, const ConditionInputs& condition,
                          const std::map<std::string, std::string>& metadata, int64_t first_index,
                          const std::string& first_image) {
  // NaN / Inf latents (an encoder or image that overflows) never reach a shard.
  const int64_t count = latents.dim() > 0 ? latents.size(0) : 1;
  require_finite(latents,
                 path + ": latents of images " + std::to_string(first_index) + " .. " + std::to_string(first_index + count - 1),
                 "nothing written; first image " + first_image);
  if (condition.caption.defined()) require_finite(condition.caption, path + ": caption features", "nothing written");
  write_shard(path, latents, condition, metadata);
}

void prepare_shards(const DataPreparationOptions& args) {
  if (args.labels_from_folders == args.captions) throw Error("choose exactly one of --labels-from-folders and --captions");
  // The ranges of the flags (tools/ilf_prepare_data.cpp checks them too), before any file is read.
  check_latent_scale(args.latent_scale, "--latent-scale");
  if (args.resolution < 1 || args.resolution > kMaxImageSide)
    throw Error("--resolution must be an integer from 1 to " + std::to_string(kMaxImageSide) + " (got " +
                std::to_string(args.resolution) + ")");
  if (args.batch < 1 || args.batch > kMaxBatch)
    throw Error("--batch must be an integer from 1 to " + std::to_string(kMaxBatch) + " (got " + std::to_string(args.batch) +
                ")");
  if (args.shard_size < 1) throw Error("--shard-size must be >= 1 (got " + std::to_string(args.shard_size) + ")");
  if (args.max_tokens < 1 || args.max_tokens > kMaxModelTokens)
    throw Error("--max-tokens must be an integer from 1 to " + std::to_string(kMaxModelTokens) + " (got " +
                std::to_string(args.max_tokens) + ")");
  if (args.captions && (args.text_encoder.empty() || args.tokenizer.empty()))
    throw Error("--captions needs --text-encoder and --tokenizer");
  if (args.channels != 1 && args.channels != 3) throw Error("--channels must be 1 or 3");
  if (args.max_image_pixels < 1) throw Error("--max-image-pixels must be >= 1");
  if (args.encoder_output != "mean" && args.encoder_output != "moments")
    throw Error("--encoder-output must be mean or moments (got " + args.encoder_output + ")");
  const torch::Device device = resolve_device(args.device, "--device");
  const torch::ScalarType store_type = args.dtype == "f32"    ? torch::kFloat32
                                       : args.dtype == "bf16" ? torch::kBFloat16
                                                              : torch::kFloat16;

  std::vector<std::string> class_names;
  std::vector<Item> items = list_items(args, &class_names);
  std::mt19937_64 rng(args.seed);
  std::shuffle(items.begin(), items.end(), rng);
  fs::create_directories(args.out);
  // ceil_div: (n + shard_size - 1) / shard_size overflowed at --shard-size 2^63-1 (one shard logged, none written).
  const int64_t num_shards = ceil_div(static_cast<int64_t>(items.size()), args.shard_size);
  spdlog::info("{} images{}; {} shard{} of up to {}", items.size(),
               args.labels_from_folders ? ", " + std::to_string(class_names.size()) + " classes" : std::string(", captions"),
               num_shards, num_shards == 1 ? "" : "s", std::min<int64_t>(args.shard_size, static_cast<int64_t>(items.size())));

  TorchScriptVae vae("", args.vae_encoder, args.latent_scale, device);
  std::unique_ptr<TextEncoder> text;
  if (args.captions) {
    TextEncoderOptions text_options;  // the sampling pipeline's prompt preprocessing, so training matches it
    text_options.max_length = args.max_tokens;
    text_options.cache_capacity = 0;  // captions rarely repeat
    text = std::make_unique<TextEncoder>(args.text_encoder, args.tokenizer, text_options, device);
    const CaptionEmbeddings empty = text->encode({""});
    write_safetensors((fs::path(args.out) / kNullCaptionFile).string(),
                      {{"caption", empty.features[0].cpu().contiguous()}, {"caption_mask", empty.mask[0].cpu().contiguous()}},
                      {{"format", "ilf.null_caption"}});
  }
  if (args.labels_from_folders) {
    const nlohmann::json classes = class_names;
    write_file_atomically((fs::path(args.out) / "classes.json").string(), [&](std::ostream& o) { o << classes.dump(1) << "\n"; });
  }

  torch::Generator generator = make_cpu_generator(mix_seed(args.seed, 1));
  for (int64_t k = 0; k < num_shards; ++k) {
    char name[64];
    std::snprintf(name, sizeof(name), "shard-%06lld.safetensors", static_cast<long long>(k));
    const std::string path = (fs::path(args.out) / name).string();
    if (fs::exists(path)) continue;  // finished by an earlier run (same seed -> same items)
    const int64_t count = static_cast<int64_t>(items.size());
    const int64_t begin = k * args.shard_size, end = begin + std::min<int64_t>(args.shard_size, count - begin);
    std::vector<torch::Tensor> latents, features, masks;
    std::vector<int64_t> labels;
    std::vector<float> image_hw, aspect;
    for (int64_t b = begin; b < end; b += args.batch) {
      const int64_t e = b + std::min(args.batch, end - b);
      std::vector<torch::Tensor> images;
      std::vector<std::string> captions;
      for (int64_t i = b; i < e; ++i) {
        std::pair<int64_t, int64_t> hw;
        images.push_back(load_image(items[i].path, args.resolution, args.channels, args.max_image_pixels, &hw));
        image_hw.push_back(static_cast<float>(hw.first));
        image_hw.push_back(static_cast<float>(hw.second));
        aspect.push_back(1.0f);  // centre-cropped squares: the aspect-ratio bucket 1.0
        labels.push_back(items[i].label);
        captions.push_back(items[i].caption);
      }
      const torch::Tensor batch_images = torch::stack(images);  // (B, c, res, res)
      latents.push_back(args.encoder_output == "moments" ? vae.encode_sample(batch_images, generator)
                                                         : vae.encode(batch_images).to(torch::kCPU));
      if (text) {
        const CaptionEmbeddings encoded = text->encode(captions);
        features.push_back(encoded.features.to(torch::kCPU, store_type));
        masks.push_back(encoded.mask.cpu());
      }
    }
    ConditionInputs condition;
    const int64_t n = end - begin;
    if (text) {
      condition.caption = torch::cat(features);
      condition.caption_mask = torch::cat(masks);
    } else {
      condition.class_labels = torch::tensor(labels, torch::kLong);
    }
    if (args.micro_conditions) {
      condition.image_hw = torch::tensor(image_hw).view({n, 2});
      condition.aspect_ratio = torch::tensor(aspect).view({n, 1});
    }
    // The latents are checked in the stored dtype (f16 overflows above 65504).
    write_prepared_shard(path, torch::cat(latents).to(store_type), condition,
                         {{"latent_scale", std::to_string(args.latent_scale)}, {"resolution", std::to_string(args.resolution)}},
                         begin, items[static_cast<size_t>(begin)].path);
    spdlog::info("wrote {} ({} samples)", path, n);
  }
}

}  // namespace ilf
