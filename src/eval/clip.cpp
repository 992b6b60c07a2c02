// CLIP in LibTorch, read from a Hugging Face CLIPModel folder, and the CLIP score / CLIP-IQA metrics
// (include/ilf/eval/clip.h): the metrics the paper reports next to ImageReward, computed from C++ with the
// reference's preprocessing, so that a prompt-set evaluation needs no Python.
// The towers are written as functions over the checkpoint's tensors (transformers' key names) rather
// than with the project's DiT layers, whose attention fuses q/k/v and whose norms have no affine weights:
// CLIP's pre-LayerNorm blocks with separate q/k/v projections are a few lines each.
#include "ilf/io/atomic_file.h"
#include "ilf/eval/clip.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ilf/error.h"
#include "ilf/eval/clip_tokenizer.h"
#include "ilf/io/json.h"
#include "ilf/io/safetensors.h"

namespace ilf {

// ClipModel's parts (in namespace ilf, not an anonymous one, as members of ClipModel).
enum class ClipActivation { kQuickGelu, kGelu, kGeluTanh };

struct ClipTowerConfig {
  int64_t hidden = 0, intermediate = 0, heads = 0, layers = 0;
  ClipActivation activation = ClipActivation::kQuickGelu;
  double eps = 1e-5;
};

class ClipModel {
 public:
  std::string folder;
  torch::Device device{torch::kCPU};
  ClipTowerConfig text, vision;
  int64_t vocab_size = 0, max_positions = 0, eos_token_id = 0, projection_dim = 0;
  int64_t image_size = 0, patch_size = 0;
  // preprocessing (preprocessor_config.json)
  int64_t shortest_edge = 224, crop_height = 224, crop_width = 224;
  std::vector<double> mean{0.48145466, 0.4578275, 0.40821073}, std{0.26862954, 0.26130258, 0.27577711};
  double rescale_factor = 1.0 / 255.0;
  TensorMap weights;  // on `device`, float32
  std::unique_ptr<ClipTokenizer> tokenizer;
  torch::Tensor iqa_anchors;  // (8, D) normalised text embeddings of kClipIqaPrompts, computed once
};

namespace {

std::string clip_read_file(const std::string& path, const std::string& folder) {
  require_regular_file(path, "CLIP folder file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("CLIP model " + folder + ": cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int64_t clip_int(const nlohmann::json& section, const char* key, int64_t fallback, const std::string& where) {
  if (!section.contains(key) || section[key].is_null()) return fallback;
  if (!section[key].is_number_integer()) throw Error(where + ": \"" + key + "\" must be an integer");
  return section[key].get<int64_t>();
}

ClipTowerConfig clip_tower_config(const nlohmann::json& section, const ClipTowerConfig& defaults, const std::string& where) {
  ClipTowerConfig c = defaults;
  c.hidden = clip_int(section, "hidden_size", c.hidden, where);
  c.intermediate = clip_int(section, "intermediate_size", c.intermediate, where);
  c.heads = clip_int(section, "num_attention_heads", c.heads, where);
  c.layers = clip_int(section, "num_hidden_layers", c.layers, where);
  if (section.contains("layer_norm_eps") && section["layer_norm_eps"].is_number())
    c.eps = section["layer_norm_eps"].get<double>();
  if (section.contains("hidden_act") && !section["hidden_act"].is_null()) {
    const auto act = section["hidden_act"].get<std::string>();
    if (act == "quick_gelu") {
      c.activation = ClipActivation::kQuickGelu;
    } else if (act == "gelu") {
      c.activation = ClipActivation::kGelu;
    } else if (act == "gelu_new" || act == "gelu_pytorch_tanh") {
      c.activation = ClipActivation::kGeluTanh;
    } else {
      throw Error(where + ": hidden_act \"" + act + "\" is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)");
    }
  }
  if (c.hidden <= 0 || c.heads <= 0 || c.hidden % c.heads != 0 || c.layers < 0 || c.intermediate <= 0)
    throw Error(where + ": hidden_size " + std::to_string(c.hidden) + " must be a positive multiple of num_attention_heads " +
                std::to_string(c.heads));
  return c;
}

// size / crop_size of preprocessor_config.json: an int or {"shortest_edge"} / {"height", "width"}.
void clip_read_preprocessor(ClipModel& m, const std::string& path) {
  const auto j = parse_json_strict(clip_read_file(path, m.folder), path);
  if (j.contains("size")) {
    const auto& s = j["size"];
    if (s.is_number_integer()) {
      m.shortest_edge = s.get<int64_t>();
    } else if (s.is_object() && s.contains("shortest_edge")) {
      m.shortest_edge = s["shortest_edge"].get<int64_t>();
    } else {
      throw Error(path + ": \"size\" must be an integer or {\"shortest_edge\": n} (CLIP resizes the shortest side)");
    }
  }
  if (j.contains("crop_size")) {
    const auto& s = j["crop_size"];
    if (s.is_number_integer()) {
      m.crop_height = m.crop_width = s.get<int64_t>();
    } else if (s.is_object() && s.contains("height") && s.contains("width")) {
      m.crop_height = s["height"].get<int64_t>();
      m.crop_width = s["width"].get<int64_t>();
    } else {
      throw Error(path + ": \"crop_size\" must be an integer or {\"height\", \"width\"}");
    }
  }
  for (const char* key : {"image_mean", "image_std"}) {
    if (!j.contains(key)) continue;
    const auto v = j[key].get<std::vector<double>>();
    if (v.size() != 3) throw Error(path + ": \"" + key + "\" must have 3 values");
    (std::string(key) == "image_mean" ? m.mean : m.std) = v;
  }
  if (j.contains("rescale_factor")) m.rescale_factor = j["rescale_factor"].get<double>();
  if (j.contains("resample") && j["resample"].is_number_integer() && j["resample"].get<int>() != 3)
    throw Error(path + ": only resample 3 (bicubic, CLIP's) is supported");
  for (const char* flag : {"do_resize", "do_center_crop", "do_rescale", "do_normalize"})
    if (j.contains(flag) && j[flag].is_boolean() && !j[flag].get<bool>())
      throw Error(path + ": \"" + flag + "\": false is not supported");
  if (m.shortest_edge < m.crop_height || m.shortest_edge < m.crop_width)
    throw Error(path + ": crop_size larger than size's shortest_edge is not supported");
}

void clip_expect(const ClipModel& m, const std::string& file, const std::string& key, std::vector<int64_t> shape) {
  const auto& t = require_tensor(m.weights, key, m.folder + "/" + file);
  if (t.sizes().vec() != shape) {
    std::ostringstream ss;
    ss << "CLIP model " << m.folder << ": " << file << " tensor \"" << key << "\" has shape " << t.sizes()
       << ", config.json implies " << torch::IntArrayRef(shape);
    throw Error(ss.str());
  }
}

void clip_expect_tower(const ClipModel& m, const std::string& file, const std::string& prefix, const ClipTowerConfig& c) {
  const int64_t d = c.hidden, f = c.intermediate;
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string p = prefix + ".encoder.layers." + std::to_string(i) + ".";
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      clip_expect(m, file, p + "self_attn." + proj + ".weight", {d, d});
      clip_expect(m, file, p + "self_attn." + proj + ".bias", {d});
    }
    for (const char* norm : {"layer_norm1", "layer_norm2"}) {
      clip_expect(m, file, p + norm + ".weight", {d});
      clip_expect(m, file, p + norm + ".bias", {d});
    }
    clip_expect(m, file, p + "mlp.fc1.weight", {f, d});
    clip_expect(m, file, p + "mlp.fc1.bias", {f});
    clip_expect(m, file, p + "mlp.fc2.weight", {d, f});
    clip_expect(m, file, p + "mlp.fc2.bias", {d});
  }
}

const torch::Tensor& clip_w(const ClipModel& m, const std::string& key) {
  return require_tensor(m.weights, key, m.folder + "/model.safetensors");
}

torch::Tensor clip_activate(const torch::Tensor& x, ClipActivation a) {
  switch (a) {
    case ClipActivation::kQuickGelu: return x * torch::sigmoid(1.702 * x);
    case ClipActivation::kGelu: return torch::gelu(x);
    case ClipActivation::kGeluTanh: return torch::gelu(x, "tanh");
  }
  return x;
}

// x (B, L, D) through the pre-LayerNorm blocks; mask (L, L) additive or undefined.
torch::Tensor clip_encoder(const ClipModel& m, torch::Tensor x, const std::string& prefix, const ClipTowerConfig& c,
                           const torch::Tensor& mask) {
  const int64_t b = x.size(0), l = x.size(1), d = c.hidden, h = c.heads, hd = d / h;
  const double scale = std::pow(static_cast<double>(hd), -0.5);
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string p = prefix + ".encoder.layers." + std::to_string(i) + ".";
    auto y = torch::layer_norm(x, {d}, clip_w(m, p + "layer_norm1.weight"), clip_w(m, p + "layer_norm1.bias"), c.eps);
    auto heads = [&](const char* proj) {  // (B, L, D) -> (B, H, L, hd)
      return torch::linear(y, clip_w(m, p + "self_attn." + proj + ".weight"), clip_w(m, p + "self_attn." + proj + ".bias"))
          .view({b, l, h, hd})
          .transpose(1, 2);
    };
    const auto q = heads("q_proj"), k = heads("k_proj"), v = heads("v_proj");
    auto logits = torch::matmul(q, k.transpose(-1, -2)) * scale;  // (B, H, L, L)
    if (mask.defined()) logits = logits + mask;
    auto attn = torch::matmul(torch::softmax(logits, -1), v).transpose(1, 2).reshape({b, l, d});  // (B, L, D)
    x = x + torch::linear(attn, clip_w(m, p + "self_attn.out_proj.weight"), clip_w(m, p + "self_attn.out_proj.bias"));
    y = torch::layer_norm(x, {d}, clip_w(m, p + "layer_norm2.weight"), clip_w(m, p + "layer_norm2.bias"), c.eps);
    y = torch::linear(y, clip_w(m, p + "mlp.fc1.weight"), clip_w(m, p + "mlp.fc1.bias"));
    y = torch::linear(clip_activate(y, c.activation), clip_w(m, p + "mlp.fc2.weight"), clip_w(m, p + "mlp.fc2.bias"));
    x = x + y;
  }
  return x;
}

// ids (N, L) int64 -> (N, P) projected text embeddings.
torch::Tensor clip_text_forward(ClipModel& m, const torch::Tensor& ids_cpu) {
  torch::NoGradGuard no_grad;
  const int64_t n = ids_cpu.size(0), l = ids_cpu.size(1);
  if (l > m.max_positions)
    throw Error("CLIP model " + m.folder + ": " + std::to_string(l) + " tokens exceed max_position_embeddings");
  if (ids_cpu.numel() > 0 && (ids_cpu.min().item<int64_t>() < 0 || ids_cpu.max().item<int64_t>() >= m.vocab_size))
    throw Error("CLIP model " + m.folder + ": a token id is outside the text tower's vocabulary of " +
                std::to_string(m.vocab_size) + " (vocab.json does not fit config.json)");
  const auto ids = ids_cpu.to(m.device);
  auto x = torch::embedding(clip_w(m, "text_model.embeddings.token_embedding.weight"), ids) +
           clip_w(m, "text_model.embeddings.position_embedding.weight").slice(0, 0, l).unsqueeze(0);  // (N, L, D)
  const auto causal =
      torch::full({l, l}, -std::numeric_limits<float>::infinity(), torch::TensorOptions().device(m.device)).triu(1);  // (L, L)
  x = clip_encoder(m, x, "text_model", m.text, causal);
  x = torch::layer_norm(x, {m.text.hidden}, clip_w(m, "text_model.final_layer_norm.weight"),
                        clip_w(m, "text_model.final_layer_norm.bias"), m.text.eps);
  // the pooled position, as transformers' CLIPTextTransformer chooses it
  torch::Tensor position;  // (N,)
  if (m.eos_token_id == 2) {
    position = ids_cpu.argmax(-1);  // first occurrence of the largest id
  } else {
    position = (ids_cpu == m.eos_token_id).to(torch::kInt32).argmax(-1);  // first eos, 0 when there is none
  }
  auto pooled =
      x.index({torch::arange(n, torch::TensorOptions().dtype(torch::kInt64).device(m.device)), position.to(m.device)});  // (N, D)
  return torch::linear(pooled, clip_w(m, "text_projection.weight"));
}

torch::Tensor clip_normalise(const ClipModel& m, const torch::Tensor& image) {  // (C, S, S) float32
  std::vector<float> mean, std;
  for (int c = 0; c < 3; ++c) {
    mean.push_back(static_cast<float>(m.mean[static_cast<size_t>(c)]));
    std.push_back(static_cast<float>(m.std[static_cast<size_t>(c)]));
  }
  // the processor fuses rescale into normalise: mean / rescale_factor and std / rescale_factor, in float32
  const auto mean_t = torch::tensor(mean, torch::kFloat32) * (1.0 / m.rescale_factor);
  const auto std_t = torch::tensor(std, torch::kFloat32) * (1.0 / m.rescale_factor);
  return (image - mean_t.view({3, 1, 1})) / std_t.view({3, 1, 1});
}

// transformers' get_resize_output_image_size(default_to_square=False): the shortest side to `edge`.
std::pair<int64_t, int64_t> clip_resized_size(int64_t h, int64_t w, int64_t edge) {
  const int64_t shorter = std::min(h, w), longer = std::max(h, w);
  const auto new_long = static_cast<int64_t>(static_cast<double>(edge * longer) / static_cast<double>(shorter));
  return h <= w ? std::make_pair(edge, new_long) : std::make_pair(new_long, edge);
}

torch::Tensor clip_center_crop(const torch::Tensor& image, int64_t ch, int64_t cw) {  // (C, H, W)
  const int64_t h = image.size(1), w = image.size(2);
  const auto top = static_cast<int64_t>(static_cast<double>(h - ch) / 2.0),
             left = static_cast<int64_t>(static_cast<double>(w - cw) / 2.0);
  return image.slice(1, top, top + ch).slice(2, left, left + cw);
}

// The antialiased bicubic filter (a = -0.5, PIL's) and torch's per-output-pixel bounds and 16-bit weights.
struct ClipResizeWeights {
  std::vector<int64_t> first, count;
  std::vector<int32_t> weights;  // (out, taps)
  int64_t taps = 0;
  int precision = 0;
};

double clip_cubic_aa(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0.0;
}

ClipResizeWeights clip_resize_weights(int64_t in, int64_t out) {
  ClipResizeWeights r;
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  const double support = scale >= 1.0 ? 2.0 * scale : 2.0;
  const double inv = scale >= 1.0 ? 1.0 / scale : 1.0;
  r.taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  std::vector<double> w(static_cast<size_t>(out * r.taps), 0.0);
  double w_max = 0.0;
  for (int64_t i = 0; i < out; ++i) {
    const double center = scale * (static_cast<double>(i) + 0.5);
    const int64_t xmin = std::max(static_cast<int64_t>(center - support + 0.5), int64_t{0});
    const int64_t xsize = std::min(static_cast<int64_t>(center + support + 0.5), in) - xmin;
    double total = 0.0;
    for (int64_t j = 0; j < xsize; ++j) {
      const double v = clip_cubic_aa((static_cast<double>(j + xmin) - center + 0.5) * inv);
      w[static_cast<size_t>(i * r.taps + j)] = v;
      total += v;
    }
    for (int64_t j = 0; j < xsize; ++j)
      if (total != 0.0) w[static_cast<size_t>(i * r.taps + j)] /= total;
    r.first.push_back(xmin);
    r.count.push_back(xsize);
  }
  w_max = w.empty() ? 0.0 : w[0];
  for (double v : w) w_max = std::max(w_max, v);
  int precision = 0;
  for (; precision < 22; ++precision)
    if (static_cast<int>(0.5 + w_max * (1 << (precision + 1))) >= (1 << 15)) break;
  r.precision = precision;
  for (double v : w)
    r.weights.push_back(v < 0 ? static_cast<int32_t>(static_cast<int16_t>(static_cast<int>(-0.5 + v * (1 << precision))))
                              : static_cast<int32_t>(static_cast<int16_t>(static_cast<int>(0.5 + v * (1 << precision)))));
  return r;
}

// eval/images.h's format (uint8 (N, 3, H, W) on the CPU), checked here so that this file does not depend
// on images.cpp, which another part of the evaluation layer provides.
void clip_check_images(const torch::Tensor& images, const char* what) {
  if (!images.defined() || images.dim() != 4 || images.size(1) != 3 || images.scalar_type() != torch::kUInt8 ||
      !images.device().is_cpu() || images.size(2) == 0 || images.size(3) == 0) {
    std::ostringstream ss;
    ss << what << ": expected uint8 (N, 3, H, W) RGB images on the CPU, got ";
    if (images.defined()) {
      ss << images.scalar_type() << " " << images.sizes() << " on " << images.device();
    } else {
      ss << "an undefined tensor";
    }
    throw Error(ss.str());
  }
}

// One pass along the last axis of a contiguous (rows, in_stride) uint8 buffer -> (rows, out), in 16-bit
// fixed point: sum(pixel * weight) + half, shifted right by the precision, clamped to 0..255.
std::vector<uint8_t> clip_resize_pass(const uint8_t* src, int64_t rows, int64_t in_stride, int64_t out,
                                      const ClipResizeWeights& r) {
  std::vector<uint8_t> dst(static_cast<size_t>(rows * out));
  for (int64_t y = 0; y < rows; ++y) {
    for (int64_t x = 0; x < out; ++x) {
      int64_t acc = int64_t{1} << (r.precision - 1);
      const int32_t* k = &r.weights[static_cast<size_t>(x * r.taps)];
      for (int64_t j = 0; j < r.count[static_cast<size_t>(x)]; ++j)
        acc += static_cast<int64_t>(src[y * in_stride + (r.first[static_cast<size_t>(x)] + j)]) * k[j];
      dst[static_cast<size_t>(y * out + x)] = static_cast<uint8_t>(std::clamp<int64_t>(acc >> r.precision, 0, 255));
    }
  }
  return dst;
}

}  // namespace

