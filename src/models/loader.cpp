// Loading a backbone from its weights (see include/ilf/models/loader.h).
#include "ilf/models/loader.h"

#include <utility>

#include "ilf/models/weights.h"

namespace ilf {

BackbonePtr load_backbone(const std::string& weights_path, const ModelSpec& spec) {
  TensorMap weights = read_weights(weights_path);
  BackbonePtr backbone = make_backbone_for_weights(weights, spec, weights_path);
  load_backbone_weights(*backbone, std::move(weights), weights_path);
  return backbone;
}

}  // namespace ilf
