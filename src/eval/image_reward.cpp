// ImageReward (the image-reward package, version 1.5) in LibTorch: the reward the paper reports as its
// main metric. The package's model is BLIP's ViT image encoder, BLIP's med.py BERT text encoder with
// cross-attention from the prompt's tokens to the image embeddings, and an MLP on the [CLS] feature,
// then (reward - mean) / std with fixed constants. It is rebuilt here from plain tensors of the
// package's ImageReward.pt state dict, converted once to safetensors by scripts/convert_image_reward.py
// (LibTorch's unpickler cannot read the OrderedDict that torch.save wrote; see ir_read_state_dict), so that any
// image and prompt can be scored from C++, with the package's preprocessing (torchvision Resize(224,
// bicubic) of the PIL image, CenterCrop(224), ToTensor, Normalize) and its tokenisation
// (ilf/eval/bert_tokenizer.h). The arithmetic follows the package op for op (scores scaled after the
// product, the -10000 mask, exact GELU) so that float32 results agree to rounding.
//
// Sizes come from the tensors' shapes; what no tensor tells: the ViT's head count (64 per head, as both
// ViTs BLIP builds have: ViT-B 768 / 12, ViT-L 1024 / 16), the image size (224, fixed by the package)
// and the BERT head count, layer count, layer-norm epsilon and activation (med_config.json).
#include "ilf/io/atomic_file.h"
#include "ilf/eval/image_reward.h"

#include <torch/script.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "ilf/error.h"
#include "ilf/eval/bert_tokenizer.h"
#include "ilf/eval/pil_resize.h"
#include "ilf/io/json.h"
#include "ilf/io/safetensors.h"

namespace ilf {

namespace {

constexpr int64_t kIrImageSize = 224;                  // ImageReward(): BLIP_Pretrain(image_size=224), _transform(224)
constexpr int64_t kIrMaxTokens = 35;                   // ImageReward.score: max_length=35
constexpr int64_t kIrVitHeadDim = 64;                  // create_vit: ViT-B 768 / 12 heads, ViT-L 1024 / 16 heads
constexpr double kIrVitEps = 1e-6;                     // VisionTransformer: partial(nn.LayerNorm, eps=1e-6)
constexpr double kIrRewardMean = 0.16717362830052426;  // ImageReward.mean
constexpr double kIrRewardStd = 1.0333394966054072;    // ImageReward.std
// _transform's Normalize (CLIP's statistics): Python floats that torchvision turns into float32 tensors.
constexpr double kIrPixelMean[3] = {0.48145466, 0.4578275, 0.40821073};
constexpr double kIrPixelStd[3] = {0.26862954, 0.26130258, 0.27577711};

struct IrLinear {
  torch::Tensor weight, bias;  // (out, in), (out)
  torch::Tensor operator()(const torch::Tensor& x) const { return torch::linear(x, weight, bias); }
};

struct IrNorm {
  torch::Tensor weight, bias;  // (C), (C)
  double eps = 1e-12;
  torch::Tensor operator()(const torch::Tensor& x) const { return torch::layer_norm(x, {weight.size(0)}, weight, bias, eps); }
};

struct IrVitBlock {
  IrNorm norm1, norm2;
  IrLinear qkv, proj, fc1, fc2;  // qkv (3D, D), proj (D, D), fc1 (H, D), fc2 (D, H)
};

struct IrBertAttention {
  IrLinear query, key, value, dense;  // query (C, C); key / value (C, C) or (C, vision width)
  IrNorm norm;
};

struct IrBertLayer {
  IrBertAttention self_attention, cross_attention;
  IrLinear intermediate, output;  // (I, C), (C, I)
  IrNorm output_norm;
};

// The state dict: name -> tensor, and the file it came from (for the errors).
struct IrStateDict {
  std::string path;
  std::map<std::string, torch::Tensor> tensors;

  bool has(const std::string& key) const { return tensors.count(key) != 0; }

