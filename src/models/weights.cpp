// Weight reading, layout conversion, backbone construction through the family registry and strict
// loading (see include/ilf/models/weights.h).
#include "ilf/models/weights.h"

#include <spdlog/spdlog.h>
#include <torch/script.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/util/checks.h"

namespace ilf {
namespace {

namespace fs = std::filesystem;

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

bool is_zip_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {0, 0, 0, 0};
  in.read(magic, 4);
  return in && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4;
}

TensorMap read_zip_weights(const std::string& path) {
  try {
    torch::jit::Module module = torch::jit::load(path, torch::kCPU);
    TensorMap tensors;
    for (const auto& p : module.named_parameters(/*recurse=*/true)) tensors[p.name] = p.value.detach();
    for (const auto& b : module.named_buffers(/*recurse=*/true)) tensors[b.name] = b.value.detach();
    return tensors;
  } catch (const c10::Error& e) {
    // LibTorch cannot unpickle torch.save'd checkpoints in general (OrderedDict, nn.Parameter, ...).
    throw Error(path + ": not a TorchScript archive (" + short_torch_error(e) +
                "). A torch.save checkpoint (.pt / .pth) must first be converted with scripts/export_weights.py");
  }
}

TensorMap read_weights_folder(const std::string& path) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(path))
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    if (fs::is_directory(fs::path(path) / "transformer")) return read_weights_folder((fs::path(path) / "transformer").string());
    throw Error(path + ": folder holds no *.safetensors file (nor a transformer/ folder with one)");
  }
  TensorMap merged;
  for (const auto& file : files) {
    for (auto& [name, tensor] : read_safetensors(file.string()).tensors) {
      if (merged.count(name)) throw Error(file.string() + ": tensor \"" + name + "\" also appears in another shard of " + path);
      merged.emplace(name, std::move(tensor));
    }
  }
  return merged;
}

// ---- layout -------------------------------------------------------------------------------------

bool has_official_keys(const TensorMap& w) { return w.count("x_embedder.proj.weight") > 0; }
bool has_diffusers_keys(const TensorMap& w) { return w.count("pos_embed.proj.weight") > 0; }
// diffusers' DiT keeps the class embedder inside each block's adaLN-Zero norm.
bool has_diffusers_dit_keys(const TensorMap& w) {
  return has_diffusers_keys(w) && w.count("transformer_blocks.0.norm1.emb.class_embedder.embedding_table.weight") > 0;
}

// Moves tensor `from` of `w` to `to` in `out`. A missing key is left alone: the strict loading reports
// it as a missing official key next to the unexpected diffusers ones.
void move_key(TensorMap& w, TensorMap& out, const std::string& from, const std::string& to) {
  auto it = w.find(from);
  if (it == w.end()) return;
  out[to] = it->second;
  w.erase(it);
}

// Renames modules: the ".weight" and ".bias" of each (diffusers name, official name) pair.
void move_modules(TensorMap& w, TensorMap& out, const std::vector<std::pair<std::string, std::string>>& renames) {
  for (const auto& [from, to] : renames) {
    move_key(w, out, from + ".weight", to + ".weight");
    move_key(w, out, from + ".bias", to + ".bias");
  }
}

