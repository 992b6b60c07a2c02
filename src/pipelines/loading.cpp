// Loading a run's parts from its typed config (see include/ilf/pipelines/loading.h).
#include "ilf/pipelines/loading.h"

#include "ilf/accel/registry.h"
#include "ilf/error.h"
#include "ilf/models/loader.h"
#include "ilf/models/weights.h"
#include "ilf/sampling/solvers.h"

namespace ilf {

LoadedRunConfig load_tool_config(Json json, const std::string& source, const std::string& model_folder) {
  LoadedRunConfig loaded;
  loaded.folder = apply_model_folder(json, source, model_folder);
  loaded.config = parse_run_config(json, source);
  return loaded;
}

LoadedRunConfig load_tool_config(const std::string& path, const std::vector<std::string>& overrides,
                                 const std::string& model_folder, const std::string& source_when_no_file) {
  return load_tool_config(read_run_config_json(path, overrides), path.empty() ? source_when_no_file : path, model_folder);
}

BackbonePtr load_backbone(const RunConfig& config, const torch::Device& device, torch::Dtype dtype) {
  if (config.weights.empty()) throw Error(config.source + ": missing required key \"weights\" (the backbone weights file)");
  BackbonePtr backbone = load_backbone(config.weights, config.model);
  move_backbone(*backbone, device, dtype);
  backbone->eval();
  return backbone;
}

FeedbackModule load_feedback_module(const RunConfig& config, const Backbone& backbone, const torch::Device& device) {
  if (config.ilf.weights.empty())
    throw Error(config.source + ": sampling method " + config.sampling.method + " needs \"ilf.feedback_weights\"");
  FeedbackModule feedback(backbone, config.ilf.require(config.source, "the feedback module"));
  feedback->load(config.ilf.weights);
  feedback->to(device);
  feedback->eval();
  return feedback;
}

SamplingSetup load_sampling(const RunConfig& config, const Backbone& backbone, const torch::Device& device) {
  SamplingSetup s;
  if (find_acceleration_method(config.sampling.method).uses_feedback_module)
    s.feedback = load_feedback_module(config, backbone, device);
  s.method = make_acceleration_method(config, s.feedback ? s.feedback.get() : nullptr);
  s.solver = make_solver(config.sampling.solver);
  return s;
}

std::shared_ptr<TorchScriptVae> load_vae(const RunConfig& config, double default_scale_factor, const torch::Device& device) {
  if (config.vae.decoder.empty())
    throw Error(config.source + ": missing required key \"vae.decoder\" (a TorchScript VAE decoder)");
  return std::make_shared<TorchScriptVae>(config.vae.decoder, config.vae.encoder,
                                          config.vae.scale_factor.value_or(default_scale_factor), device);
}

nlohmann::json plan_run(const RunConfig& config) {
  if (!config.model.depth) throw Error(config.source + ": missing required key \"model.depth\" (--plan loads no weights)");
  const int64_t depth = *config.model.depth;
  if (depth < 1) throw config.model.invalid("depth", "an integer >= 1 (got " + std::to_string(depth) + ")");
  const AccelerationMethodPtr method = make_acceleration_method(config);
  const SolverPtr solver = make_solver(config.sampling.solver);
  nlohmann::json j = plan_sampling(*method, *solver, config.sampling.options.steps, depth).to_json();
  j["solver"] = solver->name();
  j["depth"] = depth;
  j["settings"] = method->settings();
  return j;
}

nlohmann::json generation_settings(const RunConfig& config, const AccelerationMethod& method, const Solver& solver) {
  nlohmann::json s = {{"method", method.name()},
                      {"steps", config.sampling.options.steps},
                      {"solver", solver.name()},
                      {"guidance_scale", config.sampling.options.guidance_scale}};
  const nlohmann::json settings = method.settings();
  if (!settings.empty()) s[method.name()] = settings;
  return s;
}

}  // namespace ilf
