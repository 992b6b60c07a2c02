// Loading a backbone from its weights, the one way every pipeline, tool and benchmark does it: read the
// tensors (any format models/weights.h reads), build the backbone the weights and the "model" settings
// describe, and copy the weights in strictly. What happens next (device, precision, eval or training
// mode) is the caller's.
#pragma once
#include <string>

#include "ilf/models/backbone.h"
#include "ilf/models/model_spec.h"

namespace ilf {

// The backbone of the weights at `weights_path` (a file or folder read_weights reads), with the
// architecture make_backbone_for_weights infers from them completed and checked by `spec`, loaded
// strictly (load_backbone_weights), float32 on the CPU. Errors name the file or the config key.
BackbonePtr load_backbone(const std::string& weights_path, const ModelSpec& spec);

}  // namespace ilf
