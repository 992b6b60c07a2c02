// The ILF / pretraining trainer (see include/ilf/training/trainer.h): set-up of models, data and
// optimizer, the optimizer step with accumulation, clipping, EMA and data-parallel gradient averaging,
// the run loop with stop requests, checkpoints with exact resume. The losses, options, activation
// checkpointing, metrics and sample grids live in their own files (see trainer.h).
#include "ilf/training/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/models/weights.h"
#include "ilf/training/activation_checkpointing.h"
#include "ilf/training/checkpoint.h"
#include "ilf/training/losses.h"
#include "ilf/training/run_output.h"
#include "ilf/training/torch_compat.h"
#include "ilf/util/stop_signal.h"

namespace ilf {
namespace fs = std::filesystem;

Trainer::Trainer(const TrainerSetup& setup, Distributed& distributed)
    : options_(setup.options),
      resolved_config_(setup.resolved_config),
      out_dir_(setup.out_dir),
      output_(setup.out_dir),
      dist_(distributed),
      device_(training_device(options_, distributed.local_rank())),
      schedule_(NoiseSchedule::create()) {
  if (options_.precision == "bf16" && !device_.is_cuda())
    throw Error(setup.config_source + ": \"training.precision\" must be \"float32\" on CPU (bf16 autocast runs on CUDA only)");
  if (!setup.backbone) throw Error("Trainer: no backbone");
  backbone_ = setup.backbone;
  move_backbone(*backbone_, device_, torch::kFloat32);

  if (options_.mode == TrainingMode::kIlf) {
    if (!setup.feedback)
      throw Error(setup.config_source +
                  ": missing required key \"ilf.loop_begin\" / \"ilf.loop_end\" (training mode ilf "
                  "trains a feedback module for that inner loop)");
    for (auto& p : backbone_->parameters()) p.set_requires_grad(false);  // frozen: no grad, no optimizer state
    backbone_->eval();
    feedback_ = FeedbackModule(*backbone_, *setup.feedback);
    feedback_->to(device_);
    feedback_->train();
    for (const auto& p : feedback_->named_parameters(true)) trainable_.emplace_back(p.key(), p.value());
  } else {
    backbone_->train();
    for (const auto& p : backbone_->named_parameters(true)) {
      p.value().set_requires_grad(true);
      trainable_.emplace_back(p.key(), p.value());
    }
  }
  compute_backbone_ = options_.activation_checkpointing ? with_activation_checkpointing(backbone_) : backbone_;

  // Data.
  dataset_ = setup.dataset;
  const auto shape = dataset_->sample_shape();
  if (shape.size() != 3 || shape[0] != backbone_->in_channels())
    throw Error(dataset_->describe() + ": samples have " + std::to_string(shape.empty() ? 0 : shape[0]) +
                " channels but the backbone takes " + std::to_string(backbone_->in_channels()));
  DataLoaderOptions loader_options;
  loader_options.seed = options_.seed;
  loader_options.batch_size = options_.batch_size;
  loader_options.grad_accum = options_.grad_accum;
  loader_options.rank = dist_.rank();
  loader_options.world_size = dist_.world_size();
  loader_options.read_ahead = setup.read_ahead;
  loader_ = std::make_unique<DataLoader>(dataset_, loader_options);

  // Every rank starts from rank 0's trainable weights.
  {
    std::vector<torch::Tensor> values;
    for (auto& [name, p] : trainable_) values.push_back(p.data());
    dist_.broadcast(values, 0);
  }
  std::vector<torch::Tensor> params;
  for (auto& [name, p] : trainable_) params.push_back(p);
  optimizer_ = std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(options_.lr)
                                                                 .betas(std::make_tuple(options_.betas[0], options_.betas[1]))
                                                                 .eps(options_.adam_eps)
                                                                 .weight_decay(options_.weight_decay));
  ema_ = std::make_unique<ParameterEma>(trainable_, options_.ema_decay);

