// Loading the backbone and the feedback module of a run config (see include/ilf/sampling/model_loading.h).
#include "ilf/sampling/model_loading.h"

#include "ilf/error.h"
#include "ilf/io/run_config.h"
#include "ilf/models/weights.h"

namespace ilf {

BackbonePtr load_backbone_from_config(ConfigReader& reader, const torch::Device& device) {
  const std::string path = resolve_config_path(reader, reader.require<std::string>("weights"));
  TensorMap weights = read_weights(path);
  BackbonePtr backbone = make_backbone_for_weights(weights, reader, "model", path);
  load_backbone_weights(*backbone, std::move(weights), path);
  move_backbone(*backbone, device, torch::kFloat32);
  backbone->eval();
  return backbone;
}

FeedbackModule load_feedback_from_config(ConfigReader& reader, const Backbone& backbone, const SamplingOptions& options,
                                         const torch::Device& device) {
  const std::string init = reader.choice("ilf.init", "copy", {"copy", "random"});
  const std::string path = reader.get<std::string>("ilf.feedback_weights", "");
  if (options.method != SamplingMethod::kIlf) return FeedbackModule{nullptr};
  if (path.empty()) throw Error(reader.source() + ": sampling method ilf needs \"ilf.feedback_weights\"");
  FeedbackModule feedback(backbone, FeedbackOptions{options.loop_begin, options.loop_end,
                                                    init == "copy" ? FeedbackInit::kCopyLoopEnd : FeedbackInit::kRandom});
  feedback->load(resolve_config_path(reader, path));
  feedback->to(device);
  feedback->eval();
  return feedback;
}

}  // namespace ilf