  // The tensor `key` as float32; `shape` entries of -1 match any size.
  torch::Tensor get(const std::string& key, const std::vector<int64_t>& shape) const {
    const auto it = tensors.find(key);
    if (it == tensors.end()) throw Error(path + ": the ImageReward state dict has no tensor '" + key + "'");
    const torch::Tensor& t = it->second;
    bool fits = t.dim() == static_cast<int64_t>(shape.size());
    for (size_t i = 0; fits && i < shape.size(); ++i) fits = shape[i] < 0 || t.size(static_cast<int64_t>(i)) == shape[i];
    if (!fits) {
      std::ostringstream expected;
      for (size_t i = 0; i < shape.size(); ++i)
        expected << (i ? ", " : "") << (shape[i] < 0 ? std::string("*") : std::to_string(shape[i]));
      throw Error(path + ": tensor '" + key + "' has shape " + c10::str(t.sizes()) + ", expected [" + expected.str() + "]");
    }
    if (!t.is_floating_point()) throw Error(path + ": tensor '" + key + "' is not a floating-point tensor");
    return t.to(torch::kFloat32).contiguous();
  }
  IrLinear linear(const std::string& prefix, int64_t out, int64_t in) const {
    return {get(prefix + ".weight", {out, in}), get(prefix + ".bias", {out})};
  }
  IrNorm norm(const std::string& prefix, int64_t width, double eps) const {
    return {get(prefix + ".weight", {width}), get(prefix + ".bias", {width}), eps};
  }
};

// The weights: ImageReward.safetensors as scripts/convert_image_reward.py writes it from the package's
// ImageReward.pt, or a torch.save file of a plain dict of tensors (torch::pickle_load reads those; the
// package's own file is an OrderedDict, which LibTorch's unpickler turns into None).
IrStateDict ir_read_state_dict(const std::string& path) {
  require_regular_file(path, "ImageReward file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the ImageReward weights");
  IrStateDict out;
  out.path = path;
  const std::string convert =
      "; convert the package's file once with: python3 scripts/convert_image_reward.py " + path + " ImageReward.safetensors";
  std::string head(4096, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  if (head.compare(0, 4, std::string("PK\x03\x04", 4)) != 0) {  // safetensors (a legacy torch.save file fails here too)
    try {
      out.tensors = read_safetensors(path).tensors;
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " (neither safetensors nor a torch.save zip file" + convert + ")");
    }
    return out;
  }
  // torch.save stores data.pkl first and uncompressed: a pickled OrderedDict shows in the first bytes,
  // and is refused before a large file is read.
  if (head.find("collections\nOrderedDict\n") != std::string::npos)
    throw Error(path + ": the state dict in this torch.save file is a collections.OrderedDict (as model.state_dict() " +
                "returns it), which LibTorch's torch::pickle_load reads as None" + convert);
  in.clear();
  in.seekg(0);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  torch::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    throw Error(path + ": LibTorch cannot read this torch.save file (" + std::string(e.what()).substr(0, 200) + ")" + convert);
  }
  if (!value.isGenericDict())
    throw Error(path + ": a torch.save file holding " + value.tagKind() + ", not a dict of tensors" + convert);
  for (const auto& item : value.toGenericDict()) {
    if (!item.key().isString()) throw Error(path + ": a state dict key is not a string");
    if (item.value().isTensor()) out.tensors[item.key().toStringRef()] = item.value().toTensor();
  }
  return out;
}

// med_config.json, with transformers' BertConfig defaults for what a file leaves out; "" = the
// med_config.json the package downloads with ImageReward.pt (BLIP's bert-base configuration).
struct IrBertConfig {
  int64_t hidden_size = 768, num_attention_heads = 12, num_hidden_layers = 12, intermediate_size = 3072;
  int64_t max_position_embeddings = 512, vocab_size = 30522;
  double layer_norm_eps = 1e-12;
  std::string hidden_act = "gelu", position_embedding_type = "absolute";
  bool add_cross_attention = false;
};

IrBertConfig ir_read_bert_config(const std::string& path) {
  IrBertConfig config;
  if (path.empty()) {
    config.vocab_size = 30524;
    config.add_cross_attention = true;
    return config;
  }
  require_regular_file(path, "ImageReward file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the BERT configuration (med_config.json)");
  std::stringstream buffer;
  buffer << in.rdbuf();
  nlohmann::json json;
  try {
    json = parse_json_strict(buffer.str(), path);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
  if (!json.is_object()) throw Error(path + ": expected a JSON object (a BERT configuration)");
  const auto integer = [&](const char* key, int64_t& field) {
    if (!json.contains(key)) return;
    if (!json[key].is_number_integer() || json[key].get<int64_t>() < 1)
      throw Error(path + ": '" + key + "' must be a positive integer");
    field = json[key].get<int64_t>();
  };
  integer("hidden_size", config.hidden_size);
  integer("num_attention_heads", config.num_attention_heads);
  integer("num_hidden_layers", config.num_hidden_layers);
  integer("intermediate_size", config.intermediate_size);
  integer("max_position_embeddings", config.max_position_embeddings);
  integer("vocab_size", config.vocab_size);
  if (json.contains("layer_norm_eps")) {
    if (!json["layer_norm_eps"].is_number()) throw Error(path + ": 'layer_norm_eps' must be a number");
    config.layer_norm_eps = json["layer_norm_eps"].get<double>();
  }
  const auto text = [&](const char* key, std::string& field) {
    if (!json.contains(key)) return;
    if (!json[key].is_string()) throw Error(path + ": '" + key + "' must be a string");
    field = json[key].get<std::string>();
  };
  text("hidden_act", config.hidden_act);
  text("position_embedding_type", config.position_embedding_type);
  if (json.contains("add_cross_attention")) {
    if (!json["add_cross_attention"].is_boolean()) throw Error(path + ": 'add_cross_attention' must be true or false");
    config.add_cross_attention = json["add_cross_attention"].get<bool>();
  }
  if (config.hidden_act != "gelu" && config.hidden_act != "relu")
    throw Error(path + ": hidden_act '" + config.hidden_act + "' is not supported (gelu or relu)");
  if (config.position_embedding_type != "absolute")
    throw Error(path + ": position_embedding_type '" + config.position_embedding_type + "' is not supported (absolute)");
  if (!config.add_cross_attention)
    throw Error(path + ": add_cross_attention must be true (ImageReward's text encoder attends to the image)");
  if (config.hidden_size % config.num_attention_heads != 0)
    throw Error(path + ": hidden_size " + std::to_string(config.hidden_size) + " is not a multiple of num_attention_heads " +
                std::to_string(config.num_attention_heads));
  return config;
}

// q, k, v (B, heads, T, d) -> (B, T, heads * d): softmax(q k^T * scale + mask) v, in the packages'
// order of operations (ViT multiplies by head_dim^-0.5, med.py divides by sqrt(head_dim)).
torch::Tensor ir_attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool divide,
                        const torch::Tensor& mask) {
  const auto d = static_cast<double>(q.size(-1));
  torch::Tensor scores = torch::matmul(q, k.transpose(-1, -2));
  scores = divide ? scores / std::sqrt(d) : scores * std::pow(d, -0.5);
  if (mask.defined()) scores = scores + mask;
  const torch::Tensor context = torch::matmul(torch::softmax(scores, -1), v);  // (B, heads, T, d)
  return context.permute({0, 2, 1, 3}).reshape({q.size(0), q.size(2), -1});
}

torch::Tensor ir_heads(const torch::Tensor& x, int64_t heads) {  // (B, T, C) -> (B, heads, T, C / heads)
  return x.view({x.size(0), x.size(1), heads, x.size(2) / heads}).permute({0, 2, 1, 3});
}

}  // namespace