  const bool resume = setup.resume;
  start_over_ = setup.start_over;
  allow_unchecked_checkpoint_ = setup.allow_unchecked_checkpoint;
  const std::string latest = latest_checkpoint(checkpoint_folder());
  if (!resume && !latest.empty())
    throw Error(out_dir_ + " already holds a run (" + latest + "): continue it with --resume or choose another --out");
  if (resume && latest.empty()) {
    // No checkpoint, but an earlier resume renamed corrupt ones: resuming now would silently start over.
    std::vector<std::string> corrupt;
    std::error_code ec;
    if (fs::is_directory(checkpoint_folder(), ec))
      for (const auto& entry : fs::directory_iterator(checkpoint_folder(), ec)) {
        const std::string name = entry.path().filename().string();
        if (name.rfind("checkpoint-", 0) == 0 && name.size() > 8 && name.compare(name.size() - 8, 8, ".corrupt") == 0)
          corrupt.push_back(name);
      }
    std::sort(corrupt.begin(), corrupt.end());
    if (!corrupt.empty() && !start_over_) {
      std::string list;
      for (const auto& name : corrupt) list += (list.empty() ? "" : ", ") + name;
      throw Error(checkpoint_folder() + ": no usable checkpoint to resume from: every checkpoint was found corrupt (renamed " +
                  list + "); resuming would start over from step 0: pass --start-over to do that");
    }
    if (dist_.is_main()) {
      if (corrupt.empty())
        spdlog::info("--resume: no checkpoint in {} yet, starting from step 0", checkpoint_folder());
      else
        spdlog::warn("--resume --start-over: every checkpoint in {} was corrupt; starting over from step 0", checkpoint_folder());
    }
  }
  if (dist_.is_main()) {
    fs::create_directories(out_dir_);
    // Temporary files of a killed writer (config.json.tmp.<pid>, metrics.jsonl.tmp.<pid>, ...) go first.
    for (const std::string& folder : {out_dir_, checkpoint_folder(), (fs::path(out_dir_) / "samples").string()})
      for (const std::string& removed : remove_stale_temporary_files(folder))
        spdlog::info("removed {}, left by an interrupted run", removed);
  }
  if (resume && !latest.empty()) resume_from_newest_usable();
  if (dist_.is_main()) {
    // Only now, after every check a resume makes: a refused resume leaves the run's config.json as it was.
    write_file_atomically((fs::path(out_dir_) / "config.json").string(),
                          [&](std::ostream& out) { out << resolved_config_.dump(2) << "\n"; });
    output_.truncate_metrics(step_);  // a resumed run logs the steps after its checkpoint again
    const int64_t trainable_count = [&] {
      int64_t n = 0;
      for (auto& [name, p] : trainable_) n += p.numel();
      return n;
    }();
    spdlog::info("{} training on {} ({} rank(s), backend {}): {} trainable parameters in {} tensors",
                 options_.mode == TrainingMode::kIlf ? "ILF" : "backbone", device_.str(), dist_.world_size(),
                 dist_.backend_name(), trainable_count, trainable_.size());
    spdlog::info("data: {}; global batch {} = {} per rank x {} rank(s) x {} accumulation; {} steps per epoch",
                 dataset_->describe(), loader_->global_batch(), options_.batch_size, dist_.world_size(), options_.grad_accum,
                 loader_->steps_per_epoch());
  }
}

Trainer::~Trainer() = default;

std::string Trainer::checkpoint_folder() const { return (fs::path(out_dir_) / "checkpoints").string(); }

std::string Trainer::weights_output_path() const {
  return (fs::path(out_dir_) / (options_.mode == TrainingMode::kIlf ? "feedback.safetensors" : "backbone.safetensors")).string();
}