// diffusers PixArtTransformer2DModel -> official key names (mapping of the reference README, case 5).
TensorMap convert_diffusers_pixart(TensorMap w) {
  TensorMap out;
  auto move = [&](const std::string& from, const std::string& to) { move_key(w, out, from, to); };
  // Concatenates the pieces along dim 0 when all of them exist (otherwise they stay, and surface as
  // unexpected keys next to the missing official key).
  auto concat = [&](const std::vector<std::string>& from, const std::string& to) {
    std::vector<torch::Tensor> parts;
    for (const auto& f : from) {
      auto it = w.find(f);
      if (it == w.end()) return;
      parts.push_back(it->second);
    }
    out[to] = torch::cat(parts, 0);
    for (const auto& f : from) w.erase(f);
  };
  const std::vector<std::pair<std::string, std::string>> renames = {
      {"pos_embed.proj", "x_embedder.proj"},
      {"caption_projection.linear_1", "y_embedder.y_proj.fc1"},
      {"caption_projection.linear_2", "y_embedder.y_proj.fc2"},
      {"adaln_single.emb.timestep_embedder.linear_1", "t_embedder.mlp.0"},
      {"adaln_single.emb.timestep_embedder.linear_2", "t_embedder.mlp.2"},
      {"adaln_single.emb.resolution_embedder.linear_1", "csize_embedder.mlp.0"},
      {"adaln_single.emb.resolution_embedder.linear_2", "csize_embedder.mlp.2"},
      {"adaln_single.emb.aspect_ratio_embedder.linear_1", "ar_embedder.mlp.0"},
      {"adaln_single.emb.aspect_ratio_embedder.linear_2", "ar_embedder.mlp.2"},
      {"adaln_single.linear", "t_block.1"},
      {"proj_out", "final_layer.linear"},
  };
  move_modules(w, out, renames);
  move("scale_shift_table", "final_layer.scale_shift_table");

  std::set<int64_t> block_ids;
  const std::regex block_key(R"(transformer_blocks\.(\d+)\..*)");
  for (const auto& [name, tensor] : w) {
    std::smatch m;
    if (std::regex_match(name, m, block_key)) block_ids.insert(std::stoll(m[1].str()));
  }
  for (const int64_t i : block_ids) {
    const std::string d = "transformer_blocks." + std::to_string(i) + ".";
    const std::string o = "blocks." + std::to_string(i) + ".";
    move(d + "scale_shift_table", o + "scale_shift_table");
    for (const std::string p : {".weight", ".bias"}) {
      concat({d + "attn1.to_q" + p, d + "attn1.to_k" + p, d + "attn1.to_v" + p}, o + "attn.qkv" + p);
      move(d + "attn1.to_out.0" + p, o + "attn.proj" + p);
      move(d + "attn2.to_q" + p, o + "cross_attn.q_linear" + p);
      concat({d + "attn2.to_k" + p, d + "attn2.to_v" + p}, o + "cross_attn.kv_linear" + p);
      move(d + "attn2.to_out.0" + p, o + "cross_attn.proj" + p);
      move(d + "ff.net.0.proj" + p, o + "mlp.fc1" + p);
      move(d + "ff.net.2" + p, o + "mlp.fc2" + p);
    }
  }
  for (auto& [name, tensor] : w) out[name] = tensor;  // unmapped keys stay and are reported on load
  return out;
}

// diffusers DiTTransformer2DModel -> official DiT key names. Each diffusers block holds its own copy of
// the timestep and class embedders (norm1.emb) and the final layer uses block 0's; the official DiT has
// one t_embedder and y_embedder, so every block's copy must equal block 0's (as in checkpoints converted
// from the official ones) and is dropped. The adaLN chunk orders (shift, scale, gate for attention then
// MLP; shift, scale for the final layer) are the same in both.
TensorMap convert_diffusers_dit(TensorMap w, const std::string& source) {
  TensorMap out;
  auto move = [&](const std::string& from, const std::string& to) { move_key(w, out, from, to); };
  std::set<int64_t> block_ids;
  const std::regex block_key(R"(transformer_blocks\.(\d+)\..*)");
  for (const auto& [name, tensor] : w) {
    std::smatch m;
    if (std::regex_match(name, m, block_key)) block_ids.insert(std::stoll(m[1].str()));
  }
  const std::string emb = "transformer_blocks.0.norm1.emb.";
  const std::vector<std::pair<std::string, std::string>> embedders = {
      {"timestep_embedder.linear_1.weight", "t_embedder.mlp.0.weight"},
      {"timestep_embedder.linear_1.bias", "t_embedder.mlp.0.bias"},
      {"timestep_embedder.linear_2.weight", "t_embedder.mlp.2.weight"},
      {"timestep_embedder.linear_2.bias", "t_embedder.mlp.2.bias"},
      {"class_embedder.embedding_table.weight", "y_embedder.embedding_table.weight"}};
  for (const int64_t i : block_ids) {
    if (i == 0) continue;
    const std::string copy = "transformer_blocks." + std::to_string(i) + ".norm1.emb.";
    for (const auto& [part, official] : embedders) {
      auto it = w.find(copy + part), first = w.find(emb + part);
      if (it == w.end() || first == w.end()) continue;  // left to the strict loading's missing / unexpected keys
      if (!it->second.sizes().equals(first->second.sizes()) || !torch::equal(it->second, first->second))
        throw Error(source + ": \"" + copy + part +
                    "\" differs from block 0's: the diffusers DiT's blocks carry "
                    "different timestep / class embedders, which the official DiT (one shared embedder) cannot represent");
      w.erase(it);
    }
  }
  for (const auto& [part, official] : embedders) move(emb + part, official);
  const std::vector<std::pair<std::string, std::string>> renames = {
      {"pos_embed.proj", "x_embedder.proj"},
      {"proj_out_1", "final_layer.adaLN_modulation.1"},
      {"proj_out_2", "final_layer.linear"},
  };
  move_modules(w, out, renames);
  for (const int64_t i : block_ids) {
    const std::string d = "transformer_blocks." + std::to_string(i) + ".";
    const std::string o = "blocks." + std::to_string(i) + ".";
    for (const std::string p : {".weight", ".bias"}) {
      std::vector<torch::Tensor> qkv;
      for (const char* part : {"to_q", "to_k", "to_v"})
        if (auto it = w.find(d + "attn1." + part + p); it != w.end()) qkv.push_back(it->second);
      if (qkv.size() == 3) {
        out[o + "attn.qkv" + p] = torch::cat(qkv, 0);
        for (const char* part : {"to_q", "to_k", "to_v"}) w.erase(d + "attn1." + part + p);
      }
      move(d + "norm1.linear" + p, o + "adaLN_modulation.1" + p);
      move(d + "attn1.to_out.0" + p, o + "attn.proj" + p);
      move(d + "ff.net.0.proj" + p, o + "mlp.fc1" + p);
      move(d + "ff.net.2" + p, o + "mlp.fc2" + p);
    }
  }
  for (auto& [name, tensor] : w) out[name] = tensor;  // unmapped keys stay and are reported on load
  return out;
}

}  // namespace

