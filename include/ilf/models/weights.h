// Backbone weights: reading them (safetensors, TorchScript archives, torch.save zip files, diffusers
// folders), converting the diffusers PixArt and DiT layouts to the official key names, building a
// backbone from a config's "model" section (optionally on top of what the weights tell: each family
// infers its architecture in its own file, reached through the registry in backbone_family.h), and
// loading strictly: every missing, unexpected or mis-shaped key is reported in one error and nothing
// half-loaded ever runs. Also the mixed-precision move to bf16 / fp16.
#pragma once
#include <torch/torch.h>

#include <string>

#include "ilf/io/safetensors.h"
#include "ilf/models/backbone.h"
#include "ilf/models/backbone_family.h"
#include "ilf/models/dit.h"
#include "ilf/models/model_spec.h"
#include "ilf/models/pixart.h"

namespace ilf {

// Reads every tensor of a weights file, with the names it carries:
// - a safetensors file;
// - a TorchScript archive (torch.jit.save; named_parameters + named_buffers, e.g. the reference
//   *.torchscript.pt or scripts/export_weights.py output). torch.save checkpoints (.pt / .pth) are
//   refused with a pointer to scripts/export_weights.py: LibTorch cannot unpickle them in general;
// - a folder holding *.safetensors files (all shards merged), or such a folder under "transformer/"
//   (a diffusers pipeline folder).
// Errors name the file.
TensorMap read_weights(const std::string& path);

// Recognises the layout of `weights` (official keys, diffusers PixArtTransformer2DModel or
// DiTTransformer2DModel keys, or any of them under a "state_dict." / "ema." / "model." / "module."
// prefix: the first prefix that holds them wins and other tensors are dropped) and returns the tensors
// under the official key names. `layout` receives the layout found. Throws for unrecognised tensor
// sets, and for a diffusers DiT whose blocks carry different timestep / class embedders (each diffusers
// block has its own copy; the official DiT has one, so the copies must be equal, as in converted
// checkpoints).
TensorMap to_official_layout(TensorMap weights, const std::string& source, WeightLayout* layout = nullptr);

// The family ("dit" or "pixart", see backbone_families()) from the key names (official or diffusers
// layout). Throws if none matches. `source` (the file) names the weights in error messages, here and
// below. What the tensors tell about each family's architecture: infer_dit_config (dit.h),
// infer_pixart_config (pixart.h).
std::string detect_family(const TensorMap& weights, const std::string& source = "weights");

// Builds a freshly initialised backbone from `spec` alone (family required; the fields of the family's
// Config::from_spec). Errors name the config key.
BackbonePtr make_backbone(const ModelSpec& spec);

// Builds a backbone for `weights`: the architecture inferred from the tensors, completed and checked
// by `spec` (whose fields may all be absent). Settings the weights cannot tell (num_heads;
// for PixArt variant alpha vs sigma; input_size and lewei_scale / pe_interpolation when there is no
// pos_embed) must come from the config. Fallbacks, each logged: num_heads = the official models' head
// count for their width (384: 6, 768: 12, 1024 and 1152: 16); the pos-embed scale = the value among
// 1, 2, 0.5, 4, 0.25 that reproduces the stored pos_embed. A config value that contradicts the
// weights is an error naming the key.
BackbonePtr make_backbone_for_weights(const TensorMap& weights, const ModelSpec& spec, const std::string& source = "weights");

// Converts `weights` to the official layout and copies them into `model`. Every missing, unexpected
// and mis-shaped key is reported in one ilf::Error naming `source`; the model is untouched then.
// A missing pos_embed is fine (it is a fixed function of the config). A missing
// y_embedder.y_embedding (diffusers layout) leaves the buffer as is and marks the PixArt model as
// having no built-in null caption. KV-compression weights are refused with a clear error.
void load_backbone_weights(Backbone& model, TensorMap weights, const std::string& source);

// Moves the backbone to `device` in `dtype` (float32, or bfloat16 / float16 on CUDA only). The
// timestep / size sinusoids and the pos embedding are still computed in float32 (float64 for the
// pos embedding) and cast at the point of use.
void move_backbone(Backbone& model, const torch::Device& device, torch::Dtype dtype);

// Parses "float32" / "fp32", "bfloat16" / "bf16", "float16" / "fp16" / "half"; throws for others.
torch::Dtype parse_dtype(const std::string& name);

}  // namespace ilf
