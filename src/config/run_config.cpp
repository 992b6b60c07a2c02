// The typed run config (see include/ilf/config/run_config.h): one parser per section, each the only
// reader of its keys, and the final check that no key was left unread.
#include "ilf/config/run_config.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "ilf/error.h"
#include "ilf/models/vae.h"
#include "ilf/sampling/noise_schedule.h"
#include "ilf/sampling/sampler.h"
#include "ilf/util/strings.h"

namespace ilf {

namespace {

// A file path from the config, resolved (as given, or beside the config file); "" when unset.
std::string path_setting(ConfigReader& r, const std::string& key) { return r.file_path(key); }

// "class_names": distinct non-empty names, one per class label (the image server takes them as prompts).
std::vector<std::string> parse_class_names(ConfigReader& r) {
  if (!r.has("class_names")) return {};
  const std::vector<std::string> names = r.require<std::vector<std::string>>("class_names");
  std::set<std::string> seen;
  for (const std::string& name : names)
    if (name.empty() || !seen.insert(name).second)
      throw r.invalid("class_names", "a list of distinct, non-empty names, one per class label");
  return names;
}

ModelSpec parse_model(ConfigReader& r) {
  ModelSpec m;
  m.source = r.source();
  m.prefix = "model";
  if (r.has("model.folder"))
    throw r.invalid("model.folder",
                    "applied before the config is read (use ilf_sample --model-folder or a tool of "
                    "pipelines/, which complete the config from the folder's model.json)");
  // Sizes are bounded before anything is allocated (model.depth = 1e9 allocated 7.5 GB, then failed
  // with a bare std::bad_alloc); the bounds are far above every published DiT / PixArt.
  auto opt_int = [&](const char* key, std::optional<int64_t>& out, int64_t max) {
    const std::string path = std::string("model.") + key;
    if (!r.has(path)) return;
    out = r.require<int64_t>(path);
    if (*out < 1 || *out > max)
      throw r.invalid(path, "an integer from 1 to " + std::to_string(max) + " (got " + std::to_string(*out) + ")");
  };
  auto opt_double = [&](const char* key, std::optional<double>& out) {
    if (r.has(std::string("model.") + key)) out = r.require<double>(std::string("model.") + key);
  };
  auto opt_bool = [&](const char* key, std::optional<bool>& out) {
    if (r.has(std::string("model.") + key)) out = r.require<bool>(std::string("model.") + key);
  };
  if (r.has("model.family")) m.family = r.choice("model.family", "", {"dit", "pixart"});
  if (r.has("model.variant")) m.variant = r.choice("model.variant", "", {"alpha", "alpha_ms", "sigma"});
  opt_int("input_size", m.input_size, kMaxModelInputSize);
  opt_int("patch_size", m.patch_size, kMaxModelPatchSize);
  opt_int("in_channels", m.in_channels, kMaxModelChannels);
  opt_int("hidden_size", m.hidden_size, kMaxModelHiddenSize);
  opt_int("depth", m.depth, kMaxModelDepth);
  opt_int("num_heads", m.num_heads, kMaxModelHiddenSize);
  // Positional-embedding factors of PixArt (1 .. 2 and 0.5 .. 2 published); 1e300 gave garbage.
  auto opt_factor = [&](const char* key, std::optional<double>& out) {
    opt_double(key, out);
    if (out && !(*out > 0 && *out <= 64))
      throw r.invalid(std::string("model.") + key, "a number in (0, 64] (got " + number_text(*out) + ")");
  };
  opt_double("mlp_ratio", m.mlp_ratio);
  if (m.mlp_ratio && !(*m.mlp_ratio > 0 && *m.mlp_ratio <= 64))
    throw r.invalid("model.mlp_ratio", "a number in (0, 64] (got " + std::to_string(*m.mlp_ratio) + ")");
  opt_int("num_classes", m.num_classes, kMaxModelClasses);
  opt_bool("learn_sigma", m.learn_sigma);
  opt_bool("pred_sigma", m.pred_sigma);
  opt_int("caption_channels", m.caption_channels, kMaxModelHiddenSize);
  opt_int("model_max_length", m.model_max_length, kMaxModelTokens);
  opt_factor("lewei_scale", m.lewei_scale);
  opt_factor("pe_interpolation", m.pe_interpolation);
  opt_bool("qk_norm", m.qk_norm);
  opt_bool("kv_compress", m.kv_compress);
  return m;
}

FeedbackSection parse_feedback(ConfigReader& r) {
  FeedbackSection f;
  if (r.has("ilf.loop_begin")) f.loop_begin = r.require<int64_t>("ilf.loop_begin");
  if (r.has("ilf.loop_end")) f.loop_end = r.require<int64_t>("ilf.loop_end");
  f.init = r.choice("ilf.init", "copy", {"copy", "random"}) == "copy" ? FeedbackInit::kCopyLoopEnd : FeedbackInit::kRandom;
  f.weights = path_setting(r, "ilf.feedback_weights");
  return f;
}

SamplingSection parse_sampling(ConfigReader& r) {
  SamplingSection s;
  s.method = r.choice("sampling.method", s.method, acceleration_method_names());
  s.options.steps = r.get<int64_t>("sampling.steps", s.options.steps);
  s.options.guidance_scale = r.get<double>("sampling.guidance_scale", s.options.guidance_scale);
  s.options.guided_channels = r.get<int64_t>("sampling.guided_channels", s.options.guided_channels);
  if (s.options.steps < 1 || s.options.steps > kMaxSamplingSteps)
    throw r.invalid("sampling.steps", "an integer from 1 to " + std::to_string(kMaxSamplingSteps) + " (got " +
                                          std::to_string(s.options.steps) + ")");
  if (!(s.options.guidance_scale >= 0 && s.options.guidance_scale <= kMaxGuidanceScale))
    throw r.invalid("sampling.guidance_scale", "a number from 0 to 1000 (got " + number_text(s.options.guidance_scale) + ")");
  if (s.options.guided_channels < 0) throw r.invalid("sampling.guided_channels", "an integer >= 0 (0 = all eps channels)");
  s.solver = parse_solver_options(r, "sampling");
  return s;
}

VaeSection parse_vae(ConfigReader& r) {
  VaeSection v;
  v.decoder = path_setting(r, "vae.decoder");
  v.encoder = path_setting(r, "vae.encoder");
  if (r.has("vae.scale_factor")) {
    v.scale_factor = r.require<double>("vae.scale_factor");
    check_latent_scale(*v.scale_factor, r.source() + ": \"vae.scale_factor\"");
  }
  v.downsampling = r.get<int64_t>("vae.downsampling", v.downsampling);
  if (v.downsampling < 1 || v.downsampling > 64) throw r.invalid("vae.downsampling", "an integer in [1, 64]");
  return v;
}

TextSection parse_text(ConfigReader& r) {
  TextSection t;
  t.encoder = path_setting(r, "text.encoder");
  t.tokenizer = path_setting(r, "text.tokenizer");
  if (r.has("text.max_length")) {
    t.max_length = r.require<int64_t>("text.max_length");
    if (*t.max_length < 1 || *t.max_length > kMaxModelTokens)
      throw r.invalid("text.max_length", "an integer from 1 to " + std::to_string(kMaxModelTokens));
  }
  t.lowercase = r.get<bool>("text.lowercase", t.lowercase);
  t.cache_size = r.get<int64_t>("text.cache_size", t.cache_size);
  if (t.cache_size < 0) throw r.invalid("text.cache_size", "an integer >= 0");
  t.encoder_device = r.get<std::string>("text.encoder_device", t.encoder_device);
  return t;
}

TrainingOptions parse_training(ConfigReader& c) {
  TrainingOptions o;
  const std::string mode = c.choice("training.mode", "ilf", {"ilf", "pretrain", "l2c"});
  o.mode = mode == "ilf" ? TrainingMode::kIlf : mode == "pretrain" ? TrainingMode::kPretrain : TrainingMode::kL2C;
  o.device = c.choice("training.device", o.device, {"auto", "cpu", "cuda"});
  o.lr = c.get<double>("training.lr", o.lr);
  if (!(o.lr > 0)) throw c.invalid("training.lr", "> 0");
  const auto betas = c.get<std::vector<double>>("training.betas", {o.betas[0], o.betas[1]});
  if (betas.size() != 2 || betas[0] < 0 || betas[0] >= 1 || betas[1] < 0 || betas[1] >= 1)
    throw c.invalid("training.betas", "two numbers in [0, 1), e.g. [0.9, 0.999]");
  o.betas = {betas[0], betas[1]};
  o.weight_decay = c.get<double>("training.weight_decay", o.weight_decay);
  if (o.weight_decay < 0) throw c.invalid("training.weight_decay", ">= 0");
  o.adam_eps = c.get<double>("training.adam_eps", o.adam_eps);
  if (!(o.adam_eps > 0)) throw c.invalid("training.adam_eps", "> 0");
  o.warmup_steps = c.get<int64_t>("training.warmup_steps", o.warmup_steps);
  if (o.warmup_steps < 0) throw c.invalid("training.warmup_steps", ">= 0");
  o.grad_clip = c.get<double>("training.grad_clip", o.grad_clip);
  if (o.grad_clip < 0) throw c.invalid("training.grad_clip", ">= 0 (0 = no clipping)");
  o.batch_size = c.get<int64_t>("training.batch_size", o.batch_size);
  if (o.batch_size < 1) throw c.invalid("training.batch_size", ">= 1 (the per-rank micro-batch)");
  o.grad_accum = c.get<int64_t>("training.grad_accum", o.grad_accum);
  if (o.grad_accum < 1) throw c.invalid("training.grad_accum", ">= 1");
  o.steps = c.get<int64_t>("training.steps", o.steps);
  if (o.steps < 1 || o.steps > kMaxTrainingSteps)
    throw c.invalid("training.steps",
                    "an integer from 1 to " + std::to_string(kMaxTrainingSteps) + " (got " + std::to_string(o.steps) + ")");
  o.ema_decay = c.get<double>("training.ema_decay", o.ema_decay);
  if (o.ema_decay < 0 || o.ema_decay >= 1) throw c.invalid("training.ema_decay", "in [0, 1) (0 = no averaging)");
  o.t_ratio = c.get<double>("training.t_ratio", o.t_ratio);
  if (o.t_ratio < 0 || o.t_ratio > 1) throw c.invalid("training.t_ratio", "in [0, 1]");
  o.w_rec = c.get<double>("training.w_rec", o.w_rec);
  o.w_dist = c.get<double>("training.w_dist", o.w_dist);
  if (o.w_rec < 0 || o.w_dist < 0 || o.w_rec + o.w_dist == 0)
    throw c.invalid("training.w_rec", ">= 0, with w_dist >= 0 and not both 0");
  o.cond_dropout = c.get<double>("training.cond_dropout", o.cond_dropout);
  if (o.cond_dropout < 0 || o.cond_dropout > 1) throw c.invalid("training.cond_dropout", "in [0, 1]");
  o.distill_guidance = c.get<double>("training.distill_guidance", o.distill_guidance);
  if (!(o.distill_guidance >= 0 && o.distill_guidance <= kMaxGuidanceScale))
    throw c.invalid("training.distill_guidance", "a guidance scale from 0 to 1000 (1 = plain distillation)");
  o.teacher = c.choice("training.teacher", "fad", {"fad", "multistep"}) == "fad" ? TeacherKind::kFad : TeacherKind::kMultistep;
  o.teacher_steps = c.get<int64_t>("training.teacher_steps", o.teacher_steps);
  if (o.teacher_steps < 1) throw c.invalid("training.teacher_steps", ">= 1");
  if (o.distill_guidance != 1.0 && o.teacher != TeacherKind::kFad)
    throw c.invalid("training.distill_guidance",
                    "1 with teacher \"multistep\" (guidance-aware distillation uses the FAD teacher)");
  o.t_post_train =
      c.choice("training.t_post_train", "none", {"none", "teacher"}) == "none" ? TrainTPost::kNone : TrainTPost::kTeacher;
  o.checkpoint_every = c.get<int64_t>("training.checkpoint_every", o.checkpoint_every);
  if (o.checkpoint_every < 0) throw c.invalid("training.checkpoint_every", ">= 0 (0 = only at the end)");
  o.keep_checkpoints = c.get<int64_t>("training.keep_checkpoints", o.keep_checkpoints);
  if (o.keep_checkpoints < 1) throw c.invalid("training.keep_checkpoints", ">= 1");
  o.log_every = c.get<int64_t>("training.log_every", o.log_every);
  if (o.log_every < 1) throw c.invalid("training.log_every", ">= 1");
  o.sample_every = c.get<int64_t>("training.sample_every", o.sample_every);
  if (o.sample_every < 0) throw c.invalid("training.sample_every", ">= 0 (0 = no sample grids)");
  o.sample_images = c.get<int64_t>("training.sample_images", o.sample_images);
  if (o.sample_images < 1) throw c.invalid("training.sample_images", ">= 1");
  o.sample_steps = c.get<int64_t>("training.sample_steps", o.sample_steps);
  if (o.sample_steps < 1) throw c.invalid("training.sample_steps", ">= 1");
  o.sample_guidance = c.get<double>("training.sample_guidance", o.sample_guidance);
  if (!(o.sample_guidance >= 0 && o.sample_guidance <= kMaxGuidanceScale))
    throw c.invalid("training.sample_guidance", "a guidance scale from 0 to 1000");
  const int64_t seed = c.get<int64_t>("training.seed", 0);
  if (seed < 0) throw c.invalid("training.seed", ">= 0");
  o.seed = static_cast<uint64_t>(seed);
  o.precision = c.choice("training.precision", o.precision, {"float32", "bf16"});
  o.activation_checkpointing = c.get<bool>("training.activation_checkpointing", o.activation_checkpointing);
  o.collective_timeout_s = c.get<double>("training.collective_timeout_s", o.collective_timeout_s);
  if (!(o.collective_timeout_s > 0)) throw c.invalid("training.collective_timeout_s", "> 0");
  return o;
}

DataOptions parse_data(ConfigReader& r) {
  DataOptions d;
  d.kind = r.choice("data.kind", d.kind, {"fashion_mnist", "shards"});
  if (d.kind == "shards") {
    r.require<std::string>("data.path");
    d.path = r.file_path("data.path");
  } else {
    d.path = r.get<std::string>("data.path", d.path);  // a folder of the dataset's files, as given
    r.file_path("data.path");
    d.split = r.choice("data.split", d.split, {"train", "test"});
  }
  d.cache_shards = r.get<int64_t>("data.cache_shards", d.cache_shards);
  if (d.cache_shards < 1) throw r.invalid("data.cache_shards", ">= 1");
  d.read_ahead = r.get<int64_t>("data.read_ahead", d.read_ahead);
  if (d.read_ahead < 0) throw r.invalid("data.read_ahead", ">= 0");
  return d;
}

EvalSection parse_eval(ConfigReader& r) {
  EvalSection e;
  e.feature_extractor = r.file_path("eval.feature_extractor", e.feature_extractor);
  e.crop = r.get<int64_t>("eval.crop", e.crop);
  if (e.crop < 0) throw r.invalid("eval.crop", "an integer >= 0");
  e.reference_set = r.choice("eval.reference_set", e.reference_set, {"fashion_mnist_test"});
  e.dataset_folder = r.get<std::string>("eval.dataset_folder", e.dataset_folder);
  return e;
}

MetricsSection parse_metrics(ConfigReader& r) {
  MetricsSection m;
  m.clip = path_setting(r, "metrics.clip");
  m.image_reward = path_setting(r, "metrics.image_reward");
  m.image_reward_vocab = path_setting(r, "metrics.image_reward_vocab");
  m.image_reward_med_config = path_setting(r, "metrics.image_reward_med_config");
  m.inception = path_setting(r, "metrics.inception");
  m.fid_statistics = path_setting(r, "metrics.fid_statistics");
  m.lpips = path_setting(r, "metrics.lpips");
  if (!m.image_reward.empty() && m.image_reward_vocab.empty())
    throw r.invalid("metrics.image_reward_vocab",
                    "set with metrics.image_reward (the BERT vocab.txt ImageReward tokenizes with)");
  if (m.image_reward.empty() && (!m.image_reward_vocab.empty() || !m.image_reward_med_config.empty()))
    throw r.invalid("metrics.image_reward", "set when metrics.image_reward_vocab or metrics.image_reward_med_config is");
  if (m.inception.empty() != m.fid_statistics.empty())
    throw r.invalid(m.inception.empty() ? "metrics.inception" : "metrics.fid_statistics",
                    "set together with metrics." + std::string(m.inception.empty() ? "fid_statistics" : "inception") +
                        " (FID needs the Inception file and the reference statistics)");
  return m;
}

void check_top_level_keys(const ConfigReader& r) {
  const std::vector<std::string> known = run_config_sections();
  for (const auto& key : r.json().items())
    if (std::find(known.begin(), known.end(), key.key()) == known.end())
      throw Error(r.source() + ": unknown top-level key \"" + key.key() + "\" (expected one of " + join(known) + ")");
}

}  // namespace

std::optional<FeedbackOptions> FeedbackSection::options() const {
  if (!loop_begin || !loop_end) return std::nullopt;
  return FeedbackOptions{*loop_begin, *loop_end, init};
}

FeedbackOptions FeedbackSection::require(const std::string& source, const std::string& needed_by) const {
  for (const auto& [key, value] :
       {std::pair<const char*, bool>{"ilf.loop_begin", loop_begin.has_value()}, {"ilf.loop_end", loop_end.has_value()}})
    if (!value) throw Error(source + ": missing required key \"" + key + "\" (" + needed_by + " needs the inner loop)");
  return *options();
}

std::vector<std::string> run_config_sections() {
  std::vector<std::string> sections = {"model", "weights",  "class_names", "ilf",  "sampling", "vae",
                                       "text",  "training", "data",        "eval", "metrics"};
  for (const auto& m : acceleration_methods())
    if (!m.section.empty() && std::find(sections.begin(), sections.end(), m.section) == sections.end())
      sections.push_back(m.section);
  return sections;
}

Json read_run_config_json(const std::string& path, const std::vector<std::string>& overrides) {
  Json config = path.empty() ? Json::object() : load_json_file(path);
  for (const auto& o : overrides) apply_override(config, o);
  return config;
}

RunConfig parse_run_config(const Json& json, const std::string& source) {
  ConfigReader r(json, source);
  check_top_level_keys(r);
  RunConfig c;
  c.source = source;
  c.json = json;
  c.model = parse_model(r);
  c.weights = path_setting(r, "weights");
  c.class_names = parse_class_names(r);
  c.ilf = parse_feedback(r);
  c.sampling = parse_sampling(r);
  for (const auto& m : acceleration_methods()) c.methods[m.name] = m.parse(r);
  c.vae = parse_vae(r);
  c.text = parse_text(r);
  c.training = parse_training(r);
  c.data = parse_data(r);
  c.eval = parse_eval(r);
  c.metrics = parse_metrics(r);
  r.check_all_used();
  c.file_keys = r.file_keys();
  return c;
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  return parse_run_config(read_run_config_json(path, overrides), path.empty() ? "config" : path);
}

AccelerationMethodPtr make_acceleration_method(const RunConfig& config, FeedbackModuleImpl* feedback) {
  const MethodEntry& entry = find_acceleration_method(config.sampling.method);
  MethodContext context;
  context.source = config.source;
  context.loop = config.ilf.options();
  context.feedback = feedback;
  context.all_settings = &config.methods;
  return entry.make(config.method_settings(), context);
}

SolverOptions parse_solver_options(ConfigReader& reader, const std::string& prefix) {
  const auto path = [&](const std::string& key) { return prefix.empty() ? key : prefix + "." + key; };
  SolverOptions options;
  options.solver = reader.choice(path("solver"), options.solver, solver_names());
  const std::string& solver = options.solver;

  for (const auto& setting : solver_settings()) {
    const bool applies = std::find(setting.solvers.begin(), setting.solvers.end(), solver) != setting.solvers.end();
    if (!applies && reader.has(path(setting.key)))
      throw reader.invalid(path(setting.key),
                           "left out with solver \"" + solver + "\": it applies only to " + join(setting.solvers));
  }

  if (solver == "dpmpp2m" || solver == "ddim") {
    NoiseScheduleOptions schedule;
    schedule.beta_schedule = reader.choice(path("beta_schedule"), schedule.beta_schedule, {"linear", "scaled_linear"});
    schedule.beta_start = reader.get<double>(path("beta_start"), schedule.beta_start);
    schedule.beta_end = reader.get<double>(path("beta_end"), schedule.beta_end);
    if (!(schedule.beta_start >= kMinBeta && schedule.beta_start <= kMaxBeta))
      throw reader.invalid(path("beta_start"), "a number from 1e-8 to 0.5 (got " + number_text(schedule.beta_start) + ")");
    if (!(schedule.beta_end >= kMinBeta && schedule.beta_end <= kMaxBeta))
      throw reader.invalid(path("beta_end"), "a number from 1e-8 to 0.5 (got " + number_text(schedule.beta_end) + ")");
    schedule.num_train_timesteps = reader.get<int64_t>(path("num_train_timesteps"), schedule.num_train_timesteps);
    if (schedule.num_train_timesteps < 2 || schedule.num_train_timesteps > kMaxTrainTimesteps)
      throw reader.invalid(path("num_train_timesteps"), "an integer from 2 to " + std::to_string(kMaxTrainTimesteps) + " (got " +
                                                            std::to_string(schedule.num_train_timesteps) + ")");
    try {  // the table the keys make: alphas_cumprod that reach 0 or stay 1 in float32 only give NaN
      NoiseSchedule::create(schedule);
    } catch (const Error& e) {
      throw Error(reader.source() + ": " + path("beta_start") + ", " + path("beta_end") + " and " + path("num_train_timesteps") +
                  ": " + e.what());
    }

    const std::string default_spacing = solver == "dpmpp2m" ? "linspace" : "leading";
    const TimestepSpacing spacing =
        parse_timestep_spacing(reader.choice(path("timestep_spacing"), default_spacing, {"linspace", "leading", "trailing"}));
    const int64_t steps_offset = reader.get<int64_t>(path("steps_offset"), 0);
    if (steps_offset < 0) throw reader.invalid(path("steps_offset"), ">= 0 (got " + std::to_string(steps_offset) + ")");

    if (solver == "dpmpp2m") {
      DPMSolverOptions& o = options.dpmpp2m;
      o.schedule = schedule;
      o.timestep_spacing = spacing;
      o.steps_offset = steps_offset;
      o.solver_order = reader.get<int64_t>(path("solver_order"), o.solver_order);
      if (o.solver_order != 1 && o.solver_order != 2)
        throw reader.invalid(path("solver_order"), "1 or 2 (got " + std::to_string(o.solver_order) + ")");
      o.lower_order_final = reader.get<bool>(path("lower_order_final"), o.lower_order_final);
      o.euler_at_final = reader.get<bool>(path("euler_at_final"), o.euler_at_final);
      o.final_sigmas_type = reader.choice(path("final_sigmas_type"), o.final_sigmas_type, {"zero", "sigma_min"});
    } else {
      DDIMOptions& o = options.ddim;
      o.schedule = schedule;
      o.timestep_spacing = spacing;
      o.steps_offset = steps_offset;
      o.clip_sample = reader.get<bool>(path("clip_sample"), o.clip_sample);
      o.clip_sample_range = reader.get<double>(path("clip_sample_range"), o.clip_sample_range);
      if (!(o.clip_sample_range > 0 && std::isfinite(o.clip_sample_range)))
        throw reader.invalid(path("clip_sample_range"), "a finite number > 0 (got " + number_text(o.clip_sample_range) + ")");
      o.set_alpha_to_one = reader.get<bool>(path("set_alpha_to_one"), o.set_alpha_to_one);
    }
  } else {  // pixart_dpm
    PixArtDPMSolverOptions& o = options.pixart_dpm;
    o.solver_order = reader.get<int64_t>(path("solver_order"), o.solver_order);
    if (o.solver_order != 1 && o.solver_order != 2)
      throw reader.invalid(path("solver_order"), "1 or 2 (got " + std::to_string(o.solver_order) + ")");
    o.lower_order_final = reader.get<bool>(path("lower_order_final"), o.lower_order_final);
  }
  return options;
}

}  // namespace ilf
