// What DiT and PixArt share as Backbones: a patch embedding (x_embedder), a timestep embedder
// (t_embedder), a stack of transformer blocks (module "blocks", keys blocks.{i}.*) run one at a time,
// a fresh block like them for the feedback block, and a head that unpatchifies the final layer's
// tokens. A family derives PatchTransformer<Config> (the Backbone accessors read its config) and adds
// its conditioning, final layer and block type; the parameter names and the registration order (which
// is also the order of the random initialisation) stay the family's own.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "ilf/error.h"
#include "ilf/models/backbone.h"
#include "ilf/models/layers.h"
#include "ilf/models/model_spec.h"

namespace ilf {

class PatchTransformerBackbone : public Backbone {
 public:
  // Block j in [0, depth): h (B, T, D) -> (B, T, D).
  torch::Tensor block(int64_t j, const torch::Tensor& h, const Conditioning& cond) override;
  // unpatchify(final_tokens(h, cond)) -> (B, out_channels, height, width).
  torch::Tensor head(const torch::Tensor& h, const Conditioning& cond, int64_t height, int64_t width) override;
  // new_block() on the device and in the dtype of the weights.
  BlockPtr make_block() const override;
  BlockPtr block_module(int64_t j) const override;

  torch::Tensor embed_timestep(const torch::Tensor& t);  // t_embedder(t) (B, D)
  // The final layer's tokens before unpatchify: h (B, T, D) -> (B, T, p*p*out_channels).
  virtual torch::Tensor final_tokens(const torch::Tensor& h, const Conditioning& cond) = 0;

  PatchEmbed x_embedder{nullptr};
  TimestepEmbedder t_embedder{nullptr};
  torch::nn::ModuleList blocks{nullptr};

 protected:
  // `name` ("DiT", "PixArt") starts the index-check messages.
  explicit PatchTransformerBackbone(std::string name) : name_(std::move(name)) {}
  // A new, randomly initialised block with the model's settings (float32 on the CPU).
  virtual BlockPtr new_block() const = 0;
  // Registers the module list "blocks" with depth() blocks from new_block(). A family's constructor
  // calls it where its blocks come in the registration order.
  void register_blocks();

 private:
  std::string name_;
  std::vector<BlockPtr> block_list_;  // the modules in `blocks`
};

// The Backbone accessors of a family whose Config has depth, hidden_size, in_channels, patch_size,
// input_size, out_channels() and validate(where) (DiTConfig, PixArtConfig). The config is validated
// before anything is built.
template <typename Config>
class PatchTransformer : public PatchTransformerBackbone {
 public:
  int64_t depth() const override { return config_.depth; }
  int64_t hidden_size() const override { return config_.hidden_size; }
  int64_t in_channels() const override { return config_.in_channels; }
  int64_t out_channels() const override { return config_.out_channels(); }
  int64_t patch_size() const override { return config_.patch_size; }
  int64_t input_size() const override { return config_.input_size; }

  const Config& config() const { return config_; }

 protected:
  // `name` ("DiT"): messages; validation errors name `name` + "Config".
  PatchTransformer(std::string name, const Config& config) : PatchTransformerBackbone(name), config_(config) {
    config_.validate(name + "Config");
  }

  Config config_;
};

// ---- The settings every patch transformer's Config has: input_size, patch_size, in_channels,
// hidden_size, depth, num_heads, mlp_ratio.

// `c` completed by the settings `spec` gives (absent ones keep their value).
template <typename Config>
void complete_transformer_settings(Config& c, const ModelSpec& spec) {
  c.input_size = spec.input_size.value_or(c.input_size);
  c.patch_size = spec.patch_size.value_or(c.patch_size);
  c.in_channels = spec.in_channels.value_or(c.in_channels);
  c.hidden_size = spec.hidden_size.value_or(c.hidden_size);
  c.depth = spec.depth.value_or(c.depth);
  c.num_heads = spec.num_heads.value_or(c.num_heads);
  c.mlp_ratio = spec.mlp_ratio.value_or(c.mlp_ratio);
}

// Those settings as JSON (the part of Backbone::architecture_json every patch transformer has).
template <typename Config>
nlohmann::json transformer_settings_json(const Config& c) {
  return {{"input_size", c.input_size},   {"patch_size", c.patch_size}, {"in_channels", c.in_channels},
          {"hidden_size", c.hidden_size}, {"depth", c.depth},           {"num_heads", c.num_heads},
          {"mlp_ratio", c.mlp_ratio}};
}

// The checks of those settings, in two parts (a family checks its own between them), throwing
// ilf::Error "<where>.<field> must be ...": patch_size, input_size, in_channels, depth, hidden_size ...
template <typename Config>
void validate_transformer_shape(const Config& c, const std::string& where) {
  auto fail = [&](const std::string& field, const std::string& expectation) {
    throw Error(where + "." + field + " must be " + expectation);
  };
  if (c.patch_size < 1) fail("patch_size", ">= 1, got " + std::to_string(c.patch_size));
  if (c.input_size < 1 || c.input_size % c.patch_size != 0)
    fail("input_size",
         "a positive multiple of patch_size (" + std::to_string(c.patch_size) + "), got " + std::to_string(c.input_size));
  if (c.in_channels < 1) fail("in_channels", ">= 1, got " + std::to_string(c.in_channels));
  if (c.depth < 1) fail("depth", ">= 1, got " + std::to_string(c.depth));
  if (c.hidden_size < 4 || c.hidden_size % 4 != 0)
    fail("hidden_size", "a positive multiple of 4 (the 2-D sin-cos embedding), got " + std::to_string(c.hidden_size));
}
// ... then num_heads and mlp_ratio.
template <typename Config>
void validate_transformer_width(const Config& c, const std::string& where) {
  auto fail = [&](const std::string& field, const std::string& expectation) {
    throw Error(where + "." + field + " must be " + expectation);
  };
  if (c.num_heads < 1 || c.hidden_size % c.num_heads != 0)
    fail("num_heads",
         "a positive divisor of hidden_size (" + std::to_string(c.hidden_size) + "), got " + std::to_string(c.num_heads));
  if (!(c.mlp_ratio > 0) || static_cast<int64_t>(c.hidden_size * c.mlp_ratio) < 1)
    fail("mlp_ratio", "positive, got " + std::to_string(c.mlp_ratio));
}

// The model of type Impl behind a backbone (for code that needs a family's internals: parity tests and
// tools); throws ilf::Error naming `what` ("a DiT") for another family.
template <typename Impl>
std::shared_ptr<Impl> backbone_as(const BackbonePtr& backbone, const std::string& what) {
  auto typed = std::dynamic_pointer_cast<Impl>(backbone);
  if (!typed) throw Error("expected " + what + " backbone, got " + (backbone ? backbone->family() : std::string("none")));
  return typed;
}

}  // namespace ilf