class ImageRewardModel {
 public:
  std::string path;
  torch::Device device = torch::kCPU;
  // ViT
  int64_t vit_width = 0, vit_heads = 0, patch = 0;
  torch::Tensor patch_weight, patch_bias, cls_token, pos_embed;  // (D, 3, p, p), (D), (1, 1, D), (1, 1 + g*g, D)
  std::vector<IrVitBlock> vit_blocks;
  IrNorm vit_norm;
  // BERT
  IrBertConfig bert;
  torch::Tensor word_embeddings, position_embeddings;  // (V, C), (P, C)
  IrNorm embedding_norm;
  std::vector<IrBertLayer> bert_layers;
  // Head
  std::vector<IrLinear> mlp;
  std::unique_ptr<BertTokenizer> tokenizer;

  void to(const torch::Device& target) {
    device = target;
    const auto move = [&](torch::Tensor& t) { t = t.to(target); };
    const auto move_linear = [&](IrLinear& l) { move(l.weight), move(l.bias); };
    const auto move_norm = [&](IrNorm& n) { move(n.weight), move(n.bias); };
    for (torch::Tensor* t : {&patch_weight, &patch_bias, &cls_token, &pos_embed, &word_embeddings, &position_embeddings})
      move(*t);
    for (auto& b : vit_blocks) {
      move_norm(b.norm1), move_norm(b.norm2);
      for (IrLinear* l : {&b.qkv, &b.proj, &b.fc1, &b.fc2}) move_linear(*l);
    }
    move_norm(vit_norm), move_norm(embedding_norm);
    for (auto& layer : bert_layers) {
      for (IrBertAttention* a : {&layer.self_attention, &layer.cross_attention}) {
        for (IrLinear* l : {&a->query, &a->key, &a->value, &a->dense}) move_linear(*l);
        move_norm(a->norm);
      }
      move_linear(layer.intermediate), move_linear(layer.output), move_norm(layer.output_norm);
    }
    for (auto& l : mlp) move_linear(l);
  }

