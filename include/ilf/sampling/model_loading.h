// Loading what a sampling run needs from a run config: the backbone (section "model" + "weights")
// and, for the ILF method, the feedback module ("ilf.feedback_weights", "ilf.init"). Shared by
// ilf_sample, ilf_eval and the benchmarks so every tool reads these keys the same way.
#pragma once
#include <torch/torch.h>

#include "ilf/ilf/feedback.h"
#include "ilf/io/config.h"
#include "ilf/models/backbone.h"
#include "ilf/sampling/sampler.h"

namespace ilf {

// Reads "weights" (resolved with resolve_config_path), builds the backbone the weights and the
// "model" section describe, loads strictly, moves it to `device` and puts it in eval mode.
BackbonePtr load_backbone_from_config(ConfigReader& reader, const torch::Device& device);

// Reads "ilf.init" and "ilf.feedback_weights". For the ILF method returns the loaded feedback module
// (on `device`, eval mode); otherwise an empty holder. Errors name the missing key or file.
FeedbackModule load_feedback_from_config(ConfigReader& reader, const Backbone& backbone, const SamplingOptions& options,
                                         const torch::Device& device);

}  // namespace ilf
