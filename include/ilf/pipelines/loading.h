// Loading what a run needs from a typed run config, the one way every tool and pipeline does it:
// the run config itself (completed by a text-to-image model folder when one is named), the backbone
// (weights + "model"), the feedback module ("ilf"), the acceleration method and solver ("sampling"
// and the method's section) and the VAE ("vae").
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ilf/accel/method.h"
#include "ilf/config/run_config.h"
#include "ilf/feedback/feedback.h"
#include "ilf/models/backbone.h"
#include "ilf/models/vae.h"
#include "ilf/pipelines/model_folder.h"
#include "ilf/sampling/solver.h"

namespace ilf {

// A run config as the tools load it: the file (or none) with the overrides applied, completed by the
// model folder named by `model_folder` or by "model.folder" (see apply_model_folder), then parsed.
// `source_when_no_file` names the config in messages when `path` is empty (the tool's name).
struct LoadedRunConfig {
  RunConfig config;
  std::optional<ModelFolder> folder;
};
LoadedRunConfig load_tool_config(const std::string& path, const std::vector<std::string>& overrides,
                                 const std::string& model_folder = "", const std::string& source_when_no_file = "config");
// The same for a JSON value the tool has already edited (e.g. flags written into it).
LoadedRunConfig load_tool_config(Json json, const std::string& source, const std::string& model_folder = "");

// The backbone of `config.weights` (required) with the architecture the weights and "model" give,
// loaded strictly, on `device` in `dtype`, in eval mode.
BackbonePtr load_backbone(const RunConfig& config, const torch::Device& device, torch::Dtype dtype = torch::kFloat32);

// The feedback module "ilf.feedback_weights" for the loop "ilf.loop_begin/loop_end" on `device`
// (eval mode). Errors name the missing key or file.
FeedbackModule load_feedback_module(const RunConfig& config, const Backbone& backbone, const torch::Device& device);

// Everything the sampler needs besides the backbone and the inputs.
struct SamplingSetup {
  FeedbackModule feedback{nullptr};  // loaded when the method uses a feedback module
  AccelerationMethodPtr method;
  SolverPtr solver;
};
SamplingSetup load_sampling(const RunConfig& config, const Backbone& backbone, const torch::Device& device);

// The VAE of "vae" (decoder required; the encoder when set), with the scale factor of "vae.scale_factor"
// or else `default_scale_factor`.
std::shared_ptr<TorchScriptVae> load_vae(const RunConfig& config, double default_scale_factor, const torch::Device& device);

// The plan of the configured sampling run without loading weights: the depth comes from "model.depth"
// (required here), the rest from "sampling" and the method's section. The JSON adds "solver" and "depth".
nlohmann::json plan_run(const RunConfig& config);

// The settings that made an image, for its PNG metadata and reports: method (with its settings), steps,
// solver and guidance scale.
nlohmann::json generation_settings(const RunConfig& config, const AccelerationMethod& method, const Solver& solver);

}  // namespace ilf
