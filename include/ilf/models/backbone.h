// The backbone interface that Inner Loop Feedback needs from a diffusion transformer: the stages of
// its forward pass exposed one by one (embed, condition, one block at a time, head), its depth, and
// a way to make a fresh block with the same settings (the feedback block F). It also answers what
// callers above the models need to know (input shape, kind of condition, null condition, size
// conditioning), so that nothing outside models/ casts to a model class or tests the family name.
// DiT and PixArt (alpha / alpha-MS / sigma) implement it in dit.h and pixart.h.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace ilf {

// What the user conditions on, in the backbone's own terms. Fields a family does not use stay undefined.
struct ConditionInputs {
  torch::Tensor class_labels;  // DiT: (B,) int64; the null class is num_classes
  torch::Tensor caption;       // PixArt: (B, L, C) or (B, 1, L, C) caption features (T5 hidden states)
  torch::Tensor caption_mask;  // PixArt: (B, L), non-zero = valid token; undefined = all valid
  torch::Tensor image_hw;      // PixArt-alpha MS micro-condition: (B, 2) original (height, width)
  torch::Tensor aspect_ratio;  // PixArt-alpha MS micro-condition: (B, 1) height / width
};

// What every block and the head receive for one time t (computed by Backbone::condition).
struct Conditioning {
  torch::Tensor block;           // DiT: c = t_emb + y_emb (B, D); PixArt: t0 = t_block(t) (B, 6D)
  torch::Tensor head;            // DiT: c (B, D); PixArt: t (B, D)
  torch::Tensor caption_tokens;  // PixArt: projected caption (B, L, D)
  torch::Tensor caption_mask;    // PixArt: (B, L) bool, true = attend
};

// One transformer block: h (B, T, D) -> h (B, T, D) under a conditioning.
class TransformerBlock : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& h, const Conditioning& cond) = 0;
  // The timestep-modulated input of the block's attention, modulate(LN(h), shift_msa, scale_msa)
  // (B, T, D): the cheap signal TeaCache watches (one LayerNorm and one modulation, no attention).
  virtual torch::Tensor modulated_input(const torch::Tensor& h, const Conditioning& cond) = 0;
};
using BlockPtr = std::shared_ptr<TransformerBlock>;

// What a backbone is conditioned on besides time.
enum class ConditionKind {
  kClassLabel,  // ConditionInputs::class_labels (DiT)
  kCaption,     // ConditionInputs::caption (+ caption_mask, + size micro-conditions) (PixArt)
};

class Backbone : public torch::nn::Module {
 public:
  virtual std::string family() const = 0;   // "dit" or "pixart" (for messages and file metadata)
  virtual std::string variant() const = 0;  // DiT: "dit"; PixArt: "alpha", "alpha_ms" or "sigma"
  virtual int64_t depth() const = 0;
  virtual int64_t hidden_size() const = 0;
  virtual int64_t in_channels() const = 0;
  virtual int64_t out_channels() const = 0;  // 2 * in_channels with learned sigma
  virtual int64_t patch_size() const = 0;
  // The side of the (latent or pixel) grid the model was built for: inputs are
  // (B, in_channels, input_size, input_size) unless accepts_any_size().
  virtual int64_t input_size() const = 0;
  virtual bool accepts_any_size() const = 0;  // PixArt alpha_ms / sigma: any multiple of patch_size

  virtual ConditionKind condition_kind() const = 0;
  virtual int64_t num_classes() const { return 0; }       // class-conditional models: labels in [0, num_classes)
  virtual int64_t caption_channels() const { return 0; }  // caption-conditional models: the text encoder's width
  virtual int64_t caption_length() const { return 0; }    // ... and the caption tokens the model was trained with
  // Whether condition() needs ConditionInputs::image_hw and aspect_ratio (PixArt-alpha MS).
  virtual bool uses_size_conditioning() const { return false; }
  // Whether the weights carry their own null condition for guidance (DiT's null class, PixArt-alpha's
  // y_embedding); otherwise set_null_condition() must be called before null_condition().
  virtual bool has_learned_null_condition() const = 0;
  // Sets the null condition used by null_condition() (caption models: the caption features and mask of
  // the empty prompt). Throws ilf::Error for models whose null condition is fixed.
  virtual void set_null_condition(const ConditionInputs& null) = 0;
  // The architecture settings as JSON (what a run config's "model" section would hold).
  virtual nlohmann::json architecture_json() const = 0;

  // x (B, C, H, W) -> tokens with positional embedding (B, T, D), T = (H/p)(W/p), row-major.
  virtual torch::Tensor embed(const torch::Tensor& x) = 0;
  // t (B,) float or int64 diffusion time in [0, 1000) -> the conditioning for all blocks and the head.
  virtual Conditioning condition(const torch::Tensor& t, const ConditionInputs& inputs) = 0;
  // Block j in [0, depth): h (B, T, D) -> (B, T, D).
  virtual torch::Tensor block(int64_t j, const torch::Tensor& h, const Conditioning& cond) = 0;
  // Final layer and unpatchify: h (B, T, D) -> (B, out_channels, height, width).
  virtual torch::Tensor head(const torch::Tensor& h, const Conditioning& cond, int64_t height, int64_t width) = 0;
  // A new, randomly initialised block with this backbone's settings (same type as its blocks).
  virtual BlockPtr make_block() const = 0;
  // The block module j itself (for copying its weights into a feedback block).
  virtual BlockPtr block_module(int64_t j) const = 0;
  // The null (unconditional) condition for classifier-free guidance, shaped like `like`
  // (DiT: class num_classes; PixArt-alpha: the y_embedding buffer; otherwise the given null caption).
  virtual ConditionInputs null_condition(const ConditionInputs& like) const = 0;

  // The plain forward pass: embed, condition, all blocks, head. (B, out_channels, H, W).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs) {
    torch::Tensor h = embed(x);
    const Conditioning cond = condition(t, inputs);
    for (int64_t j = 0; j < depth(); ++j) h = block(j, h, cond);
    return head(h, cond, x.size(2), x.size(3));
  }
};
using BackbonePtr = std::shared_ptr<Backbone>;

}  // namespace ilf
