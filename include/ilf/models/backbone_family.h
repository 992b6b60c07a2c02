// The registry of backbone families: for each family (DiT, PixArt) how to recognise its weights, how
// to build a backbone from a config alone and how to build one for a set of weights (the architecture
// read from the tensors' shapes, completed and checked by the config). Each family fills its entry in
// its own file (dit_family() in dit.cpp, pixart_family() in pixart.cpp); weights.cpp dispatches through
// the table, so a new backbone touches its own files and one line of src/models/backbone_family.cpp.
// Also the helpers the families share to read an architecture from weights and to check a config
// against it.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "ilf/io/safetensors.h"
#include "ilf/models/backbone.h"
#include "ilf/models/model_spec.h"

namespace ilf {

// The key layout weights came in (see to_official_layout in weights.h).
enum class WeightLayout { kOfficial, kDiffusersPixArt, kDiffusersDiT };

struct BackboneFamily {
  std::string name;  // ModelSpec::family and Backbone::family(): "dit", "pixart"
  // A key that only this family's weights hold (official layout), and how messages name it.
  std::string marker_key;
  std::string marker_description;  // e.g. "y_embedder.embedding_table.weight (DiT)"
  // A freshly initialised backbone from `spec` alone. Errors name the config key.
  BackbonePtr (*make)(const ModelSpec& spec);
  // A backbone for `weights` (already in the official layout; `layout` is the one they came in): the
  // architecture inferred from the tensors, completed and checked by `spec` (make_backbone_for_weights).
  BackbonePtr (*make_for_weights)(const TensorMap& weights, WeightLayout layout, const ModelSpec& spec,
                                  const std::string& source);
};

// Every family, in the order weights are matched against their marker keys.
const std::vector<BackboneFamily>& backbone_families();
// The family named `name`, or nullptr.
const BackboneFamily* find_backbone_family(const std::string& name);

// A tensor's sizes as text, "[2, 4, 32, 32]", for messages.
std::string shape_of(const torch::Tensor& t);

// ---- Reading an architecture from weights (official layout). `source` names the weights in errors.

// The tensor `name`, which must exist and have `dims` dimensions of size >= 1; `what` says what it is
// needed for ("num_classes").
const torch::Tensor& shape_tensor(const TensorMap& weights, const std::string& name, int64_t dims, const std::string& what,
                                  const std::string& source);

// What every patch transformer's tensors tell: from x_embedder.proj.weight (D, C, p, p) the hidden
// size, input channels and patch size; the depth from blocks.{i}.*; and from final_layer.linear.weight
// whether the output has 2 * in_channels (learned variance) or in_channels channels.
struct TransformerShape {
  int64_t hidden_size = 0, in_channels = 0, patch_size = 0, depth = 0;
  bool doubled_output = false;
};
TransformerShape infer_transformer_shape(const TensorMap& weights, const std::string& source);
// hidden MLP width (blocks.0.mlp.fc1.weight rows) / hidden_size.
double infer_mlp_ratio(const TensorMap& weights, int64_t hidden_size, const std::string& source);
// input_size from a square pos_embed (1, T, D): sqrt(T) * patch_size; 0 without pos_embed (or a non-square one).
int64_t infer_input_size(const TensorMap& weights, int64_t patch_size);

// ---- Checking a config against the weights.

// Throws spec.invalid(key, "<from_weights> as in the weights (got <configured>)") when they differ.
void expect_spec_agrees(const ModelSpec& spec, const std::string& key, double from_weights, double configured);
// expect_spec_agrees for what every patch transformer's weights fix, in this order: patch_size,
// in_channels, hidden_size, depth (`inferred` from the weights, `configured` completed by the spec).
template <typename Config>
void expect_spec_agrees_on_shape(const ModelSpec& spec, const Config& inferred, const Config& configured) {
  expect_spec_agrees(spec, "patch_size", inferred.patch_size, configured.patch_size);
  expect_spec_agrees(spec, "in_channels", inferred.in_channels, configured.in_channels);
  expect_spec_agrees(spec, "hidden_size", inferred.hidden_size, configured.hidden_size);
  expect_spec_agrees(spec, "depth", inferred.depth, configured.depth);
}
// The head count to use when the spec gives none: the official models' for their width (384: 6,
// 768: 12, 1024 and 1152: 16), logged. 0 when the spec sets num_heads. Throws spec.invalid("num_heads")
// for another width.
int64_t default_num_heads(const ModelSpec& spec, int64_t hidden_size);

}  // namespace ilf