bool Trainer::resume_from_newest_usable() {
  const std::vector<std::string> all = list_checkpoints(checkpoint_folder());
  std::string failures;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    TrainingCheckpoint ck;
    try {
      // Checksum, metadata and RNG state: a corrupt file falls back to the previous one. One without a
      // checksum is not known to be corrupt: UncheckedCheckpointError refuses the resume, renaming nothing.
      ck = load_checkpoint(*it, allow_unchecked_checkpoint_);
    } catch (const UncheckedCheckpointError&) {
      throw;
    } catch (const Error& e) {
      failures += std::string("\n  ") + e.what();
      const auto previous = std::next(it);
      if (dist_.is_main()) {
        spdlog::warn("{}; {}", e.what(),
                     previous != all.rend() ? "falling back to the previous checkpoint " + *previous
                                            : std::string("no older checkpoint to fall back to"));
        std::error_code ec;
        fs::rename(*it, *it + ".corrupt", ec);  // kept for inspection, out of the checkpoint list
      }
      continue;
    }
    // The metadata must also make sense for this run (not corruption: the checksum held). A step past
    // training.steps used to mark the run finished; a negative one (refused by load_checkpoint)
    // trained with a negative learning rate and read outside the data.
    if (ck.step > options_.steps)
      throw Error(*it + ": checkpoint metadata \"step\" is " + std::to_string(ck.step) + ", past training.steps (" +
                  std::to_string(options_.steps) + "); raise training.steps to continue this run");
    const double lr = learning_rate_at(options_, ck.step);
    if (!std::isfinite(lr) || !(lr > 0))
      throw Error(*it + ": the learning rate at checkpoint step " + std::to_string(ck.step) + " is " + std::to_string(lr) +
                  " (expected a finite number > 0; check training.lr and training.warmup_steps)");
    resume_from(ck, *it);
    return true;
  }
  if (start_over_) {
    if (dist_.is_main())
      spdlog::warn("--resume --start-over: no usable checkpoint in {} (bad ones renamed *.corrupt); starting over from step 0:{}",
                   checkpoint_folder(), failures);
    return false;
  }
  throw Error(checkpoint_folder() + ": no usable checkpoint to resume from (bad ones renamed *.corrupt); pass --start-over to " +
              "start from step 0:" + failures);
}

void Trainer::resume_from(const TrainingCheckpoint& ck, const std::string& path) {
  const std::string mode = options_.mode == TrainingMode::kIlf ? "ilf" : "pretrain";
  if (ck.mode != mode) throw Error(path + ": a \"" + ck.mode + "\" checkpoint cannot resume a \"" + mode + "\" run");
  torch::NoGradGuard no_grad;
  std::string problems;
  for (auto& [name, p] : trainable_) {
    auto it = ck.trainable.find(name);
    if (it == ck.trainable.end())
      problems += "\n  missing: " + name;
    else if (it->second.sizes() != p.sizes())
      problems += "\n  wrong shape: " + name;
    else
      p.copy_(it->second);
  }
  if (problems.empty() && ck.trainable.size() != trainable_.size()) problems += "\n  it holds other parameters too";
  if (!problems.empty()) throw Error(path + ": the checkpoint does not fit this model:" + problems);
  ema_->load(ck.ema, path);
  restore_optimizer_state(ck.optimizer, path);
  if (ck.cpu_rng_state.defined()) {
    auto generator = at::detail::getDefaultCPUGenerator();  // a handle sharing the default generator
    generator.set_state(ck.cpu_rng_state);
  }
  step_ = ck.step;
  const DataPosition where = loader_->position(step_);
  if (dist_.is_main()) {
    if (where.epoch != ck.epoch || where.step_in_epoch != ck.step_in_epoch)
      spdlog::warn("{}: the global batch changed since the checkpoint; continuing at epoch {} step {} of the new layout", path,
                   where.epoch, where.step_in_epoch);
    spdlog::info("resumed from {} at step {} (epoch {}, step {} of the epoch)", path, step_, where.epoch, where.step_in_epoch);
  }
}

void Trainer::restore_optimizer_state(const std::map<std::string, AdamState>& state, const std::string& source) {
  auto& states = optimizer_->state();
  for (auto& [name, p] : trainable_) {
    auto it = state.find(name);
    if (it == state.end()) continue;  // no step taken yet for this parameter
    auto s = std::make_unique<torch::optim::AdamWParamState>();
    s->step(it->second.step);
    s->exp_avg(it->second.exp_avg.to(p.device()).clone());
    s->exp_avg_sq(it->second.exp_avg_sq.to(p.device()).clone());
    if (s->exp_avg().sizes() != p.sizes()) throw Error(source + ": optimizer state of \"" + name + "\" has the wrong shape");
    states[optimizer_state_key(states, p)] = std::move(s);
  }
}

LossTerms Trainer::compute_loss(const TrainingBatch& batch) {
  const torch::Tensor x0 = batch.x0.to(device_, torch::kFloat32);  // (B, C, H, W)
  const TrainingNoise noise =
      draw_training_noise(batch, options_.seed, schedule_.num_train_timesteps(), options_.cond_dropout, device_);
  const ConditionInputs cond = drop_condition(*backbone_, condition_to(batch.condition, device_), noise.drop);
  if (options_.mode == TrainingMode::kPretrain)
    return pretraining_loss(*compute_backbone_, schedule_, x0, noise.eps, noise.t, cond, options_.precision == "bf16");
  return fad_loss(*compute_backbone_, *feedback_, *backbone_, schedule_, x0, noise.eps, noise.t, cond, options_);
}

