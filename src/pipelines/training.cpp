// Training from a run config (see include/ilf/pipelines/training.h).
#include "ilf/pipelines/training.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/safetensors.h"
#include "ilf/models/loader.h"
#include "ilf/models/weights.h"
#include "ilf/pipelines/loading.h"
#include "ilf/accel/l2c.h"
#include "ilf/training/l2c_router.h"

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
    throw Error(null_caption.string() +
                ": missing; this PixArt model has no built-in null caption for condition "
                "dropout (ilf_prepare_data --captions writes the file)");
  const auto file = read_safetensors(null_caption.string());
  ConditionInputs null;
  null.caption = require_tensor(file.tensors, "caption", null_caption.string());
  if (file.tensors.count("caption_mask")) null.caption_mask = file.tensors.at("caption_mask");
  backbone.set_null_condition(null);
}

// training.mode "l2c": the Learning-to-Cache router of the config's backbone, solver, steps and
// guidance, on conditions from the training data; writes OUT/router.safetensors, OUT/metrics.jsonl.
TrainingOutcome run_l2c_training(const RunConfig& config, const std::string& out_dir, bool resume) {
  if (resume)
    throw Error("training.mode l2c: --resume is not supported (a router trains in minutes; run again without --resume)");
  if (topology_from_environment().world_size != 1)
    throw Error("training.mode l2c runs on one process (it trains a few hundred numbers); launch it without torchrun");
  const torch::Device device = training_device(config.training, 0);
  fs::create_directories(out_dir);
  torch::manual_seed(config.training.seed);
  BackbonePtr backbone = load_backbone(config, device);
  DatasetPtr data = make_dataset(config.data);
  set_null_caption_from_shards(*backbone, config.data);
  SolverPtr solver = make_solver(config.sampling.solver);
  const auto& l2c = settings_as<L2CSettings>(*config.methods.at("l2c"), "l2c");
  L2CRouterOptions o;
  o.iterations = config.training.steps;
  o.batch = config.training.batch_size;
  o.trajectories = l2c.trajectories;
  o.full_every = l2c.full_every;
  o.lr = config.training.lr;
  o.sparsity = l2c.sparsity;
  o.seed = config.training.seed;
  write_file_atomically((fs::path(out_dir) / "config.json").string(),
                        [&](std::ostream& s) { s << resolved_config(config).dump(2) << "\n"; });
  spdlog::info(
      "Learning-to-Cache router: {} steps (a full step every {}) x {} blocks, {} trajectories recorded, {} iterations of {} "
      "inputs per cache step, lr {}, sparsity (lambda) {}",
      config.sampling.options.steps, o.full_every, backbone->depth(), o.trajectories, o.iterations, o.batch, o.lr, o.sparsity);
  std::ofstream metrics(fs::path(out_dir) / "metrics.jsonl");
  const torch::Tensor logits =
      train_l2c_router(*backbone, *solver, config.sampling.options, *data, o, device, [&](const L2CRouterStep& s) {
        metrics
            << Json{{"step", s.iteration}, {"loss", s.loss}, {"loss_rec", s.reconstruction}, {"mean_gate", s.mean_gate}}.dump()
            << "\n"
            << std::flush;
        if (s.iteration % config.training.log_every == 0 || s.iteration == o.iterations)
          spdlog::info("step {}/{} loss {:.6f} (rec {:.6f}, mean gate {:.3f})", s.iteration, o.iterations, s.loss,
                       s.reconstruction, s.mean_gate);
      });
  // What the router decided under the paper's rule, so that a lambda can be judged without sampling.
  const auto schedule = l2c_threshold_schedule(logits, config.sampling.options.steps, o.full_every, L2CSettings{}.threshold);
  int64_t forwards = 0;
  std::string per_step;
  for (size_t k = 0; k < schedule.size(); ++k) {
    const auto computed = static_cast<int64_t>(std::count(schedule[k].begin(), schedule[k].end(), false));
    forwards += computed;
    if (l2c_is_cache_step(static_cast<int64_t>(k), o.full_every)) per_step += " " + std::to_string(computed);
  }
  spdlog::info("at threshold {}: {} of {} block forwards ({:.3f}); blocks computed per cache step:{}", L2CSettings{}.threshold,
               forwards, config.sampling.options.steps * backbone->depth(),
               static_cast<double>(forwards) / static_cast<double>(config.sampling.options.steps * backbone->depth()), per_step);
  TrainingOutcome outcome;
  outcome.finished = true;
  outcome.step = o.iterations;
  outcome.weights = (fs::path(out_dir) / "router.safetensors").string();
  write_l2c_router(outcome.weights, logits, config.sampling.options.steps, o.full_every,
                   {{"solver", config.sampling.solver.solver},
                    {"guidance_scale", fmt::format("{}", config.sampling.options.guidance_scale)},
                    {"sparsity", fmt::format("{}", o.sparsity)},
                    {"lr", fmt::format("{}", o.lr)},
                    {"iterations", std::to_string(o.iterations)},
                    {"batch", std::to_string(o.batch)},
                    {"trajectories", std::to_string(o.trajectories)},
                    {"seed", std::to_string(o.seed)},
                    {"weights", config.weights}});
  return outcome;
}

}  // namespace