torch::Tensor clip_resize_bicubic_uint8(const torch::Tensor& image, int64_t height, int64_t width) {
  if (image.dim() != 3 || image.scalar_type() != torch::kUInt8)
    throw Error("clip_resize_bicubic_uint8: expects a uint8 (C, H, W) image");
  const int64_t c = image.size(0), h = image.size(1), w = image.size(2);
  if (height <= 0 || width <= 0 || h <= 0 || w <= 0) throw Error("clip_resize_bicubic_uint8: empty image or size");
  auto current = image.contiguous().to(torch::kCPU);
  int64_t cur_w = w;
  if (width != w) {  // horizontal pass first, rounded to uint8 (as torch and PIL do)
    const auto r = clip_resize_weights(w, width);
    auto out = clip_resize_pass(current.data_ptr<uint8_t>(), c * h, w, width, r);
    current = torch::from_blob(out.data(), {c, h, width}, torch::kUInt8).clone();
    cur_w = width;
  }
  if (height != h) {  // vertical pass: along H of (C, H, W), one column at a time via a transposed copy
    const auto r = clip_resize_weights(h, height);
    auto transposed = current.transpose(1, 2).contiguous();  // (C, W, H)
    auto out = clip_resize_pass(transposed.data_ptr<uint8_t>(), c * cur_w, h, height, r);
    current = torch::from_blob(out.data(), {c, cur_w, height}, torch::kUInt8).transpose(1, 2).contiguous();
  }
  return current;
}