StepMetrics Trainer::train_step() {
  StepMetrics m;
  const int64_t A = options_.grad_accum;
  double sums[3] = {0, 0, 0};
  for (int64_t micro = 0; micro < A; ++micro) {
    const TrainingBatch batch = loader_->next(step_, micro);
    const LossTerms terms = compute_loss(batch);
    (terms.total / static_cast<double>(A)).backward();
    sums[0] += terms.total.item<double>();
    sums[1] += terms.rec.item<double>();
    if (terms.dist.defined()) sums[2] += terms.dist.item<double>();
  }
  std::vector<torch::Tensor> grads;
  for (auto& [name, p] : trainable_) {
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  dist_.average(grads);
  const double denominator = static_cast<double>(A * dist_.world_size());
  const auto totals = dist_.sum({sums[0], sums[1], sums[2]});
  m.loss = totals[0] / denominator;
  m.loss_rec = totals[1] / denominator;
  m.loss_dist = totals[2] / denominator;

  // Global gradient norm (float64 accumulation), then clipping as torch.nn.utils.clip_grad_norm_.
  std::vector<torch::Tensor> squares;
  for (const auto& g : grads) squares.push_back(g.to(torch::kFloat64).pow(2).sum());
  m.grad_norm = std::sqrt(torch::stack(squares).sum().item<double>());  // one device sync
  m.lr = learning_rate_at(options_, step_);
  if (!std::isfinite(m.loss) || !std::isfinite(m.grad_norm)) {
    for (auto& [name, p] : trainable_) p.mutable_grad() = torch::Tensor();
    const std::string latest = latest_checkpoint(checkpoint_folder());
    std::ostringstream message;
    message << "step " << step_ + 1 << ": non-finite " << (std::isfinite(m.loss) ? "gradient norm" : "loss") << " (loss "
            << m.loss << ", rec " << m.loss_rec << ", dist " << m.loss_dist << ", grad norm " << m.grad_norm
            << "); stopping without applying the step. The newest checkpoint is "
            << (latest.empty() ? std::string("(none written yet)") : latest)
            << ". Lower training.lr, set training.grad_clip or check the data.";
    throw NonFiniteLossError(message.str());
  }
  if (options_.grad_clip > 0 && m.grad_norm > options_.grad_clip) {
    const double factor = options_.grad_clip / (m.grad_norm + 1e-6);
    for (auto& g : grads) g.mul_(factor);
  }
  for (auto& group : optimizer_->param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(m.lr);
  optimizer_->step();
  for (auto& [name, p] : trainable_) p.mutable_grad() = torch::Tensor();
  ema_->update();
  ++step_;
  m.step = step_;
  return m;
}

bool Trainer::run() {
  start_time_ = std::chrono::steady_clock::now();
  start_step_ = step_;
  auto last_log_time = start_time_;
  int64_t last_log_step = step_;
  int64_t last_saved_step = -1;
  bool finished = true;
  while (step_ < options_.steps) {
    const StepMetrics m = train_step();
    // Every rank must agree to stop at the same step: sum the local requests.
    const bool stop = dist_.sum({stop_signal_received() ? 1.0 : 0.0})[0] > 0;
    if (dist_.is_main() && (step_ % options_.log_every == 0 || step_ == options_.steps || stop)) {
      const auto now = std::chrono::steady_clock::now();
      const double seconds = std::chrono::duration<double>(now - last_log_time).count();
      const double per_step = seconds / static_cast<double>(std::max<int64_t>(1, step_ - last_log_step));
      write_metrics(m, per_step);
      last_log_time = now;
      last_log_step = step_;
    }
    if (options_.sample_every > 0 && step_ % options_.sample_every == 0) write_sample_grid();
    if (stop) {
      save();
      if (dist_.is_main())
        spdlog::info("stop requested{}: checkpoint written at step {}; continue with --resume",
                     last_stop_signal() ? " (signal " + std::to_string(last_stop_signal()) + ")" : std::string(), step_);
      finished = false;
      last_saved_step = step_;
      break;
    }
    if (options_.checkpoint_every > 0 && step_ % options_.checkpoint_every == 0) {
      save();
      last_saved_step = step_;
    }
  }
  if (finished && last_saved_step != step_) save();
  dist_.barrier();
  return finished;
}

void Trainer::save() {
  if (!dist_.is_main()) return;
  TrainingCheckpoint ck;
  ck.step = step_;
  const DataPosition where = loader_->position(step_);
  ck.epoch = where.epoch;
  ck.step_in_epoch = where.step_in_epoch;
  ck.mode = options_.mode == TrainingMode::kIlf ? "ilf" : "pretrain";
  ck.config_json = resolved_config_.dump();
  const auto& states = optimizer_->state();
  for (const auto& [name, p] : trainable_) {
    ck.trainable[name] = p.detach().cpu().clone();
    auto it = states.find(optimizer_state_key(states, p));
    if (it != states.end()) {
      const auto& s = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      ck.optimizer[name] = AdamState{s.step(), s.exp_avg().cpu(), s.exp_avg_sq().cpu()};
    }
  }
  for (const auto& [name, value] : ema_->values()) ck.ema[name] = value.cpu();
  ck.cpu_rng_state = at::detail::getDefaultCPUGenerator().get_state();
  const std::string path = save_checkpoint(checkpoint_folder(), ck, options_.keep_checkpoints);

  // The file ilf_sample loads: EMA weights, written atomically.
  {
    ParameterEma::Swap swap(*ema_);
    if (options_.mode == TrainingMode::kIlf) {
      feedback_->save(weights_output_path());
    } else {
      TensorMap tensors;
      for (const auto& p : backbone_->named_parameters(true)) tensors[p.key()] = p.value().detach();
      for (const auto& b : backbone_->named_buffers(true)) tensors[b.key()] = b.value().detach();
      write_safetensors(weights_output_path(), tensors,
                        {{"format", "ilf.backbone"}, {"family", backbone_->family()}, {"step", std::to_string(step_)}});
    }
  }
  spdlog::info("step {}: wrote {} and {}", step_, path, weights_output_path());
}

void Trainer::write_metrics(const StepMetrics& m, double seconds_per_step) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time_).count();
  const double global_batch = static_cast<double>(loader_->global_batch());
  const double it_per_s = seconds_per_step > 0 ? 1.0 / seconds_per_step : 0.0;
  const double remaining = static_cast<double>(options_.steps - step_) * seconds_per_step;
  Json line = {{"step", m.step},
               {"epoch", loader_->position(m.step > 0 ? m.step - 1 : 0).epoch},
               {"loss", m.loss},
               {"loss_rec", m.loss_rec},
               {"lr", m.lr},
               {"grad_norm", m.grad_norm},
               {"it_per_s", it_per_s},
               {"samples_per_s", it_per_s * global_batch},
               {"memory_mb", peak_memory_mb(device_)},
               {"time_s", elapsed}};
  if (options_.mode == TrainingMode::kIlf) line["loss_dist"] = m.loss_dist;
  output_.append_metrics(line);
  if (options_.mode == TrainingMode::kIlf)
    spdlog::info("step {}/{} loss {:.5f} (rec {:.5f}, dist {:.5f}) lr {:.2e} grad {:.3f} | {:.2f} it/s, ETA {}", m.step,
                 options_.steps, m.loss, m.loss_rec, m.loss_dist, m.lr, m.grad_norm, it_per_s, format_duration(remaining));
  else
    spdlog::info("step {}/{} loss {:.5f} lr {:.2e} grad {:.3f} | {:.2f} it/s, ETA {}", m.step, options_.steps, m.loss, m.lr,
                 m.grad_norm, it_per_s, format_duration(remaining));
}

void Trainer::write_sample_grid() {
  // All ranks take part only in the training collectives; the grid is rank 0's business.
  if (!dist_.is_main()) return;
  SampleGridOptions grid;
  grid.images = options_.sample_images;
  grid.steps = options_.sample_steps;
  grid.guidance = options_.sample_guidance;
  grid.seed = options_.seed;
  output_.write_sample_grid(step_, *backbone_, feedback(), *ema_, *dataset_, grid, device_);
}

}  // namespace ilf
