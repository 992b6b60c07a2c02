// Training from a run config (see include/ilf/pipelines/training.h).
#include "ilf/pipelines/training.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/safetensors.h"
#include "ilf/models/weights.h"
#include "ilf/pipelines/loading.h"

namespace ilf {

namespace fs = std::filesystem;

namespace {

// The config as checkpoints and OUT/config.json record it.
Json resolved_config(const RunConfig& config) {
  Json resolved = config.json;
  resolved["training"] = training_options_to_json(config.training);
  if (!config.weights.empty()) resolved["weights"] = fs::absolute(config.weights).string();
  if (resolved.contains("data") && resolved["data"].is_object() && resolved["data"].contains("path"))
    resolved["data"]["path"] = fs::absolute(config.data.path).string();
  return resolved;
}

// Condition dropout needs a null caption: PixArt-alpha has its learned y_embedding; otherwise use the
// text encoder's empty-prompt features that the preparation tool stores beside the shards.
void set_null_caption_from_shards(Backbone& backbone, const DataOptions& data) {
  if (backbone.condition_kind() != ConditionKind::kCaption || backbone.has_learned_null_condition() || data.kind != "shards")
    return;
  const fs::path null_caption = fs::path(data.path) / kNullCaptionFile;
  if (!fs::exists(null_caption))
    throw Error(null_caption.string() + ": missing; this PixArt model has no built-in null caption for condition "
                "dropout (ilf_prepare_data --captions writes the file)");
  const auto file = read_safetensors(null_caption.string());
  ConditionInputs null;
  null.caption = require_tensor(file.tensors, "caption", null_caption.string());
  if (file.tensors.count("caption_mask")) null.caption_mask = file.tensors.at("caption_mask");
  backbone.set_null_condition(null);
}

}  // namespace

TrainerSetup make_trainer_setup(const RunConfig& config, const std::string& out_dir, bool resume) {
  TrainerSetup s;
  s.options = config.training;
  s.config_source = config.source;
  // The backbone: from the weights file when given (architecture checked against "model"), otherwise
  // freshly initialised from "model" (pretraining from scratch); built right after seeding.
  torch::manual_seed(config.training.seed);
  if (!config.weights.empty()) {
    TensorMap tensors = read_weights(config.weights);
    s.backbone = make_backbone_for_weights(tensors, config.model, config.weights);
    load_backbone_weights(*s.backbone, std::move(tensors), config.weights);
  } else {
    s.backbone = make_backbone(config.model);
  }
  if (config.training.mode == TrainingMode::kIlf) s.feedback = config.ilf.require(config.source, "training mode ilf");
  s.dataset = make_dataset(config.data);
  set_null_caption_from_shards(*s.backbone, config.data);
  s.read_ahead = config.data.read_ahead;
  s.resolved_config = resolved_config(config);
  s.out_dir = out_dir;
  s.resume = resume;
  return s;
}

RunConfig load_training_config(const std::string& config_path, const std::vector<std::string>& overrides,
                               const std::string& out_dir, bool resume) {
  std::string source = config_path;
  if (source.empty()) {
    source = (fs::path(out_dir) / "config.json").string();
    if (!resume || !fs::exists(source))
      throw Error("--config is required (or --resume with an --out folder that holds config.json)");
  }
  return load_tool_config(source, overrides).config;
}

TrainingOutcome run_training(const RunConfig& config, const std::string& out_dir, bool resume) {
  const ProcessTopology topology = topology_from_environment();
  if (topology.rank != 0) spdlog::set_level(spdlog::level::warn);
  const torch::Device device = training_device(config.training, topology.local_rank);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(config.training.collective_timeout_s * 1000));
  Distributed distributed(topology, device, timeout);
  Trainer trainer(make_trainer_setup(config, out_dir, resume), distributed);

  TrainingOutcome outcome;
  outcome.finished = trainer.run();
  outcome.step = trainer.step();
  outcome.weights = trainer.weights_output_path();
  if (distributed.is_main()) {
    // For job scripts: whether the run reached training.steps or stopped early (signal).
    const Json status = {{"finished", outcome.finished}, {"step", outcome.step}, {"steps", config.training.steps},
                         {"weights", outcome.weights}};
    write_file_atomically((fs::path(out_dir) / "status.json").string(), [&](std::ostream& s) { s << status.dump(1) << "\n"; });
    spdlog::info("{} at step {}; feedback/backbone weights: {}", outcome.finished ? "finished" : "stopped", outcome.step,
                 outcome.weights);
  }
  return outcome;
}

}  // namespace ilf