TensorMap read_weights(const std::string& path) {
  TensorMap weights;
  if (fs::is_directory(path)) {
    weights = read_weights_folder(path);
  } else {
    if (!fs::exists(path)) throw Error(path + ": weights file not found");
    require_regular_file(path, "weights file");
    weights = is_zip_file(path) ? read_zip_weights(path) : read_safetensors(path).tensors;
  }
  require_finite_tensors(weights, path);
  return weights;
}

TensorMap to_official_layout(TensorMap weights, const std::string& source, WeightLayout* layout) {
  if (!has_official_keys(weights) && !has_diffusers_keys(weights)) {
    // A checkpoint dict wrapping the state dict: take the keys under the first prefix that holds one.
    for (const std::string prefix : {"state_dict.", "ema.", "model.", "module."}) {
      TensorMap inner;
      for (const auto& [name, tensor] : weights)
        if (starts_with(name, prefix)) inner[name.substr(prefix.size())] = tensor;
      if (has_official_keys(inner) || has_diffusers_keys(inner)) {
        if (inner.size() != weights.size())
          spdlog::info("{}: using the {} tensors under \"{}\" (ignoring {} others)", source, inner.size(), prefix,
                       weights.size() - inner.size());
        weights = std::move(inner);
        break;
      }
    }
  }
  if (has_official_keys(weights)) {
    if (layout) *layout = WeightLayout::kOfficial;
    return weights;
  }
  if (has_diffusers_dit_keys(weights)) {
    if (layout) *layout = WeightLayout::kDiffusersDiT;
    return convert_diffusers_dit(std::move(weights), source);
  }
  if (has_diffusers_keys(weights)) {
    if (layout) *layout = WeightLayout::kDiffusersPixArt;
    return convert_diffusers_pixart(std::move(weights));
  }
  std::string sample;
  int shown = 0;
  for (const auto& [name, tensor] : weights) {
    if (shown++ == 5) break;
    sample += (sample.empty() ? "" : ", ") + name;
  }
  throw Error(source +
              ": not DiT or PixArt weights in a known layout (expected x_embedder.proj.weight, or "
              "pos_embed.proj.weight for diffusers; found " +
              std::to_string(weights.size()) + " tensors: " + sample + (weights.size() > 5 ? ", ..." : "") + ")");
}

std::string detect_family(const TensorMap& weights, const std::string& source) {
  const TensorMap w = to_official_layout(weights, source);
  std::string markers;
  for (const BackboneFamily& family : backbone_families()) {
    if (w.count(family.marker_key)) return family.name;
    markers += (markers.empty() ? "neither " : " nor ") + family.marker_description;
  }
  throw Error(source + ": cannot tell the model family (" + markers + " is present)");
}

BackbonePtr make_backbone(const ModelSpec& spec) {
  std::string names;
  for (const BackboneFamily& family : backbone_families()) names += (names.empty() ? "\"" : " or \"") + family.name + "\"";
  if (!spec.family) throw spec.invalid("family", "given: " + names);
  const BackboneFamily* family = find_backbone_family(*spec.family);
  if (!family) throw spec.invalid("family", names + " (got \"" + *spec.family + "\")");
  return family->make(spec);
}

