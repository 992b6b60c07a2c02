// DiT (class-conditional diffusion transformer, facebookresearch/DiT) as an ILF Backbone. Module and
// parameter names equal the official state_dict keys (x_embedder.proj, t_embedder.mlp.{0,2},
// y_embedder.embedding_table, pos_embed, blocks.{i}.{attn,mlp,adaLN_modulation.1}, final_layer.*),
// so official checkpoints load without renaming.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "ilf/io/safetensors.h"
#include "ilf/models/backbone.h"
#include "ilf/models/backbone_family.h"
#include "ilf/models/layers.h"
#include "ilf/models/model_spec.h"
#include "ilf/models/patch_transformer.h"

namespace ilf {

struct DiTConfig {
  int64_t input_size = 32;  // latent height = width
  int64_t patch_size = 2;
  int64_t in_channels = 4;
  int64_t hidden_size = 1152;
  int64_t depth = 28;
  int64_t num_heads = 16;
  double mlp_ratio = 4.0;
  int64_t num_classes = 1000;  // the label table has num_classes + 1 rows; row num_classes is the null class
  bool learn_sigma = true;     // output 2 * in_channels (eps and variance)
  // diffusers' DiTTransformer2DModel computes two things differently from the official DiT: the timestep
  // sinusoid's frequencies exp(-ln(10000) k / (128 - 1)) instead of / 128 (timestep_freq_shift 1, its
  // downscale_freq_shift) and the LayerNorm before the MLP with eps 1e-5 (its norm_eps default) instead
  // of 1e-6. Weights in the diffusers layout get diffusers' values (infer_dit_config), so that the
  // forward equals diffusers' (tests/exporters/check_backbones.py); official weights the official ones.
  int64_t timestep_freq_shift = 0;
  double mlp_norm_eps = 1e-6;

  int64_t out_channels() const { return learn_sigma ? 2 * in_channels : in_channels; }
  int64_t grid_size() const { return input_size / patch_size; }

  // The official model sizes: "DiT-S/2", "DiT-B/4", "DiT-L/8", "DiT-XL/2", ... (S, B, L, XL with patch
  // 2, 4 or 8; input_size 32 = 256 px latents). Throws ilf::Error for unknown names.
  static DiTConfig preset(const std::string& name);

  // `defaults` completed by the settings of `spec` (input_size, patch_size, in_channels, hidden_size,
  // depth, num_heads, mlp_ratio, num_classes, learn_sigma); absent ones keep the default. Validates.
  static DiTConfig from_spec(const ModelSpec& spec, const DiTConfig& defaults);
  static DiTConfig from_spec(const ModelSpec& spec);  // defaults: DiTConfig{}

  // Throws ilf::Error naming `where` (e.g. "run.json: model") and the offending field.
  void validate(const std::string& where) const;
};

// One DiT block: x += gate_msa * attn(mod(LN x)); x += gate_mlp * mlp(mod(LN x)), modulated by
// adaLN_modulation(c) = Linear(SiLU(c)) chunked as shift/scale/gate for msa then mlp.
class DiTBlockImpl : public TransformerBlock {
 public:
  DiTBlockImpl(int64_t hidden_size, int64_t num_heads, double mlp_ratio, double mlp_norm_eps = 1e-6);
  // h (B, T, D), cond.block = c (B, D) -> (B, T, D)
  torch::Tensor forward(const torch::Tensor& h, const Conditioning& cond) override;
  torch::Tensor modulated_input(const torch::Tensor& h, const Conditioning& cond) override;

  SelfAttention attn{nullptr};
  Mlp mlp{nullptr};
  torch::nn::Sequential adaLN_modulation{nullptr};
  double mlp_norm_eps;  // eps of the LayerNorm before the MLP (DiTConfig::mlp_norm_eps)
};
TORCH_MODULE(DiTBlock);

// The class-label table (key embedding_table).
class LabelEmbedderImpl : public torch::nn::Module {
 public:
  LabelEmbedderImpl(int64_t num_classes, int64_t hidden_size);
  torch::Tensor forward(const torch::Tensor& labels) { return embedding_table(labels); }

  torch::nn::Embedding embedding_table{nullptr};
};
TORCH_MODULE(LabelEmbedder);

// DiT's final layer: adaLN (shift, scale) from c, then Linear(D, p*p*out_channels).
class DiTFinalLayerImpl : public torch::nn::Module {
 public:
  DiTFinalLayerImpl(int64_t hidden_size, int64_t patch_size, int64_t out_channels);
  // h (B, T, D), c (B, D) -> (B, T, p*p*out_channels)
  torch::Tensor forward(const torch::Tensor& h, const torch::Tensor& c);

  torch::nn::Linear linear{nullptr};
  torch::nn::Sequential adaLN_modulation{nullptr};
};
TORCH_MODULE(DiTFinalLayer);

class DiTImpl : public PatchTransformer<DiTConfig> {
 public:
  explicit DiTImpl(const DiTConfig& config);

  std::string family() const override { return "dit"; }
  std::string variant() const override { return "dit"; }
  bool accepts_any_size() const override { return false; }
  ConditionKind condition_kind() const override { return ConditionKind::kClassLabel; }
  int64_t num_classes() const override { return config_.num_classes; }
  bool has_learned_null_condition() const override { return true; }  // the null class num_classes
  void set_null_condition(const ConditionInputs& null) override;     // throws: DiT's null class is fixed
  nlohmann::json architecture_json() const override;

  // x must be (B, in_channels, input_size, input_size). -> (B, T, D)
  torch::Tensor embed(const torch::Tensor& x) override;
  // t (B,) and inputs.class_labels (B,) int64 in [0, num_classes] -> block = head = c (B, D).
  Conditioning condition(const torch::Tensor& t, const ConditionInputs& inputs) override;
  // class_labels = num_classes for every image of `like`.
  ConditionInputs null_condition(const ConditionInputs& like) const override;

  // The stages of condition() and head(), exposed for tests and tools (also embed_timestep).
  torch::Tensor embed_labels(const torch::Tensor& labels);                                // y_embedder(y) (B, D)
  torch::Tensor final_tokens(const torch::Tensor& h, const Conditioning& cond) override;  // (B, T, p*p*out)

  // x_embedder, t_embedder, blocks: PatchTransformerBackbone.
  LabelEmbedder y_embedder{nullptr};
  torch::Tensor pos_embed;  // buffer (1, T, D), fixed sin-cos
  DiTFinalLayer final_layer{nullptr};

 private:
  BlockPtr new_block() const override;
};
TORCH_MODULE(DiT);

// The DiT behind a backbone, for code that needs DiT internals (parity tests and tools); throws
// ilf::Error for another family. Library code above models/ uses the Backbone interface instead.
inline std::shared_ptr<DiTImpl> as_dit(const BackbonePtr& backbone) { return backbone_as<DiTImpl>(backbone, "a DiT"); }

// What DiT weights (official or diffusers layout) tell about the architecture: depth, hidden_size,
// patch_size, in_channels, learn_sigma, num_classes, mlp_ratio, and input_size from pos_embed (0 when
// absent); for the diffusers layout diffusers' numerics (timestep_freq_shift 1, mlp_norm_eps 1e-5, see
// DiTConfig). num_heads cannot be inferred and is left 0. `source` names the weights in errors.
DiTConfig infer_dit_config(const TensorMap& weights, const std::string& source = "weights");

// The DiT entry of the backbone registry (backbone_family.h): marker key y_embedder.embedding_table.weight.
BackboneFamily dit_family();

}  // namespace ilf