  // pixels (N, 3, 224, 224) float32 -> image embeddings (N, 1 + g*g, D).
  torch::Tensor encode_image(const torch::Tensor& pixels) const {
    torch::Tensor x = torch::conv2d(pixels, patch_weight, patch_bias, {patch, patch});  // (N, D, g, g)
    x = x.flatten(2).transpose(1, 2);                                                   // (N, g*g, D)
    x = torch::cat({cls_token.expand({x.size(0), -1, -1}), x}, 1);
    x = x + pos_embed.slice(1, 0, x.size(1));
    for (const IrVitBlock& b : vit_blocks) {
      const torch::Tensor qkv = b.qkv(b.norm1(x))
                                    .reshape({x.size(0), x.size(1), 3, vit_heads, vit_width / vit_heads})
                                    .permute({2, 0, 3, 1, 4});  // (3, N, heads, T, d)
      x = x + b.proj(ir_attend(qkv[0], qkv[1], qkv[2], false, {}));
      x = x + b.fc2(torch::gelu(b.fc1(b.norm2(x))));
    }
    return vit_norm(x);
  }

  torch::Tensor activation(const torch::Tensor& x) const { return bert.hidden_act == "relu" ? torch::relu(x) : torch::gelu(x); }

  // ids, mask (B, L) int64, image embeddings (B, T, D) -> last hidden state (B, L, C).
  torch::Tensor encode_text(const torch::Tensor& ids, const torch::Tensor& mask, const torch::Tensor& image) const {
    const int64_t length = ids.size(1);
    torch::Tensor x = torch::embedding(word_embeddings, ids) + position_embeddings.slice(0, 0, length).unsqueeze(0);
    x = embedding_norm(x);
    // get_extended_attention_mask: (1 - mask) * -10000 in the model's dtype, (B, 1, 1, L).
    const torch::Tensor self_mask = (1.0 - mask.to(torch::kFloat32).unsqueeze(1).unsqueeze(2)) * -10000.0;
    // The image attention mask is all ones: invert_attention_mask makes it (1 - 1) * finfo.min = 0.
    const int64_t heads = bert.num_attention_heads;
    for (const IrBertLayer& layer : bert_layers) {
      const IrBertAttention& s = layer.self_attention;
      torch::Tensor h =
          ir_attend(ir_heads(s.query(x), heads), ir_heads(s.key(x), heads), ir_heads(s.value(x), heads), true, self_mask);
      x = s.norm(s.dense(h) + x);
      const IrBertAttention& c = layer.cross_attention;
      h = ir_attend(ir_heads(c.query(x), heads), ir_heads(c.key(image), heads), ir_heads(c.value(image), heads), true, {});
      x = c.norm(c.dense(h) + x);
      x = layer.output_norm(layer.output(activation(layer.intermediate(x))) + x);
    }
    return x;
  }
};