ClipModelPtr load_clip_model(const std::string& folder, const torch::Device& device) {
  namespace fs = std::filesystem;
  auto m = std::make_shared<ClipModel>();
  m->folder = folder;
  m->device = device;
  if (!fs::is_directory(folder))
    throw Error("CLIP model " + folder + ": not a folder (a Hugging Face CLIPModel folder is expected)");
  const std::string config_path = folder + "/config.json";
  if (!fs::exists(config_path)) throw Error("CLIP model " + folder + ": config.json is missing");
  const auto config = parse_json_strict(clip_read_file(config_path, folder), config_path);
  if (!config.contains("text_config") || !config.contains("vision_config") || !config["text_config"].is_object() ||
      !config["vision_config"].is_object())
    throw Error("CLIP model " + folder + ": config.json has no text_config / vision_config (not a CLIPModel config)");
  const auto& tc = config["text_config"];
  const auto& vc = config["vision_config"];
  // transformers' CLIPTextConfig / CLIPVisionConfig defaults, which save_pretrained leaves out
  m->text =
      clip_tower_config(tc, ClipTowerConfig{512, 2048, 8, 12, ClipActivation::kQuickGelu, 1e-5}, config_path + " text_config");
  m->vision =
      clip_tower_config(vc, ClipTowerConfig{768, 3072, 12, 12, ClipActivation::kQuickGelu, 1e-5}, config_path + " vision_config");
  m->vocab_size = clip_int(tc, "vocab_size", 49408, config_path + " text_config");
  m->max_positions = clip_int(tc, "max_position_embeddings", 77, config_path + " text_config");
  if (tc.contains("eos_token_id") && !tc["eos_token_id"].is_null() && !tc["eos_token_id"].is_number_integer())
    throw Error(config_path + ": text_config.eos_token_id must be one integer");
  m->eos_token_id = clip_int(tc, "eos_token_id", 49407, config_path + " text_config");
  m->projection_dim = clip_int(config, "projection_dim", 512, config_path);
  m->image_size = clip_int(vc, "image_size", 224, config_path + " vision_config");
  m->patch_size = clip_int(vc, "patch_size", 32, config_path + " vision_config");
  if (clip_int(vc, "num_channels", 3, config_path + " vision_config") != 3)
    throw Error(config_path + ": vision_config.num_channels must be 3");
  if (m->patch_size <= 0 || m->image_size % m->patch_size != 0)
    throw Error(config_path + ": vision_config.image_size must be a multiple of patch_size");

  const std::string pre_path = folder + "/preprocessor_config.json";
  if (fs::exists(pre_path)) clip_read_preprocessor(*m, pre_path);
  if (m->crop_height != m->image_size || m->crop_width != m->image_size)
    throw Error("CLIP model " + folder + ": preprocessor_config.json's crop_size does not equal vision_config.image_size " +
                std::to_string(m->image_size));

  const std::string weights_path = folder + "/model.safetensors";
  if (!fs::exists(weights_path)) throw Error("CLIP model " + folder + ": model.safetensors is missing");
  for (auto& [name, tensor] : read_safetensors(weights_path).tensors) {
    if (name.find("position_ids") != std::string::npos) continue;  // a buffer older checkpoints store
    m->weights[name] = tensor.to(torch::kFloat32);
  }
  const std::string file = "model.safetensors";
  const int64_t dt = m->text.hidden, dv = m->vision.hidden, grid = m->image_size / m->patch_size;
  clip_expect(*m, file, "text_model.embeddings.token_embedding.weight", {m->vocab_size, dt});
  clip_expect(*m, file, "text_model.embeddings.position_embedding.weight", {m->max_positions, dt});
  clip_expect_tower(*m, file, "text_model", m->text);
  clip_expect(*m, file, "text_model.final_layer_norm.weight", {dt});
  clip_expect(*m, file, "text_model.final_layer_norm.bias", {dt});
  clip_expect(*m, file, "text_projection.weight", {m->projection_dim, dt});
  clip_expect(*m, file, "vision_model.embeddings.class_embedding", {dv});
  clip_expect(*m, file, "vision_model.embeddings.patch_embedding.weight", {dv, 3, m->patch_size, m->patch_size});
  clip_expect(*m, file, "vision_model.embeddings.position_embedding.weight", {grid * grid + 1, dv});
  for (const char* norm : {"vision_model.pre_layrnorm", "vision_model.post_layernorm"}) {
    clip_expect(*m, file, std::string(norm) + ".weight", {dv});
    clip_expect(*m, file, std::string(norm) + ".bias", {dv});
  }
  clip_expect_tower(*m, file, "vision_model", m->vision);
  clip_expect(*m, file, "visual_projection.weight", {m->projection_dim, dv});
  for (auto& [name, tensor] : m->weights) tensor = tensor.to(device);

  m->tokenizer = std::make_unique<ClipTokenizer>(ClipTokenizer::from_folder(folder));
  return m;
}