TrainerSetup make_trainer_setup(const RunConfig& config, const std::string& out_dir, bool resume, const ResumePolicy& policy) {
  TrainerSetup s;
  s.options = config.training;
  s.config_source = config.source;
  // The backbone: from the weights file when given (architecture checked against "model"), otherwise
  // freshly initialised from "model" (pretraining from scratch); built right after seeding.
  torch::manual_seed(config.training.seed);
  if (!config.weights.empty()) {
    s.backbone = load_backbone(config.weights, config.model);
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
  s.start_over = policy.start_over;
  s.allow_unchecked_checkpoint = policy.allow_unchecked_checkpoint;
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

TrainingOutcome run_training(const RunConfig& config, const std::string& out_dir, bool resume, const ResumePolicy& policy) {
  if (config.training.mode == TrainingMode::kL2C) {
    TrainingOutcome outcome = run_l2c_training(config, out_dir, resume);
    const Json status = {
        {"finished", true}, {"step", outcome.step}, {"steps", config.training.steps}, {"weights", outcome.weights}};
    write_file_atomically((fs::path(out_dir) / "status.json").string(), [&](std::ostream& s) { s << status.dump(1) << "\n"; });
    spdlog::info("finished; router: {} (sample with --set sampling.method=l2c --set l2c.router=...)", outcome.weights);
    return outcome;
  }
  const ProcessTopology topology = topology_from_environment();
  if (topology.rank != 0) spdlog::set_level(spdlog::level::warn);
  const torch::Device device = training_device(config.training, topology.local_rank);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(config.training.collective_timeout_s * 1000));
  Distributed distributed(topology, device, timeout);
  Trainer trainer(make_trainer_setup(config, out_dir, resume, policy), distributed);

  TrainingOutcome outcome;
  outcome.finished = trainer.run();
  outcome.step = trainer.step();
  outcome.weights = trainer.weights_output_path();
  if (distributed.is_main()) {
    // For job scripts: whether the run reached training.steps or stopped early (signal).
    const Json status = {
        {"finished", outcome.finished}, {"step", outcome.step}, {"steps", config.training.steps}, {"weights", outcome.weights}};
    write_file_atomically((fs::path(out_dir) / "status.json").string(), [&](std::ostream& s) { s << status.dump(1) << "\n"; });
    spdlog::info("{} at step {}; feedback/backbone weights: {}", outcome.finished ? "finished" : "stopped", outcome.step,
                 outcome.weights);
  }
  return outcome;
}

}  // namespace ilf