namespace {

int64_t ir_count(const IrStateDict& sd, const std::string& prefix, const std::string& suffix) {
  int64_t n = 0;
  while (sd.has(prefix + std::to_string(n) + suffix)) ++n;
  return n;
}

void ir_check_images(const torch::Tensor& images) {
  if (!images.defined() || images.dim() != 4 || images.size(1) != 3 || images.scalar_type() != torch::kUInt8)
    throw Error("ImageReward images: expected uint8 (N, 3, H, W), got " +
                (images.defined() ? std::string(c10::toString(images.scalar_type())) + " " + c10::str(images.sizes())
                                  : std::string("none")));
  if (images.size(2) < 1 || images.size(3) < 1) throw Error("ImageReward images: empty image " + c10::str(images.sizes()));
}

}  // namespace

ImageRewardModelPtr load_image_reward(const ImageRewardFiles& files, const torch::Device& device) {
  auto model = std::make_shared<ImageRewardModel>();
  model->path = files.weights;
  model->bert = ir_read_bert_config(files.med_config);
  const IrStateDict sd = ir_read_state_dict(files.weights);

  // BLIP's ViT: blip.visual_encoder.*
  const std::string v = "blip.visual_encoder.";
  model->cls_token = sd.get(v + "cls_token", {1, 1, -1});
  const int64_t width = model->cls_token.size(2);
  model->vit_width = width;
  if (width % kIrVitHeadDim != 0)
    throw Error(files.weights + ": the ViT width " + std::to_string(width) + " (tensor '" + v +
                "cls_token') is not a multiple of 64; the head count is taken as width / 64 (BLIP's ViT-B and ViT-L)");
  model->vit_heads = width / kIrVitHeadDim;
  model->patch_weight = sd.get(v + "patch_embed.proj.weight", {width, 3, -1, -1});
  model->patch = model->patch_weight.size(2);
  if (model->patch_weight.size(3) != model->patch || kIrImageSize % model->patch != 0)
    throw Error(files.weights + ": tensor '" + v + "patch_embed.proj.weight' has shape " + c10::str(model->patch_weight.sizes()) +
                ": expected square patches that divide 224");
  model->patch_bias = sd.get(v + "patch_embed.proj.bias", {width});
  const int64_t grid = kIrImageSize / model->patch;
  model->pos_embed = sd.get(v + "pos_embed", {1, 1 + grid * grid, width});
  const int64_t depth = ir_count(sd, v + "blocks.", ".norm1.weight");
  if (depth == 0) throw Error(files.weights + ": the ImageReward state dict has no tensor '" + v + "blocks.0.norm1.weight'");
  for (int64_t i = 0; i < depth; ++i) {
    const std::string b = v + "blocks." + std::to_string(i) + ".";
    IrVitBlock block;
    block.norm1 = sd.norm(b + "norm1", width, kIrVitEps);
    block.qkv = sd.linear(b + "attn.qkv", 3 * width, width);
    block.proj = sd.linear(b + "attn.proj", width, width);
    block.norm2 = sd.norm(b + "norm2", width, kIrVitEps);
    const int64_t hidden = sd.get(b + "mlp.fc1.weight", {-1, width}).size(0);
    block.fc1 = sd.linear(b + "mlp.fc1", hidden, width);
    block.fc2 = sd.linear(b + "mlp.fc2", width, hidden);
    model->vit_blocks.push_back(std::move(block));
  }
  model->vit_norm = sd.norm(v + "norm", width, kIrVitEps);

  // med.py's BertModel: blip.text_encoder.* (sizes from the tensors, checked against med_config.json).
  const IrBertConfig& config = model->bert;
  const std::string t = "blip.text_encoder.";
  model->word_embeddings = sd.get(t + "embeddings.word_embeddings.weight", {-1, config.hidden_size});
  const int64_t hidden = config.hidden_size;
  model->position_embeddings = sd.get(t + "embeddings.position_embeddings.weight", {-1, hidden});
  if (model->position_embeddings.size(0) < kIrMaxTokens)
    throw Error(files.weights + ": tensor '" + t + "embeddings.position_embeddings.weight' has " +
                std::to_string(model->position_embeddings.size(0)) + " positions, ImageReward needs 35");
  model->embedding_norm = sd.norm(t + "embeddings.LayerNorm", hidden, config.layer_norm_eps);
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    const std::string l = t + "encoder.layer." + std::to_string(i) + ".";
    IrBertLayer layer;
    const auto attention = [&](const std::string& prefix, int64_t key_width) {
      IrBertAttention a;
      a.query = sd.linear(prefix + "self.query", hidden, hidden);
      a.key = sd.linear(prefix + "self.key", hidden, key_width);
      a.value = sd.linear(prefix + "self.value", hidden, key_width);
      a.dense = sd.linear(prefix + "output.dense", hidden, hidden);
      a.norm = sd.norm(prefix + "output.LayerNorm", hidden, config.layer_norm_eps);
      return a;
    };
    layer.self_attention = attention(l + "attention.", hidden);
    layer.cross_attention = attention(l + "crossattention.", width);  // encoder_width = the ViT's width
    const int64_t intermediate = sd.get(l + "intermediate.dense.weight", {-1, hidden}).size(0);
    layer.intermediate = sd.linear(l + "intermediate.dense", intermediate, hidden);
    layer.output = sd.linear(l + "output.dense", hidden, intermediate);
    layer.output_norm = sd.norm(l + "output.LayerNorm", hidden, config.layer_norm_eps);
    model->bert_layers.push_back(std::move(layer));
  }

  // The MLP head: mlp.layers = Linear, Dropout, Linear, Dropout, Linear, Dropout, Linear, Linear.
  int64_t in = hidden;
  for (const int index : {0, 2, 4, 6, 7}) {
    const std::string m = "mlp.layers." + std::to_string(index);
    const int64_t out = index == 7 ? 1 : sd.get(m + ".weight", {-1, in}).size(0);
    model->mlp.push_back(sd.linear(m, out, in));
    in = out;
  }

  model->tokenizer = std::make_unique<BertTokenizer>(files.vocab, kIrMaxTokens);
  if (model->tokenizer->vocab_size() > model->word_embeddings.size(0))
    throw Error(files.vocab + ": the vocabulary has " + std::to_string(model->tokenizer->vocab_size()) +
                " ids with [DEC] / [ENC], but tensor '" + t + "embeddings.word_embeddings.weight' of " + files.weights + " has " +
                std::to_string(model->word_embeddings.size(0)) + " rows");
  model->to(device);
  return model;
}