const ClipTokenizer& clip_tokenizer(const ClipModel& model) { return *model.tokenizer; }

torch::Tensor clip_tokens(const ClipModel& model, const std::vector<std::string>& prompts) {
  return model.tokenizer->encode_batch(prompts, model.max_positions);
}

torch::Tensor clip_pixel_values(const ClipModel& model, const torch::Tensor& images) {
  clip_check_images(images, "CLIP images");
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < images.size(0); ++i) {
    const auto image = images[i];
    const auto [h, w] = clip_resized_size(image.size(1), image.size(2), model.shortest_edge);
    const auto resized = clip_resize_bicubic_uint8(image, h, w);
    out.push_back(clip_normalise(model, clip_center_crop(resized, model.crop_height, model.crop_width).to(torch::kFloat32)));
  }
  if (out.empty()) return torch::zeros({0, 3, model.crop_height, model.crop_width});
  return torch::stack(out);  // (N, 3, S, S)
}

torch::Tensor clip_pixel_values_float(const ClipModel& model, const torch::Tensor& images) {
  clip_check_images(images, "CLIP-IQA images");
  namespace F = torch::nn::functional;
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < images.size(0); ++i) {
    auto image = images[i].to(torch::kFloat32);  // (3, H, W), values 0..255 (data_range 1)
    const auto [h, w] = clip_resized_size(image.size(1), image.size(2), model.shortest_edge);
    if (h != image.size(1) || w != image.size(2)) {
      image = F::interpolate(image.unsqueeze(0), F::InterpolateFuncOptions()
                                                     .size(std::vector<int64_t>{h, w})
                                                     .mode(torch::kBicubic)
                                                     .align_corners(false)
                                                     .antialias(true))
                  .squeeze(0);
    }
    out.push_back(clip_normalise(model, clip_center_crop(image, model.crop_height, model.crop_width)));
  }
  if (out.empty()) return torch::zeros({0, 3, model.crop_height, model.crop_width});
  return torch::stack(out);  // (N, 3, S, S)
}

