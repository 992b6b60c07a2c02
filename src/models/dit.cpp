// DiT backbone (see include/ilf/models/dit.h).
#include "ilf/models/dit.h"

#include <array>
#include <map>
#include <regex>
#include <sstream>

#include "ilf/error.h"
#include "ilf/models/weights.h"

namespace ilf {

DiTConfig DiTConfig::preset(const std::string& name) {
  // name: DiT-<size>/<patch>
  static const std::map<std::string, std::array<int64_t, 3>> sizes = {
      // size: {depth, hidden_size, num_heads}
      {"S", {12, 384, 6}},
      {"B", {12, 768, 12}},
      {"L", {24, 1024, 16}},
      {"XL", {28, 1152, 16}},
  };
  const std::regex pattern("DiT-(S|B|L|XL)/(2|4|8)");
  std::smatch match;
  if (!std::regex_match(name, match, pattern))
    throw Error("unknown DiT preset \"" + name +
                "\" (expected DiT-S/2, DiT-B/4, DiT-L/8, DiT-XL/2, ...: size S, B, L or XL, patch 2, 4 or 8)");
  const auto& s = sizes.at(match[1].str());
  DiTConfig config;
  config.depth = s[0];
  config.hidden_size = s[1];
  config.num_heads = s[2];
  config.patch_size = std::stoll(match[2].str());
  return config;
}

DiTConfig DiTConfig::from_spec(const ModelSpec& spec) { return from_spec(spec, DiTConfig{}); }

DiTConfig DiTConfig::from_spec(const ModelSpec& spec, const DiTConfig& defaults) {
  DiTConfig c = defaults;
  complete_transformer_settings(c, spec);
  c.num_classes = spec.num_classes.value_or(c.num_classes);
  c.learn_sigma = spec.learn_sigma.value_or(c.learn_sigma);
  for (const auto& [field, given] : {std::pair<const char*, bool>{"variant", spec.variant.has_value()},
                                     {"pred_sigma", spec.pred_sigma.has_value()},
                                     {"caption_channels", spec.caption_channels.has_value()},
                                     {"model_max_length", spec.model_max_length.has_value()},
                                     {"lewei_scale", spec.lewei_scale.has_value()},
                                     {"pe_interpolation", spec.pe_interpolation.has_value()},
                                     {"qk_norm", spec.qk_norm.has_value()},
                                     {"kv_compress", spec.kv_compress.has_value()}})
    if (given) throw spec.invalid(field, "absent for a DiT (it is a PixArt setting)");
  c.validate(spec.where());
  return c;
}

void DiTConfig::validate(const std::string& where) const {
  auto fail = [&](const std::string& field, const std::string& expectation) {
    throw Error(where + "." + field + " must be " + expectation);
  };
  validate_transformer_shape(*this, where);
  validate_transformer_width(*this, where);
  if (num_classes < 1) fail("num_classes", ">= 1, got " + std::to_string(num_classes));
  if (timestep_freq_shift != 0 && timestep_freq_shift != 1)
    fail("timestep_freq_shift", "0 (official) or 1 (diffusers), got " + std::to_string(timestep_freq_shift));
  if (!(mlp_norm_eps > 0)) fail("mlp_norm_eps", "positive, got " + std::to_string(mlp_norm_eps));
}

DiTBlockImpl::DiTBlockImpl(int64_t hidden_size, int64_t num_heads, double mlp_ratio, double mlp_norm_eps)
    : mlp_norm_eps(mlp_norm_eps) {
  attn = register_module("attn", SelfAttention(hidden_size, num_heads));
  const auto mlp_hidden = static_cast<int64_t>(hidden_size * mlp_ratio);
  mlp = register_module("mlp", Mlp(hidden_size, mlp_hidden, hidden_size));
  adaLN_modulation = register_module("adaLN_modulation",
                                     torch::nn::Sequential(torch::nn::SiLU(), torch::nn::Linear(hidden_size, 6 * hidden_size)));
}

torch::Tensor DiTBlockImpl::forward(const torch::Tensor& h, const Conditioning& cond) {
  // 6 x (B, 1, D): shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
  const std::vector<torch::Tensor> m = adaLN_modulation->forward(cond.block).unsqueeze(1).chunk(6, -1);
  torch::Tensor x = h + m[2] * attn(modulate(layer_norm_no_affine(h), m[0], m[1]));
  x = x + m[5] * mlp(modulate(layer_norm_no_affine(x, mlp_norm_eps), m[3], m[4]));
  return x;
}

torch::Tensor DiTBlockImpl::modulated_input(const torch::Tensor& h, const Conditioning& cond) {
  const std::vector<torch::Tensor> m = adaLN_modulation->forward(cond.block).unsqueeze(1).chunk(6, -1);
  return modulate(layer_norm_no_affine(h), m[0], m[1]);  // (B, T, D)
}

LabelEmbedderImpl::LabelEmbedderImpl(int64_t num_classes, int64_t hidden_size) {
  embedding_table = register_module("embedding_table", torch::nn::Embedding(num_classes + 1, hidden_size));
}

DiTFinalLayerImpl::DiTFinalLayerImpl(int64_t hidden_size, int64_t patch_size, int64_t out_channels) {
  linear = register_module("linear", torch::nn::Linear(hidden_size, patch_size * patch_size * out_channels));
  adaLN_modulation = register_module("adaLN_modulation",
                                     torch::nn::Sequential(torch::nn::SiLU(), torch::nn::Linear(hidden_size, 2 * hidden_size)));
}

torch::Tensor DiTFinalLayerImpl::forward(const torch::Tensor& h, const torch::Tensor& c) {
  const std::vector<torch::Tensor> m = adaLN_modulation->forward(c).unsqueeze(1).chunk(2, -1);  // shift, scale (B, 1, D)
  return linear(modulate(layer_norm_no_affine(h), m[0], m[1]));
}

DiTImpl::DiTImpl(const DiTConfig& config) : PatchTransformer("DiT", config) {
  x_embedder = register_module("x_embedder", PatchEmbed(config_.patch_size, config_.in_channels, config_.hidden_size));
  t_embedder = register_module("t_embedder", TimestepEmbedder(config_.hidden_size, 256, config_.timestep_freq_shift));
  y_embedder = register_module("y_embedder", LabelEmbedder(config_.num_classes, config_.hidden_size));
  const int64_t grid = config_.grid_size();
  pos_embed = register_buffer("pos_embed", sincos_pos_embed_2d(config_.hidden_size, grid, grid, grid).unsqueeze(0));
  register_blocks();
  final_layer = register_module("final_layer", DiTFinalLayer(config_.hidden_size, config_.patch_size, config_.out_channels()));
}

torch::Tensor DiTImpl::embed(const torch::Tensor& x) {
  if (x.dim() != 4 || x.size(1) != config_.in_channels || x.size(2) != config_.input_size || x.size(3) != config_.input_size) {
    std::ostringstream got;
    got << x.sizes();
    throw Error("DiT: input x must be (B, " + std::to_string(config_.in_channels) + ", " + std::to_string(config_.input_size) +
                ", " + std::to_string(config_.input_size) + ") (square latents of input_size), got " + got.str());
  }
  return x_embedder(x) + pos_embed.to(x_embedder->proj->weight.scalar_type());  // (B, T, D)
}

torch::Tensor DiTImpl::embed_labels(const torch::Tensor& labels) {
  if (!labels.defined()) throw Error("DiT: class_labels are required (null class = " + std::to_string(config_.num_classes) + ")");
  if (labels.dim() != 1 || (labels.scalar_type() != torch::kInt64 && labels.scalar_type() != torch::kInt32))
    throw Error("DiT: class_labels must be a 1-D int64 tensor (B,)");
  if (labels.numel() > 0 && !labels.device().is_cpu()) {
    // Checked on the device without a host synchronisation (sampling loops and CUDA-graph capture
    // must not wait for the GPU); an out-of-range label fails the kernel assert.
    torch::_assert_async(labels.ge(0).logical_and(labels.le(config_.num_classes)).all());
  } else if (labels.numel() > 0) {
    const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
    if (lo < 0 || hi > config_.num_classes)
      throw Error("DiT: class labels must lie in [0, " + std::to_string(config_.num_classes) + "] (" +
                  std::to_string(config_.num_classes) + " = null class), got values in [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
  }
  return y_embedder(labels.to(torch::kInt64).to(pos_embed.device()));
}

Conditioning DiTImpl::condition(const torch::Tensor& t, const ConditionInputs& inputs) {
  const torch::Tensor y_emb = embed_labels(inputs.class_labels);  // (B, D)
  torch::Tensor times = t.reshape({-1});
  if (times.numel() == 1 && y_emb.size(0) != 1) times = times.expand({y_emb.size(0)});
  if (times.numel() != y_emb.size(0))
    throw Error("DiT: " + std::to_string(times.numel()) + " timesteps for " + std::to_string(y_emb.size(0)) + " class labels");
  Conditioning cond;
  cond.block = embed_timestep(times) + y_emb;  // c (B, D)
  cond.head = cond.block;
  return cond;
}

torch::Tensor DiTImpl::final_tokens(const torch::Tensor& h, const Conditioning& cond) { return final_layer(h, cond.head); }

BlockPtr DiTImpl::new_block() const {
  return std::make_shared<DiTBlockImpl>(config_.hidden_size, config_.num_heads, config_.mlp_ratio, config_.mlp_norm_eps);
}

ConditionInputs DiTImpl::null_condition(const ConditionInputs& like) const {
  if (!like.class_labels.defined()) throw Error("DiT::null_condition: `like` has no class_labels to take the batch size from");
  ConditionInputs null;
  null.class_labels = torch::full_like(like.class_labels, config_.num_classes);
  return null;
}

void DiTImpl::set_null_condition(const ConditionInputs&) {
  throw Error("DiT: the null condition is the null class (num_classes = " + std::to_string(config_.num_classes) +
              ") and cannot be replaced");
}

nlohmann::json DiTImpl::architecture_json() const {
  const DiTConfig& c = config_;
  nlohmann::json j = transformer_settings_json(c);
  j["family"] = "dit";
  j["num_classes"] = c.num_classes;
  j["learn_sigma"] = c.learn_sigma;
  if (c.timestep_freq_shift != 0 || c.mlp_norm_eps != 1e-6) {  // diffusers' numerics (weights in its layout)
    j["timestep_freq_shift"] = c.timestep_freq_shift;
    j["mlp_norm_eps"] = c.mlp_norm_eps;
  }
  return j;
}

// ---- architecture from weights (the registry entry) ---------------------------------------------

namespace {

// Weights in diffusers' DiT layout run with diffusers' DiT forward (see DiTConfig).
void use_numerics_of_layout(DiTConfig& c, WeightLayout layout) {
  const bool diffusers = layout == WeightLayout::kDiffusersDiT;
  c.timestep_freq_shift = diffusers ? 1 : 0;
  c.mlp_norm_eps = diffusers ? 1e-5 : 1e-6;
}

// `weights` in the official layout, converted from `layout`.
DiTConfig infer_dit_from_official(const TensorMap& w, WeightLayout layout, const std::string& source) {
  DiTConfig c;
  use_numerics_of_layout(c, layout);
  const TransformerShape shape = infer_transformer_shape(w, source);
  c.hidden_size = shape.hidden_size;
  c.in_channels = shape.in_channels;
  c.patch_size = shape.patch_size;
  c.depth = shape.depth;
  c.learn_sigma = shape.doubled_output;
  c.num_classes = shape_tensor(w, "y_embedder.embedding_table.weight", 2, "num_classes", source).size(0) - 1;
  c.mlp_ratio = infer_mlp_ratio(w, c.hidden_size, source);
  c.input_size = infer_input_size(w, c.patch_size);
  c.num_heads = 0;
  return c;
}

BackbonePtr dit_for_spec(const ModelSpec& spec) { return std::make_shared<DiTImpl>(DiTConfig::from_spec(spec)); }

BackbonePtr dit_for_weights(const TensorMap& w, WeightLayout layout, const ModelSpec& spec, const std::string& source) {
  const DiTConfig inferred = infer_dit_from_official(w, layout, source);
  DiTConfig base = inferred;
  base.num_heads = default_num_heads(spec, inferred.hidden_size);
  if (inferred.input_size == 0) {
    if (!spec.input_size) throw spec.invalid("input_size", "given: the weights have no pos_embed to infer it from");
    base.input_size = 32;
  }
  const DiTConfig c = DiTConfig::from_spec(spec, base);
  auto agree = [&](const std::string& key, double from_weights, double configured) {
    expect_spec_agrees(spec, key, from_weights, configured);
  };
  expect_spec_agrees_on_shape(spec, inferred, c);
  agree("num_classes", inferred.num_classes, c.num_classes);
  agree("learn_sigma", inferred.learn_sigma, c.learn_sigma);
  agree("mlp_ratio", inferred.mlp_ratio, c.mlp_ratio);
  if (inferred.input_size != 0) agree("input_size", inferred.input_size, c.input_size);
  return std::make_shared<DiTImpl>(c);
}

}  // namespace

DiTConfig infer_dit_config(const TensorMap& weights, const std::string& source) {
  WeightLayout layout = WeightLayout::kOfficial;
  const TensorMap w = to_official_layout(weights, source, &layout);
  return infer_dit_from_official(w, layout, source);
}

BackboneFamily dit_family() {
  return {"dit", "y_embedder.embedding_table.weight", "y_embedder.embedding_table.weight (DiT)", &dit_for_spec, &dit_for_weights};
}

}  // namespace ilf
