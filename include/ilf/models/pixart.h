// The PixArt family as ILF Backbones, in one class with a `variant`:
//   "alpha"    PixArt-alpha `PixArt` (512 style): fixed pos_embed buffer, square inputs of input_size;
//   "alpha_ms" PixArt-alpha `PixArtMS` (1024 style): csize / aspect-ratio micro-conditions added to t,
//              any (H, W), pos embedding recomputed per (h, w) with lewei_scale;
//   "sigma"    PixArt-Sigma `PixArtMS` (micro_condition=False): pos embedding recomputed per (h, w) with
//              pe_interpolation, optional qk LayerNorm; KV compression is refused.
// Module and parameter names equal the official state_dict keys (x_embedder.proj, t_embedder.mlp.*,
// t_block.1, y_embedder.y_proj.fc{1,2}, buffers pos_embed and y_embedder.y_embedding,
// blocks.{i}.{scale_shift_table,attn,cross_attn,mlp}, final_layer.{linear,scale_shift_table},
// csize_embedder / ar_embedder).
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "ilf/io/safetensors.h"
#include "ilf/models/backbone.h"
#include "ilf/models/backbone_family.h"
#include "ilf/models/layers.h"
#include "ilf/models/model_spec.h"
#include "ilf/models/patch_transformer.h"

namespace ilf {

struct PixArtConfig {
  std::string variant = "alpha";  // "alpha", "alpha_ms" or "sigma"
  int64_t input_size = 64;        // latent size the model was built for (64 = 512 px); base_size = input_size / patch_size
  int64_t patch_size = 2;
  int64_t in_channels = 4;
  int64_t hidden_size = 1152;
  int64_t depth = 28;
  int64_t num_heads = 16;
  double mlp_ratio = 4.0;
  bool pred_sigma = true;           // output 2 * in_channels
  int64_t caption_channels = 4096;  // T5 width
  int64_t model_max_length = 120;   // rows of the null-caption buffer y_embedding (alpha 120, sigma 300)
  double lewei_scale = 1.0;         // alpha / alpha_ms pos-embed scale (512: 1, 1024: 2)
  double pe_interpolation = 1.0;    // sigma pos-embed scale (image_size / 512)
  bool qk_norm = false;             // sigma: LayerNorm on q and k (attn.q_norm / attn.k_norm)
  bool kv_compress = false;         // sigma KV compression: not supported, refused by validate()

  bool micro_condition() const { return variant == "alpha_ms"; }
  bool recomputes_pos_embed() const { return variant != "alpha"; }
  int64_t out_channels() const { return pred_sigma ? 2 * in_channels : in_channels; }
  int64_t base_size() const { return input_size / patch_size; }
  // The pos-embed scale of this variant (lewei_scale or pe_interpolation) and how numpy divides by it.
  double pos_embed_scale() const { return variant == "sigma" ? pe_interpolation : lewei_scale; }
  GridScaleDivision pos_embed_division() const {
    return variant == "sigma" ? GridScaleDivision::kFloat32 : GridScaleDivision::kFloat64;
  }

  // `defaults` completed by the settings of `spec` (variant, input_size, patch_size, in_channels,
  // hidden_size, depth, num_heads, mlp_ratio, pred_sigma, caption_channels, model_max_length,
  // lewei_scale, pe_interpolation, qk_norm, kv_compress); absent ones keep the default. Validates.
  static PixArtConfig from_spec(const ModelSpec& spec, const PixArtConfig& defaults);
  static PixArtConfig from_spec(const ModelSpec& spec);  // defaults: PixArtConfig{}

  // Throws ilf::Error naming `where` (e.g. "run.json: model") and the offending field.
  void validate(const std::string& where) const;
};

// One PixArt block: (scale_shift_table + t0) -> shift/scale/gate for msa and mlp;
// x += gate_msa * attn(mod(LN x)); x += cross_attn(x, caption) (no norm, no gate); x += gate_mlp * mlp(mod(LN x)).
class PixArtBlockImpl : public TransformerBlock {
 public:
  PixArtBlockImpl(int64_t hidden_size, int64_t num_heads, double mlp_ratio, bool qk_norm);
  // h (B, T, D); cond.block = t0 (B, 6D), cond.caption_tokens (B, L, D), cond.caption_mask (B, L) -> (B, T, D)
  torch::Tensor forward(const torch::Tensor& h, const Conditioning& cond) override;
  torch::Tensor modulated_input(const torch::Tensor& h, const Conditioning& cond) override;

  torch::Tensor scale_shift_table;  // (6, D)
  SelfAttention attn{nullptr};
  CrossAttention cross_attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(PixArtBlock);

// Caption projection y_proj (Mlp C -> D -> D) and the learned null caption buffer y_embedding (max_len, C).
class CaptionEmbedderImpl : public torch::nn::Module {
 public:
  CaptionEmbedderImpl(int64_t caption_channels, int64_t hidden_size, int64_t max_length);

  Mlp y_proj{nullptr};
  torch::Tensor y_embedding;
};
TORCH_MODULE(CaptionEmbedder);

// PixArt's final layer: (scale_shift_table (2, D) + t) -> shift, scale; Linear(D, p*p*out_channels).
class T2IFinalLayerImpl : public torch::nn::Module {
 public:
  T2IFinalLayerImpl(int64_t hidden_size, int64_t patch_size, int64_t out_channels);
  // h (B, T, D), t (B, D) -> (B, T, p*p*out_channels)
  torch::Tensor forward(const torch::Tensor& h, const torch::Tensor& t);

