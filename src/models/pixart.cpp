// PixArt-alpha / alpha-MS / Sigma backbone (see include/ilf/models/pixart.h).
#include "ilf/models/pixart.h"

#include <spdlog/spdlog.h>

#include <sstream>

#include "ilf/error.h"
#include "ilf/models/weights.h"

namespace ilf {
namespace {

// A caption mask in any of the official layouts ((B, L), (B, 1, L), (B, 1, 1, L)) -> (batch, L) bool.
// Undefined -> all valid. A mask with fewer rows that divide `batch` is tiled, as the official code does.
torch::Tensor normalise_caption_mask(const torch::Tensor& mask, int64_t batch, int64_t length, const torch::Device& device) {
  if (!mask.defined()) return torch::ones({batch, length}, torch::TensorOptions().dtype(torch::kBool).device(device));
  if (mask.dim() < 2 || mask.dim() > 4 || mask.size(-1) != length || mask.numel() % length != 0)
    throw Error("PixArt: caption_mask must be (B, L) with L = " + std::to_string(length) + " caption tokens, got " +
                shape_of(mask));
  torch::Tensor m = mask.reshape({-1, length});
  if (m.size(0) != batch) {
    if (m.size(0) == 0 || batch % m.size(0) != 0)
      throw Error("PixArt: caption_mask has " + std::to_string(m.size(0)) + " rows for a batch of " + std::to_string(batch));
    m = m.repeat({batch / m.size(0), 1});
  }
  return (m != 0).to(device);
}

}  // namespace

PixArtConfig PixArtConfig::from_spec(const ModelSpec& spec) { return from_spec(spec, PixArtConfig{}); }

PixArtConfig PixArtConfig::from_spec(const ModelSpec& spec, const PixArtConfig& defaults) {
  PixArtConfig c = defaults;
  c.variant = spec.variant.value_or(c.variant);
  complete_transformer_settings(c, spec);
  c.pred_sigma = spec.pred_sigma.value_or(c.pred_sigma);
  c.caption_channels = spec.caption_channels.value_or(c.caption_channels);
  c.model_max_length = spec.model_max_length.value_or(c.model_max_length);
  if (spec.lewei_scale && c.variant == "sigma")
    throw spec.invalid("lewei_scale", "absent for variant \"sigma\" (PixArt-Sigma scales its pos embedding by pe_interpolation)");
  if (spec.pe_interpolation && c.variant != "sigma")
    throw spec.invalid("pe_interpolation",
                       "absent for variant \"" + c.variant + "\" (PixArt-alpha scales its pos embedding by lewei_scale)");
  c.lewei_scale = spec.lewei_scale.value_or(c.lewei_scale);
  c.pe_interpolation = spec.pe_interpolation.value_or(c.pe_interpolation);
  c.qk_norm = spec.qk_norm.value_or(c.qk_norm);
  c.kv_compress = spec.kv_compress.value_or(c.kv_compress);
  for (const auto& [field, given] :
       {std::pair<const char*, bool>{"num_classes", spec.num_classes.has_value()}, {"learn_sigma", spec.learn_sigma.has_value()}})
    if (given) throw spec.invalid(field, "absent for a PixArt model (it is a DiT setting)");
  c.validate(spec.where());
  return c;
}

void PixArtConfig::validate(const std::string& where) const {
  auto fail = [&](const std::string& field, const std::string& expectation) {
    throw Error(where + "." + field + " must be " + expectation);
  };
  if (variant != "alpha" && variant != "alpha_ms" && variant != "sigma")
    fail("variant", "one of alpha, alpha_ms, sigma (got \"" + variant + "\")");
  if (kv_compress) fail("kv_compress", "false: KV compression (the PixArt-Sigma kv-compress checkpoints) is not supported");
  validate_transformer_shape(*this, where);
  if (variant == "alpha_ms" && hidden_size % 3 != 0)
    fail("hidden_size", "a multiple of 3 for alpha_ms (the size and aspect-ratio embeddings are D/3 wide each), got " +
                            std::to_string(hidden_size));
  validate_transformer_width(*this, where);
  if (caption_channels < 1) fail("caption_channels", ">= 1, got " + std::to_string(caption_channels));
  if (model_max_length < 1) fail("model_max_length", ">= 1, got " + std::to_string(model_max_length));
  if (!(lewei_scale > 0)) fail("lewei_scale", "positive, got " + std::to_string(lewei_scale));
  if (!(pe_interpolation > 0)) fail("pe_interpolation", "positive, got " + std::to_string(pe_interpolation));
  if (qk_norm && variant != "sigma") fail("qk_norm", "false unless variant is \"sigma\" (qk LayerNorm is a PixArt-Sigma option)");
}

PixArtBlockImpl::PixArtBlockImpl(int64_t hidden_size, int64_t num_heads, double mlp_ratio, bool qk_norm) {
  attn = register_module("attn", SelfAttention(hidden_size, num_heads, qk_norm));
  cross_attn = register_module("cross_attn", CrossAttention(hidden_size, num_heads));
  mlp = register_module("mlp", Mlp(hidden_size, static_cast<int64_t>(hidden_size * mlp_ratio), hidden_size));
  scale_shift_table = register_parameter("scale_shift_table", torch::randn({6, hidden_size}) / std::sqrt(hidden_size));
}

torch::Tensor PixArtBlockImpl::forward(const torch::Tensor& h, const Conditioning& cond) {
  const int64_t batch = h.size(0), dim = h.size(2);
  // 6 x (B, 1, D): shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
  const std::vector<torch::Tensor> m = (scale_shift_table.unsqueeze(0) + cond.block.reshape({batch, 6, dim})).chunk(6, 1);
  torch::Tensor x = h + m[2] * attn(modulate(layer_norm_no_affine(h), m[0], m[1]));
  x = x + cross_attn(x, cond.caption_tokens, cond.caption_mask);
  x = x + m[5] * mlp(modulate(layer_norm_no_affine(x), m[3], m[4]));
  return x;
}

torch::Tensor PixArtBlockImpl::modulated_input(const torch::Tensor& h, const Conditioning& cond) {
  const int64_t batch = h.size(0), dim = h.size(2);
  const std::vector<torch::Tensor> m = (scale_shift_table.unsqueeze(0) + cond.block.reshape({batch, 6, dim})).chunk(6, 1);
  return modulate(layer_norm_no_affine(h), m[0], m[1]);  // (B, T, D)
}

CaptionEmbedderImpl::CaptionEmbedderImpl(int64_t caption_channels, int64_t hidden_size, int64_t max_length) {
  y_proj = register_module("y_proj", Mlp(caption_channels, hidden_size, hidden_size));
  y_embedding = register_buffer("y_embedding", torch::randn({max_length, caption_channels}) / std::sqrt(caption_channels));
}

T2IFinalLayerImpl::T2IFinalLayerImpl(int64_t hidden_size, int64_t patch_size, int64_t out_channels) {
  linear = register_module("linear", torch::nn::Linear(hidden_size, patch_size * patch_size * out_channels));
  scale_shift_table = register_parameter("scale_shift_table", torch::randn({2, hidden_size}) / std::sqrt(hidden_size));
}

torch::Tensor T2IFinalLayerImpl::forward(const torch::Tensor& h, const torch::Tensor& t) {
  const std::vector<torch::Tensor> m = (scale_shift_table.unsqueeze(0) + t.unsqueeze(1)).chunk(2, 1);  // shift, scale (B, 1, D)
  return linear(modulate(layer_norm_no_affine(h), m[0], m[1]));
}

PixArtImpl::PixArtImpl(const PixArtConfig& config) : PatchTransformer("PixArt", config) {
  const int64_t d = config_.hidden_size, base = config_.base_size();
  x_embedder = register_module("x_embedder", PatchEmbed(config_.patch_size, config_.in_channels, d));
  t_embedder = register_module("t_embedder", TimestepEmbedder(d));
  pos_embed = register_buffer(
      "pos_embed",
      sincos_pos_embed_2d(d, base, base, base, config_.pos_embed_scale(), config_.pos_embed_division()).unsqueeze(0));
  t_block = register_module("t_block", torch::nn::Sequential(torch::nn::SiLU(), torch::nn::Linear(d, 6 * d)));
  y_embedder = register_module("y_embedder", CaptionEmbedder(config_.caption_channels, d, config_.model_max_length));
  if (config_.micro_condition()) {
    csize_embedder = register_module("csize_embedder", TimestepEmbedder(d / 3));
    ar_embedder = register_module("ar_embedder", TimestepEmbedder(d / 3));
  }
  register_blocks();
  final_layer = register_module("final_layer", T2IFinalLayer(d, config_.patch_size, config_.out_channels()));
}

torch::Tensor PixArtImpl::positional_embedding(int64_t grid_h, int64_t grid_w) {
  const torch::Tensor& weight = x_embedder->proj->weight;
  if (!config_.recomputes_pos_embed()) {
    if (grid_h != config_.base_size() || grid_w != config_.base_size())
      throw Error("PixArt (variant alpha): the fixed pos_embed covers a " + std::to_string(config_.base_size()) + "x" +
                  std::to_string(config_.base_size()) + " token grid, got " + std::to_string(grid_h) + "x" +
                  std::to_string(grid_w) + " (use variant alpha_ms or sigma for other sizes)");
    return pos_embed.to(weight.scalar_type());
  }
  if (grid_h != cached_grid_h_ || grid_w != cached_grid_w_ || !cached_pos_embed_.defined() ||
      cached_pos_embed_.device() != weight.device() || cached_pos_embed_.scalar_type() != weight.scalar_type()) {
    cached_pos_embed_ = sincos_pos_embed_2d(config_.hidden_size, grid_h, grid_w, static_cast<double>(config_.base_size()),
                                            config_.pos_embed_scale(), config_.pos_embed_division())
                            .unsqueeze(0)
                            .to(weight.device(), weight.scalar_type());
    cached_grid_h_ = grid_h;
    cached_grid_w_ = grid_w;
  }
  return cached_pos_embed_;
}

torch::Tensor PixArtImpl::embed(const torch::Tensor& x) {
  const int64_t p = config_.patch_size;
  if (x.dim() != 4 || x.size(1) != config_.in_channels || x.size(2) % p != 0 || x.size(3) % p != 0 || x.size(2) == 0 ||
      x.size(3) == 0)
    throw Error("PixArt: input x must be (B, " + std::to_string(config_.in_channels) + ", H, W) with H and W multiples of " +
                std::to_string(p) + ", got " + shape_of(x));
  if (!config_.recomputes_pos_embed() && (x.size(2) != config_.input_size || x.size(3) != config_.input_size))
    throw Error("PixArt (variant alpha): input x must be square latents of input_size " + std::to_string(config_.input_size) +
                ", got " + shape_of(x) + " (use variant alpha_ms or sigma for other sizes)");
  return x_embedder(x) + positional_embedding(x.size(2) / p, x.size(3) / p);  // (B, T, D)
}

std::pair<torch::Tensor, torch::Tensor> PixArtImpl::embed_micro_conditions(const torch::Tensor& image_hw,
                                                                           const torch::Tensor& aspect_ratio, int64_t batch) {
  if (!config_.micro_condition()) throw Error("PixArt: micro-conditions exist only for variant alpha_ms");
  if (!image_hw.defined() || !aspect_ratio.defined())
    throw Error("PixArt (variant alpha_ms): the micro-conditions image_hw (B, 2) and aspect_ratio (B, 1) are required");
  // SizeEmbedder: s (b, d) -> every value through the timestep embedder -> (b, d * D/3).
  auto size_embed = [&](TimestepEmbedder& embedder, torch::Tensor s, int64_t values, const char* name) {
    if (s.dim() == 1) s = s.unsqueeze(1);
    if (s.dim() != 2 || s.size(1) != values || s.size(0) == 0 || batch % s.size(0) != 0)
      throw Error(std::string("PixArt (variant alpha_ms): ") + name + " must be (B, " + std::to_string(values) +
                  ") for a batch of " + std::to_string(batch) + ", got " + shape_of(s));
    if (s.size(0) != batch) s = s.repeat({batch / s.size(0), 1});
    return embedder(s.reshape({-1})).reshape({batch, -1});
  };
  return {size_embed(csize_embedder, image_hw, 2, "image_hw"), size_embed(ar_embedder, aspect_ratio, 1, "aspect_ratio")};
}

torch::Tensor PixArtImpl::project_caption(const torch::Tensor& caption) {
  if (!caption.defined()) throw Error("PixArt: a caption (B, L, " + std::to_string(config_.caption_channels) + ") is required");
  torch::Tensor y = caption;
  if (y.dim() == 4 && y.size(1) == 1) y = y.squeeze(1);
  if (y.dim() != 3 || y.size(2) != config_.caption_channels)
    throw Error("PixArt: caption must be (B, L, " + std::to_string(config_.caption_channels) + ") or (B, 1, L, " +
                std::to_string(config_.caption_channels) + "), got " + shape_of(caption));
  const torch::Tensor& weight = y_embedder->y_proj->fc1->weight;
  return y_embedder->y_proj(y.to(weight.device(), weight.scalar_type()));  // (B, L, D)
}

Conditioning PixArtImpl::condition(const torch::Tensor& t, const ConditionInputs& inputs) {
  Conditioning cond;
  cond.caption_tokens = project_caption(inputs.caption);  // (B, L, D)
  const int64_t batch = cond.caption_tokens.size(0), length = cond.caption_tokens.size(1);
  torch::Tensor times = t.reshape({-1});
  if (times.numel() == 1 && batch != 1) times = times.expand({batch});
  if (times.numel() != batch)
    throw Error("PixArt: " + std::to_string(times.numel()) + " timesteps for a batch of " + std::to_string(batch) + " captions");
  torch::Tensor t_vec = embed_timestep(times);  // (B, D)
  if (config_.micro_condition()) {
    const auto [csize, ar] = embed_micro_conditions(inputs.image_hw, inputs.aspect_ratio, batch);
    t_vec = t_vec + torch::cat({csize, ar}, 1);
  }
  cond.head = t_vec;                     // t (B, D)
  cond.block = t_block->forward(t_vec);  // t0 (B, 6D)
  cond.caption_mask = normalise_caption_mask(inputs.caption_mask, batch, length, cond.caption_tokens.device());
  return cond;
}

torch::Tensor PixArtImpl::final_tokens(const torch::Tensor& h, const Conditioning& cond) { return final_layer(h, cond.head); }

BlockPtr PixArtImpl::new_block() const {
  return std::make_shared<PixArtBlockImpl>(config_.hidden_size, config_.num_heads, config_.mlp_ratio, config_.qk_norm);
}

void PixArtImpl::set_null_caption(const torch::Tensor& caption, const torch::Tensor& mask) {
  if (!caption.defined() || caption.numel() == 0 || caption.size(-1) != config_.caption_channels ||
      caption.numel() / caption.size(-1) != caption.size(-2))
    throw Error("PixArt::set_null_caption: expected a caption (L, " + std::to_string(config_.caption_channels) + "), got " +
                (caption.defined() ? shape_of(caption) : std::string("an undefined tensor")));
  null_caption_ = caption.reshape({-1, config_.caption_channels}).detach();  // (L, C)
  const int64_t length = null_caption_.size(0);
  if (mask.defined()) {
    if (mask.numel() != length)
      throw Error("PixArt::set_null_caption: mask has " + std::to_string(mask.numel()) + " entries for " +
                  std::to_string(length) + " caption tokens");
    null_caption_mask_ = (mask.reshape({length}) != 0).to(torch::kCPU);
  } else {
    null_caption_mask_ = torch::ones({length}, torch::kBool);
  }
}

ConditionInputs PixArtImpl::null_condition(const ConditionInputs& like) const {
  if (!like.caption.defined())
    throw Error("PixArt::null_condition: `like` has no caption to take the batch size and length from");
  torch::Tensor caption, mask;  // (L, C), (L) bool
  if (null_caption_.defined()) {
    caption = null_caption_;
    mask = null_caption_mask_;
  } else if (config_.variant == "sigma") {
    throw Error("PixArt-Sigma has no built-in null caption: call set_null_caption() with the T5 features of the empty prompt");
  } else if (!builtin_null_caption_) {
    throw Error(
        "PixArt: the loaded weights carry no y_embedder.y_embedding (e.g. the diffusers layout): call set_null_caption() "
        "with the T5 features of the empty prompt");
  } else {
    // Reading: the buffer is a full-length learned null caption, so every token is valid. (The official
    // pipelines reuse the conditional caption's mask for it.)
    caption = y_embedder->y_embedding;
    mask = torch::ones({caption.size(0)}, torch::kBool);
  }
  const int64_t batch = like.caption.size(0), length = like.caption.size(-2);
  const int64_t own_length = caption.size(0);
  if (own_length > length) {
    if (mask.slice(0, length).any().item<bool>())
      throw Error("PixArt::null_condition: the null caption has valid tokens beyond position " + std::to_string(length) +
                  " (its length is " + std::to_string(own_length) + "): pad the captions to at least that many tokens");
    caption = caption.slice(0, 0, length);
    mask = mask.slice(0, 0, length);
  } else if (own_length < length) {
    caption = torch::cat({caption, torch::zeros({length - own_length, caption.size(1)}, caption.options())});
    mask = torch::cat({mask, torch::zeros({length - own_length}, mask.options())});
  }
  const torch::Device device = like.caption.device();
  ConditionInputs null;
  null.caption =
      caption.to(device, like.caption.scalar_type()).unsqueeze(0).expand({batch, length, caption.size(1)}).contiguous();
  if (like.caption.dim() == 4) null.caption = null.caption.unsqueeze(1);
  // Like `like`: no mask when `like` has none and every null token is valid.
  if (like.caption_mask.defined() || !mask.all().item<bool>()) {
    const auto mask_type = like.caption_mask.defined() ? like.caption_mask.scalar_type() : torch::kInt64;
    null.caption_mask = mask.to(device, mask_type).unsqueeze(0).expand({batch, length}).contiguous();
  }
  null.image_hw = like.image_hw;
  null.aspect_ratio = like.aspect_ratio;
  return null;
}

void PixArtImpl::set_null_condition(const ConditionInputs& null) {
  if (!null.caption.defined()) throw Error("PixArt::set_null_condition: the null condition has no caption");
  set_null_caption(null.caption, null.caption_mask);
}

nlohmann::json PixArtImpl::architecture_json() const {
  const PixArtConfig& c = config_;
  nlohmann::json j = transformer_settings_json(c);
  j.update({{"family", "pixart"},
            {"variant", c.variant},
            {"pred_sigma", c.pred_sigma},
            {"caption_channels", c.caption_channels},
            {"model_max_length", c.model_max_length},
            {"lewei_scale", c.lewei_scale},
            {"pe_interpolation", c.pe_interpolation},
            {"qk_norm", c.qk_norm}});
  return j;
}

// ---- architecture from weights (the registry entry) ---------------------------------------------

namespace {

// `weights` in the official layout.
PixArtConfig infer_pixart_from_official(const TensorMap& w, const std::string& source) {
  PixArtConfig c;
  const TransformerShape shape = infer_transformer_shape(w, source);
  c.hidden_size = shape.hidden_size;
  c.in_channels = shape.in_channels;
  c.patch_size = shape.patch_size;
  c.depth = shape.depth;
  c.pred_sigma = shape.doubled_output;
  c.caption_channels = shape_tensor(w, "y_embedder.y_proj.fc1.weight", 2, "caption_channels", source).size(1);
  c.mlp_ratio = infer_mlp_ratio(w, c.hidden_size, source);
  if (w.count("y_embedder.y_embedding"))
    c.model_max_length = shape_tensor(w, "y_embedder.y_embedding", 2, "model_max_length", source).size(0);
  c.qk_norm = w.count("blocks.0.attn.q_norm.weight") > 0;
  c.kv_compress = false;
  for (const auto& [name, tensor] : w)
    if (name.find(".attn.sr.") != std::string::npos) c.kv_compress = true;
  c.input_size = infer_input_size(w, c.patch_size);
  const bool micro = w.count("csize_embedder.mlp.0.weight") > 0;
  c.variant = micro ? "alpha_ms" : (c.qk_norm ? "sigma" : "alpha");
  c.num_heads = 0;
  return c;
}

// The pos-embed scale that reproduces a stored PixArt pos_embed, among the values the official models use.
double scale_of_stored_pos_embed(const torch::Tensor& stored, const PixArtConfig& config) {
  const int64_t base = config.base_size();
  if (stored.numel() != base * base * config.hidden_size) return 0;
  for (const double scale : {1.0, 2.0, 0.5, 4.0, 0.25}) {
    const torch::Tensor candidate =
        sincos_pos_embed_2d(config.hidden_size, base, base, base, scale, config.pos_embed_division()).reshape_as(stored);
    if ((candidate - stored.to(torch::kFloat32)).abs().max().item<double>() < 1e-5) return scale;
  }
  return 0;
}

BackbonePtr pixart_for_spec(const ModelSpec& spec) { return std::make_shared<PixArtImpl>(PixArtConfig::from_spec(spec)); }

BackbonePtr pixart_for_weights(const TensorMap& w, WeightLayout /*layout*/, const ModelSpec& spec, const std::string& source) {
  const PixArtConfig inferred = infer_pixart_from_official(w, source);
  if (inferred.kv_compress)
    throw Error(source + ": KV-compression weights (blocks.*.attn.sr.*) found: PixArt-Sigma KV compression is not supported");
  PixArtConfig base = inferred;
  base.num_heads = default_num_heads(spec, inferred.hidden_size);
  const bool variant_known = inferred.variant != "alpha";  // micro-conditions or qk norm identify it
  if (!variant_known && !spec.variant)
    throw spec.invalid("variant", "given (\"alpha\" or \"sigma\"): the weights cannot tell PixArt-alpha from PixArt-Sigma");
  base.variant = spec.variant.value_or(inferred.variant);
  if (inferred.input_size == 0) {
    if (!spec.input_size) throw spec.invalid("input_size", "given: the weights have no pos_embed to infer it from");
    base.input_size = *spec.input_size;
  }
  // The pos-embed scale: from the config, else recovered from the stored pos_embed.
  const bool sigma = base.variant == "sigma";
  const std::string scale_field = sigma ? "pe_interpolation" : "lewei_scale";
  if (!(sigma ? spec.pe_interpolation : spec.lewei_scale)) {
    auto stored = w.find("pos_embed");
    const double scale = stored == w.end() ? 0.0 : scale_of_stored_pos_embed(stored->second, base);
    if (scale == 0.0)
      throw spec.invalid(scale_field,
                         std::string("given: ") + (stored == w.end() ? "the weights have no pos_embed to recover it from"
                                                                     : "no usual value reproduces the stored pos_embed"));
    (sigma ? base.pe_interpolation : base.lewei_scale) = scale;
    spdlog::info("{} not set: using {}, which reproduces the pos_embed stored in the weights", spec.key(scale_field), scale);
  }
  const PixArtConfig c = PixArtConfig::from_spec(spec, base);
  auto agree = [&](const std::string& key, double from_weights, double configured) {
    expect_spec_agrees(spec, key, from_weights, configured);
  };
  expect_spec_agrees_on_shape(spec, inferred, c);
  agree("pred_sigma", inferred.pred_sigma, c.pred_sigma);
  agree("caption_channels", inferred.caption_channels, c.caption_channels);
  agree("mlp_ratio", inferred.mlp_ratio, c.mlp_ratio);
  agree("qk_norm", inferred.qk_norm, c.qk_norm);
  if (inferred.input_size != 0) agree("input_size", inferred.input_size, c.input_size);
  if (w.count("y_embedder.y_embedding")) agree("model_max_length", inferred.model_max_length, c.model_max_length);
  const bool micro = inferred.variant == "alpha_ms";
  if (micro != c.micro_condition())
    throw spec.invalid("variant", micro ? "\"alpha_ms\": the weights have micro-condition embedders (csize_embedder, ar_embedder)"
                                        : "\"alpha\" or \"sigma\": the weights have no micro-condition embedders");
  return std::make_shared<PixArtImpl>(c);
}

}  // namespace

PixArtConfig infer_pixart_config(const TensorMap& weights, const std::string& source) {
  return infer_pixart_from_official(to_official_layout(weights, source), source);
}

BackboneFamily pixart_family() {
  return {"pixart", "y_embedder.y_proj.fc1.weight", "y_embedder.y_proj.fc1.weight / caption_projection.linear_1.weight (PixArt)",
          &pixart_for_spec, &pixart_for_weights};
}

}  // namespace ilf