torch::Tensor image_reward_pixels(const torch::Tensor& images) {
  ir_check_images(images);
  const int64_t n = images.size(0);
  torch::Tensor out = torch::empty({n, 3, kIrImageSize, kIrImageSize}, torch::kFloat32);
  const torch::Tensor mean =
      torch::tensor({kIrPixelMean[0], kIrPixelMean[1], kIrPixelMean[2]}, torch::kFloat64).to(torch::kFloat32).view({3, 1, 1});
  const torch::Tensor std =
      torch::tensor({kIrPixelStd[0], kIrPixelStd[1], kIrPixelStd[2]}, torch::kFloat64).to(torch::kFloat32).view({3, 1, 1});
  for (int64_t i = 0; i < n; ++i) {
    torch::Tensor image = images[i].to(torch::kCPU).permute({1, 2, 0}).contiguous();  // (H, W, 3) uint8
    const int64_t h = image.size(0), w = image.size(1);
    // torchvision Resize(224) on a PIL image: the short side becomes 224, the long side
    // int(224 * long / short); then PIL's bicubic resize.
    const int64_t short_side = std::min(h, w), long_side = std::max(h, w);
    const auto long_new = static_cast<int64_t>(static_cast<double>(kIrImageSize * long_side) / static_cast<double>(short_side));
    const int64_t new_h = h <= w ? kIrImageSize : long_new;
    const int64_t new_w = h <= w ? long_new : kIrImageSize;
    if (new_h != h || new_w != w) image = pil_resize_uint8(image, new_h, new_w, PilFilter::kBicubic);
    // CenterCrop(224): offsets int(round((size - 224) / 2.0)), Python's round (half to even).
    const auto top = static_cast<int64_t>(std::nearbyint(static_cast<double>(new_h - kIrImageSize) / 2.0));
    const auto left = static_cast<int64_t>(std::nearbyint(static_cast<double>(new_w - kIrImageSize) / 2.0));
    image = image.slice(0, top, top + kIrImageSize).slice(1, left, left + kIrImageSize);
    // ToTensor: float32 / 255; Normalize: (x - mean) / std.
    const torch::Tensor x = image.permute({2, 0, 1}).to(torch::kFloat32).div(255);
    out[i] = (x - mean) / std;
  }
  return out;
}