torch::Tensor clip_image_embeddings_from_pixels(ClipModel& m, const torch::Tensor& pixel_values) {
  torch::NoGradGuard no_grad;
  if (pixel_values.dim() != 4 || pixel_values.size(1) != 3 || pixel_values.size(2) != m.image_size ||
      pixel_values.size(3) != m.image_size)
    throw Error("CLIP model " + m.folder + ": pixel values must be (N, 3, " + std::to_string(m.image_size) + ", " +
                std::to_string(m.image_size) + ")");
  const int64_t n = pixel_values.size(0), dv = m.vision.hidden;
  if (n == 0) return torch::zeros({0, m.projection_dim});
  auto x =
      torch::conv2d(pixel_values.to(m.device, torch::kFloat32), clip_w(m, "vision_model.embeddings.patch_embedding.weight"), {},
                    m.patch_size);   // (N, D, g, g)
  x = x.flatten(2).transpose(1, 2);  // (N, g*g, D)
  const auto cls = clip_w(m, "vision_model.embeddings.class_embedding").view({1, 1, dv}).expand({n, 1, dv});
  x = torch::cat({cls, x}, 1) + clip_w(m, "vision_model.embeddings.position_embedding.weight").unsqueeze(0);  // (N, 1 + g*g, D)
  x = torch::layer_norm(x, {dv}, clip_w(m, "vision_model.pre_layrnorm.weight"), clip_w(m, "vision_model.pre_layrnorm.bias"),
                        m.vision.eps);
  x = clip_encoder(m, x, "vision_model", m.vision, {});
  auto pooled = torch::layer_norm(x.select(1, 0), {dv}, clip_w(m, "vision_model.post_layernorm.weight"),
                                  clip_w(m, "vision_model.post_layernorm.bias"),
                                  m.vision.eps);  // (N, D)
  return torch::linear(pooled, clip_w(m, "visual_projection.weight")).to(torch::kCPU);
}