BackbonePtr make_backbone_for_weights(const TensorMap& weights, const ModelSpec& spec, const std::string& source) {
  WeightLayout layout = WeightLayout::kOfficial;
  const TensorMap w = to_official_layout(weights, source, &layout);
  const std::string family = detect_family(w, source);
  if (spec.family && *spec.family != family)
    throw spec.invalid("family", "\"" + family + "\" for these weights (got \"" + *spec.family + "\")");
  return find_backbone_family(family)->make_for_weights(w, layout, spec, source);
}

void load_backbone_weights(Backbone& model, TensorMap weights, const std::string& source) {
  WeightLayout layout = WeightLayout::kOfficial;
  const TensorMap w = to_official_layout(std::move(weights), source, &layout);
  for (const auto& [name, tensor] : w)
    if (name.find(".attn.sr.") != std::string::npos)
      throw Error(source + ": \"" + name + "\" belongs to PixArt-Sigma KV compression, which is not supported");

  std::map<std::string, torch::Tensor> targets;
  for (const auto& p : model.named_parameters(/*recurse=*/true)) targets[p.key()] = p.value();
  for (const auto& b : model.named_buffers(/*recurse=*/true)) targets[b.key()] = b.value();

  std::vector<std::string> missing, unexpected, wrong_shape;
  for (const auto& [name, target] : targets) {
    auto it = w.find(name);
    if (it == w.end()) {
      const bool optional = name == "pos_embed" || (model.family() == "pixart" && name == "y_embedder.y_embedding");
      if (!optional) missing.push_back(name);
    } else if (!it->second.sizes().equals(target.sizes())) {
      wrong_shape.push_back(name + " (file " + shape_of(it->second) + ", model " + shape_of(target) + ")");
    } else if (!it->second.is_floating_point()) {
      wrong_shape.push_back(name + " (file dtype " + std::string(c10::toString(it->second.scalar_type())) +
                            ", expected a float type)");
    }
  }
  for (const auto& [name, tensor] : w)
    if (!targets.count(name)) unexpected.push_back(name);

  if (!missing.empty() || !unexpected.empty() || !wrong_shape.empty()) {
    auto list = [](const std::vector<std::string>& names) {
      std::string s;
      for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
      return s;
    };
    std::string message = source + ": weights do not fit the " + model.family() + " model (depth " +
                          std::to_string(model.depth()) + ", hidden_size " + std::to_string(model.hidden_size()) + ")";
    if (!missing.empty()) message += "; " + std::to_string(missing.size()) + " missing: " + list(missing);
    if (!unexpected.empty()) message += "; " + std::to_string(unexpected.size()) + " unexpected: " + list(unexpected);
    if (!wrong_shape.empty()) message += "; " + std::to_string(wrong_shape.size()) + " wrong shape: " + list(wrong_shape);
    throw Error(message);
  }

  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) {
    auto it = w.find(name);
    if (it != w.end()) target.copy_(it->second);
  }
  if (auto* pixart = dynamic_cast<PixArtImpl*>(&model))
    pixart->set_builtin_null_caption_available(w.count("y_embedder.y_embedding") > 0);
  spdlog::debug("{}: loaded {} tensors ({} layout)", source, w.size(),
                layout == WeightLayout::kOfficial
                    ? "official"
                    : (layout == WeightLayout::kDiffusersDiT ? "diffusers DiT" : "diffusers PixArt"));
}

void move_backbone(Backbone& model, const torch::Device& device, torch::Dtype dtype) {
  if (dtype != torch::kFloat32 && dtype != torch::kBFloat16 && dtype != torch::kFloat16)
    throw Error("backbone dtype must be float32, bfloat16 or float16, got " + std::string(c10::toString(dtype)));
  if (device.is_cuda() && !torch::cuda::is_available())
    throw Error("backbone device " + device.str() + ": CUDA is not available");
  if (dtype != torch::kFloat32 && !device.is_cuda())
    throw Error("backbone dtype " + std::string(c10::toString(dtype)) + " needs a CUDA device (got " + device.str() +
                "); use float32 on the CPU");
  model.to(device, dtype);
}

torch::Dtype parse_dtype(const std::string& name) {
  if (name == "float32" || name == "fp32") return torch::kFloat32;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "float16" || name == "fp16" || name == "half") return torch::kFloat16;
  throw Error("unknown dtype \"" + name + "\" (expected float32, bfloat16 or float16)");
}

}  // namespace ilf