ImageRewardOutputs image_reward_forward(ImageRewardModel& model, const torch::Tensor& images,
                                        const std::vector<std::string>& prompts) {
  ir_check_images(images);
  if (static_cast<int64_t>(prompts.size()) != images.size(0))
    throw Error("ImageReward: " + std::to_string(prompts.size()) + " prompts for " + std::to_string(images.size(0)) + " images");
  torch::NoGradGuard no_grad;
  ImageRewardOutputs out;
  const BertTokens tokens = model.tokenizer->tokenize(prompts);
  out.input_ids = tokens.input_ids;
  out.attention_mask = tokens.attention_mask;
  if (prompts.empty()) {
    out.rewards = torch::empty({0}, torch::kFloat64);
    return out;
  }
  const torch::Tensor pixels = image_reward_pixels(images).to(model.device);
  out.image_embeds = model.encode_image(pixels);
  const torch::Tensor hidden =
      model.encode_text(tokens.input_ids.to(model.device), tokens.attention_mask.to(model.device), out.image_embeds);
  out.text_features = hidden.select(1, 0);  // (N, C): last_hidden_state[:, 0, :]
  torch::Tensor rewards = out.text_features;
  for (const IrLinear& linear : model.mlp) rewards = linear(rewards);  // (N, 1); the dropouts are identity
  rewards = (rewards - kIrRewardMean) / kIrRewardStd;
  out.rewards = rewards.squeeze(1).to(torch::kCPU, torch::kFloat64);
  out.image_embeds = out.image_embeds.to(torch::kCPU);
  out.text_features = out.text_features.to(torch::kCPU);
  return out;
}

torch::Tensor image_reward_scores(ImageRewardModel& model, const torch::Tensor& images, const std::vector<std::string>& prompts) {
  return image_reward_forward(model, images, prompts).rewards;
}

const BertTokenizer& image_reward_tokenizer(const ImageRewardModel& model) { return *model.tokenizer; }

}  // namespace ilf