torch::Tensor clip_image_embeddings(ClipModel& model, const torch::Tensor& images) {
  return clip_image_embeddings_from_pixels(model, clip_pixel_values(model, images));
}

torch::Tensor clip_text_embeddings(ClipModel& model, const std::vector<std::string>& prompts) {
  if (prompts.empty()) return torch::zeros({0, model.projection_dim});
  return clip_text_forward(model, clip_tokens(model, prompts)).to(torch::kCPU);
}

torch::Tensor clip_scores_unclamped(ClipModel& model, const torch::Tensor& images, const std::vector<std::string>& prompts) {
  clip_check_images(images, "CLIP score images");
  if (static_cast<int64_t>(prompts.size()) != images.size(0))
    throw Error("CLIP score: " + std::to_string(images.size(0)) + " images but " + std::to_string(prompts.size()) + " prompts");
  auto image = clip_image_embeddings(model, images);
  auto text = clip_text_embeddings(model, prompts);
  image = image / image.norm(2, -1, true);
  text = text / text.norm(2, -1, true);
  return (100 * (image * text).sum(-1)).to(torch::kFloat64);  // (N,)
}

torch::Tensor clip_scores(ClipModel& model, const torch::Tensor& images, const std::vector<std::string>& prompts) {
  return clip_scores_unclamped(model, images, prompts).clamp_min(0);
}

torch::Tensor clip_iqa_scores(ClipModel& model, const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  if (!model.iqa_anchors.defined()) {
    std::vector<std::string> prompts;
    for (const auto& pair : kClipIqaPrompts) prompts.insert(prompts.end(), {pair[0], pair[1]});
    auto anchors = clip_text_embeddings(model, prompts);  // (8, P)
    model.iqa_anchors = anchors / anchors.norm(2, -1, true);
  }
  auto features = clip_image_embeddings_from_pixels(model, clip_pixel_values_float(model, images));  // (N, P)
  features = features / features.norm(2, -1, true);
  const auto logits = 100 * torch::matmul(features, model.iqa_anchors.t());                     // (N, 8)
  return logits.reshape({logits.size(0), 4, 2}).softmax(-1).select(-1, 0).to(torch::kFloat64);  // (N, 4)
}

}  // namespace ilf