  torch::nn::Linear linear{nullptr};
  torch::Tensor scale_shift_table;  // (2, D)
};
TORCH_MODULE(T2IFinalLayer);

class PixArtImpl : public PatchTransformer<PixArtConfig> {
 public:
  explicit PixArtImpl(const PixArtConfig& config);

  std::string family() const override { return "pixart"; }
  std::string variant() const override { return config_.variant; }
  bool accepts_any_size() const override { return config_.recomputes_pos_embed(); }
  ConditionKind condition_kind() const override { return ConditionKind::kCaption; }
  int64_t caption_channels() const override { return config_.caption_channels; }
  int64_t caption_length() const override { return config_.model_max_length; }
  bool uses_size_conditioning() const override { return config_.micro_condition(); }
  // PixArt-alpha with y_embedding in its weights; never PixArt-Sigma (its null caption is T5("")).
  bool has_learned_null_condition() const override { return config_.variant != "sigma" && builtin_null_caption_; }
  // set_null_caption(null.caption, null.caption_mask).
  void set_null_condition(const ConditionInputs& null) override;
  nlohmann::json architecture_json() const override;

  // x (B, in_channels, H, W) -> x_embedder(x) + pos embedding (B, T, D). "alpha" needs H = W = input_size.
  torch::Tensor embed(const torch::Tensor& x) override;
  // t (B,); inputs.caption (B, L, C) or (B, 1, L, C), inputs.caption_mask (B, L) (undefined = all valid);
  // alpha_ms also inputs.image_hw (B, 2) and inputs.aspect_ratio (B, 1).
  // -> block = t0 (B, 6D), head = t (B, D), caption_tokens (B, L, D), caption_mask (B, L) bool.
  Conditioning condition(const torch::Tensor& t, const ConditionInputs& inputs) override;
  // The null caption, fitted to like.caption's length L (zero-padded with mask 0, or cut where only
  // masked-out tokens are dropped), with like's micro-conditions. Source: set_null_caption() if
  // called, else (alpha / alpha_ms) the y_embedding buffer with an all-ones mask. The mask has like's
  // dtype; it is left undefined when like has none and every null token is valid. PixArt-Sigma has
  // no built-in null caption: without set_null_caption() this throws.
  ConditionInputs null_condition(const ConditionInputs& like) const override;

  // The null caption to use for classifier-free guidance (T5 features of the empty prompt):
  // caption (L, C), (1, L, C) or (1, 1, L, C); mask (L) or (1, L), undefined = all valid.
  void set_null_caption(const torch::Tensor& caption, const torch::Tensor& mask = {});
  // Whether the y_embedding buffer holds a real null caption (false after loading weights that lack
  // it, e.g. the diffusers layout). Set by load_backbone_weights.
  void set_builtin_null_caption_available(bool available) { builtin_null_caption_ = available; }
  bool builtin_null_caption_available() const { return builtin_null_caption_; }

  // The stages of embed(), condition() and head(), exposed for tests and tools (also embed_timestep).
  torch::Tensor positional_embedding(int64_t grid_h, int64_t grid_w);  // (1, T, D) in the weights' dtype
  // (csize_emb (B, 2*(D/3)), ar_emb (B, D/3)); alpha_ms only.
  std::pair<torch::Tensor, torch::Tensor> embed_micro_conditions(const torch::Tensor& image_hw, const torch::Tensor& aspect_ratio,
                                                                 int64_t batch);
  torch::Tensor project_caption(const torch::Tensor& caption);  // (B, L, C) or (B, 1, L, C) -> (B, L, D)
  torch::Tensor final_tokens(const torch::Tensor& h, const Conditioning& cond) override;  // (B, T, p*p*out)

  // x_embedder, t_embedder, blocks: PatchTransformerBackbone.
  torch::Tensor pos_embed;  // buffer (1, base_size^2, D); used by "alpha", kept for the state_dict otherwise
  torch::nn::Sequential t_block{nullptr};
  CaptionEmbedder y_embedder{nullptr};
  TimestepEmbedder csize_embedder{nullptr}, ar_embedder{nullptr};  // alpha_ms only
  T2IFinalLayer final_layer{nullptr};

 private:
  BlockPtr new_block() const override;

  bool builtin_null_caption_ = true;
  torch::Tensor null_caption_, null_caption_mask_;  // set_null_caption: (L, C), (L) bool
  // The last recomputed pos embedding and the grid / device / dtype it was made for.
  torch::Tensor cached_pos_embed_;
  int64_t cached_grid_h_ = -1, cached_grid_w_ = -1;
};
TORCH_MODULE(PixArt);

// The PixArt model behind a backbone, for code that needs PixArt internals (parity tests and tools);
// throws ilf::Error for another family. Library code above models/ uses the Backbone interface instead.
inline std::shared_ptr<PixArtImpl> as_pixart(const BackbonePtr& backbone) {
  return backbone_as<PixArtImpl>(backbone, "a PixArt");
}

// What PixArt weights (official or diffusers layout) tell about the architecture: depth, hidden_size,
// patch_size, in_channels, pred_sigma, caption_channels, mlp_ratio, qk_norm, model_max_length (from
// y_embedding), input_size (from pos_embed; 0 when absent), and a variant guess: "alpha_ms" with
// micro-condition embedders, "sigma" with qk norm, else "alpha" (the weights cannot tell alpha from
// sigma). kv_compress is true when KV-compression weights exist. num_heads is left 0.
PixArtConfig infer_pixart_config(const TensorMap& weights, const std::string& source = "weights");

// The PixArt entry of the backbone registry (backbone_family.h): marker key y_embedder.y_proj.fc1.weight.
BackboneFamily pixart_family();

}  // namespace ilf
