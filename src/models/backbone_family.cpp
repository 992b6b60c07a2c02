// The backbone family registry and the shared architecture-inference helpers (see
// include/ilf/models/backbone_family.h).
#include "ilf/models/backbone_family.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <regex>
#include <set>
#include <sstream>

#include "ilf/error.h"
#include "ilf/models/dit.h"
#include "ilf/models/pixart.h"

namespace ilf {

std::string shape_of(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}
namespace {

int64_t count_blocks(const TensorMap& w, const std::string& prefix, const std::string& source) {
  const std::regex pattern(prefix + R"(\.(\d+)\..*)");
  std::set<int64_t> ids;
  for (const auto& [name, tensor] : w) {
    std::smatch m;
    if (std::regex_match(name, m, pattern)) ids.insert(std::stoll(m[1].str()));
  }
  if (ids.empty()) return 0;
  const int64_t depth = *ids.rbegin() + 1;
  if (static_cast<int64_t>(ids.size()) != depth)
    throw Error(source + ": block indices of \"" + prefix + ".*\" are not contiguous (" + std::to_string(ids.size()) +
                " blocks, highest index " + std::to_string(depth - 1) + ")");
  return depth;
}

// The patch embedding's kernel (D, C, p, p): square and non-empty (a 0x0 kernel divided by zero when
// the output channels were inferred: SIGFPE).
const torch::Tensor& need_patch_kernel(const TensorMap& w, const std::string& source) {
  const std::string name = "x_embedder.proj.weight";
  const torch::Tensor& patch = shape_tensor(w, name, 4, "hidden_size, in_channels and patch_size", source);
  if (patch.size(2) != patch.size(3))
    throw Error(source + ": \"" + name + "\" has shape " + c10::str(patch.sizes()) +
                ", expected a square patch kernel (hidden_size, in_channels, p, p)");
  return patch;
}

// Grid side of a (1, T, D) pos_embed with T a square; 0 if not square.
int64_t square_grid(const torch::Tensor& pos_embed) {
  if (pos_embed.dim() < 2) return 0;
  const int64_t tokens = pos_embed.size(pos_embed.dim() - 2);
  const auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(tokens))));
  return side * side == tokens ? side : 0;
}

// Head counts of the official models, by width.
int64_t official_num_heads(int64_t hidden_size) {
  switch (hidden_size) {
    case 384: return 6;
    case 768: return 12;
    case 1024:
    case 1152: return 16;
    default: return 0;
  }
}

}  // namespace

const std::vector<BackboneFamily>& backbone_families() {
  static const std::vector<BackboneFamily> families = {dit_family(), pixart_family()};
  return families;
}

const BackboneFamily* find_backbone_family(const std::string& name) {
  for (const BackboneFamily& family : backbone_families())
    if (family.name == name) return &family;
  return nullptr;
}

const torch::Tensor& shape_tensor(const TensorMap& w, const std::string& name, int64_t dims, const std::string& what,
                                  const std::string& source) {
  auto it = w.find(name);
  if (it == w.end()) throw Error(source + ": missing \"" + name + "\" (needed to infer " + what + ")");
  const torch::Tensor& t = it->second;
  bool ok = t.dim() == dims;
  for (int64_t i = 0; ok && i < t.dim(); ++i) ok = t.size(i) >= 1;
  if (!ok)
    throw Error(source + ": \"" + name + "\" has shape " + c10::str(t.sizes()) + ", expected " + std::to_string(dims) +
                " dimensions of size >= 1 (needed to infer " + what + ")");
  return t;
}

TransformerShape infer_transformer_shape(const TensorMap& w, const std::string& source) {
  TransformerShape s;
  const torch::Tensor& patch = need_patch_kernel(w, source);  // (D, C, p, p)
  s.hidden_size = patch.size(0);
  s.in_channels = patch.size(1);
  s.patch_size = patch.size(2);
  s.depth = count_blocks(w, "blocks", source);
  const int64_t out_rows = shape_tensor(w, "final_layer.linear.weight", 2, "the output channels", source).size(0);
  const int64_t out_channels = out_rows / (s.patch_size * s.patch_size);
  s.doubled_output = out_channels == 2 * s.in_channels;
  if (!s.doubled_output && out_channels != s.in_channels)
    throw Error(source + ": final_layer.linear.weight has " + std::to_string(out_rows) + " rows, expected p*p*" +
                std::to_string(s.in_channels) + " or p*p*" + std::to_string(2 * s.in_channels));
  return s;
}

double infer_mlp_ratio(const TensorMap& w, int64_t hidden_size, const std::string& source) {
  return static_cast<double>(shape_tensor(w, "blocks.0.mlp.fc1.weight", 2, "mlp_ratio", source).size(0)) / hidden_size;
}

int64_t infer_input_size(const TensorMap& w, int64_t patch_size) {
  auto it = w.find("pos_embed");
  return it == w.end() ? 0 : square_grid(it->second) * patch_size;
}

void expect_spec_agrees(const ModelSpec& spec, const std::string& key, double from_weights, double configured) {
  if (from_weights != configured) {
    std::ostringstream s;
    s << from_weights << " as in the weights (got " << configured << ")";
    throw spec.invalid(key, s.str());
  }
}

int64_t default_num_heads(const ModelSpec& spec, int64_t hidden_size) {
  if (spec.num_heads) return 0;  // taken from the spec
  const int64_t heads = official_num_heads(hidden_size);
  if (heads == 0)
    throw spec.invalid("num_heads", "given (e.g. --set " + spec.key("num_heads") +
                                        "=N): the weights do not determine "
                                        "the head count and hidden_size " +
                                        std::to_string(hidden_size) + " is not the width of an official model");
  spdlog::info("{} not set: using {}, the head count of the official models of width {}", spec.key("num_heads"), heads,
               hidden_size);
  return heads;
}

}  // namespace ilf
