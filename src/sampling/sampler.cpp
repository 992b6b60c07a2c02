// The sampling loop with ILF, caching, guidance and block-forward accounting
// (see include/ilf/sampling/sampler.h).
#include "ilf/sampling/sampler.h"

#include <optional>

#include "ilf/error.h"
#include "ilf/ilf/inner_loop.h"

namespace ilf {

SamplingMethod parse_sampling_method(const std::string& name) {
  if (name == "baseline") return SamplingMethod::kBaseline;
  if (name == "ilf") return SamplingMethod::kIlf;
  if (name == "cache") return SamplingMethod::kCache;
  throw Error("unknown sampling method \"" + name + "\" (expected baseline, ilf or cache)");
}

std::string to_string(SamplingMethod method) {
  switch (method) {
    case SamplingMethod::kBaseline: return "baseline";
    case SamplingMethod::kIlf: return "ilf";
    case SamplingMethod::kCache: return "cache";
  }
  return "?";
}

void SamplingOptions::validate(int64_t depth) const {
  if (steps < 1) throw Error("sampling.steps must be >= 1 (got " + std::to_string(steps) + ")");
  if (guided_channels < 0) throw Error("sampling.guided_channels must be >= 0 (0 = all eps channels)");
  if (method == SamplingMethod::kIlf) {
    if (loop_begin < 0 || loop_end >= depth || loop_begin > loop_end)
      throw Error("ilf.loop_begin/loop_end: the inner loop [" + std::to_string(loop_begin) + ", " +
                  std::to_string(loop_end) + "] must satisfy 0 <= loop_begin <= loop_end <= " + std::to_string(depth - 1) +
                  " for a backbone of depth " + std::to_string(depth));
    feedback_steps.validate(steps);
  }
  if (method == SamplingMethod::kCache) cache.validate(depth);
}

SamplingOptions sampling_options_from_config(ConfigReader& r) {
  SamplingOptions o;
  o.method = parse_sampling_method(r.choice("sampling.method", "baseline", {"baseline", "ilf", "cache"}));
  o.steps = r.get<int64_t>("sampling.steps", 20);
  o.guidance_scale = r.get<double>("sampling.guidance_scale", 1.0);
  o.guided_channels = r.get<int64_t>("sampling.guided_channels", 0);
  o.loop_begin = r.get<int64_t>("ilf.loop_begin", 0);
  o.loop_end = r.get<int64_t>("ilf.loop_end", 0);
  o.t_post = parse_t_post_rule(r.choice("ilf.t_post", "none", {"none", "uniform", "rescale", "anneal"}));
  o.feedback_steps.mode = parse_feedback_steps_mode(
      r.choice("ilf.feedback_steps.mode", "all", {"all", "outer", "first", "last", "alternating", "list", "none"}));
  o.feedback_steps.count = r.get<int64_t>("ilf.feedback_steps.count", 2);
  o.feedback_steps.steps = r.get<std::vector<int64_t>>("ilf.feedback_steps.steps", {});
  o.cache.location = parse_cache_location(r.choice("cache.location", "inner", {"first", "last", "outer", "inner", "alternating"}));
  o.cache.num_blocks = r.get<int64_t>("cache.num_blocks", 0);
  o.cache.interval = r.get<int64_t>("cache.interval", 1);
  if (o.steps < 1) throw r.invalid("sampling.steps", "an integer >= 1 (got " + std::to_string(o.steps) + ")");
  if (o.cache.interval < 1) throw r.invalid("cache.interval", "an integer >= 1");
  return o;
}

nlohmann::json SamplingPlan::to_json() const {
  nlohmann::json steps_json = nlohmann::json::array();
  for (const auto& s : steps) {
    steps_json.push_back({{"index", s.index},
                          {"timestep", s.timestep},
                          {"sigma", s.sigma},
                          {"feedback", s.feedback},
                          {"t_post", s.t_post},
                          {"full_step", s.full_step},
                          {"cached_blocks", s.cached_blocks},
                          {"block_forwards", s.block_forwards}});
  }
  return {{"steps", steps_json}, {"total_block_forwards", total_block_forwards}};
}

SamplingPlan plan_sampling(const SamplingOptions& options, Solver& solver, int64_t depth) {
  options.validate(depth);
  solver.set_timesteps(options.steps);
  const std::vector<double> timesteps = solver.timesteps();
  const std::vector<double> sigmas = solver.sigmas();
  const int64_t n = static_cast<int64_t>(timesteps.size());
  const int64_t loop_size = options.loop_end - options.loop_begin + 1;
  const std::vector<int64_t> cacheable =
      options.method == SamplingMethod::kCache ? options.cache.cached_blocks(depth) : std::vector<int64_t>{};

  SamplingPlan plan;
  for (int64_t k = 0; k < n; ++k) {
    StepPlan s;
    s.index = k;
    s.timestep = timesteps[k];
    s.sigma = k < static_cast<int64_t>(sigmas.size()) ? sigmas[k] : 0.0;
    s.t_post = s.timestep;
    s.block_forwards = depth;
    if (options.method == SamplingMethod::kIlf && options.feedback_steps.uses_feedback(k, n)) {
      s.feedback = true;
      s.t_post = compute_t_post(options.t_post, timesteps, k, depth, loop_size);
      s.block_forwards = depth + loop_size + 1;
    } else if (options.method == SamplingMethod::kCache && !options.cache.is_full_step(k)) {
      s.full_step = false;
      s.cached_blocks = cacheable;
      s.block_forwards = depth - static_cast<int64_t>(cacheable.size());
    }
    plan.total_block_forwards += s.block_forwards;
    plan.steps.push_back(std::move(s));
  }
  return plan;
}

ConditionInputs concat_conditions(const ConditionInputs& a, const ConditionInputs& b) {
  auto join = [](const torch::Tensor& x, const torch::Tensor& y, const char* name) -> torch::Tensor {
    if (!x.defined() && !y.defined()) return {};
    if (!x.defined() || !y.defined() || x.sizes().slice(1) != y.sizes().slice(1))
      throw Error(std::string("guidance: the null condition's ") + name + " does not match the condition's shape");
    return torch::cat({x, y.to(x.dtype())}, 0);
  };
  ConditionInputs c;
  c.class_labels = join(a.class_labels, b.class_labels, "class_labels");
  c.caption = join(a.caption, b.caption, "caption");
  c.caption_mask = join(a.caption_mask, b.caption_mask, "caption_mask");
  c.image_hw = join(a.image_hw, b.image_hw, "image_hw");
  c.aspect_ratio = join(a.aspect_ratio, b.aspect_ratio, "aspect_ratio");
  return c;
}

SamplingResult sample(Backbone& backbone, FeedbackModuleImpl* feedback, Solver& solver, const SamplingOptions& options,
                      const torch::Tensor& x_T, const ConditionInputs& inputs, const ConditionInputs& null_inputs,
                      const ProgressCallback& progress) {
  torch::NoGradGuard no_grad;
  SamplingResult result;
  result.plan = plan_sampling(options, solver, backbone.depth());  // also set_timesteps on the solver
  if (options.method == SamplingMethod::kIlf) {
    if (!feedback) throw Error("sampling method ilf needs a feedback module (ilf.feedback_weights)");
    if (feedback->loop_begin() != options.loop_begin || feedback->loop_end() != options.loop_end)
      throw Error("the feedback module was made for loop [" + std::to_string(feedback->loop_begin()) + ", " +
                  std::to_string(feedback->loop_end()) + "] but the sampling settings ask for [" +
                  std::to_string(options.loop_begin) + ", " + std::to_string(options.loop_end) + "]");
  }
  const bool guided = options.guidance_scale != 1.0;
  const ConditionInputs model_inputs = guided ? concat_conditions(inputs, null_inputs) : inputs;
  const int64_t batch = x_T.size(0);
  const int64_t channels = backbone.in_channels();
  std::optional<BlockCache> cache;
  if (options.method == SamplingMethod::kCache) cache.emplace(options.cache, backbone.depth());

  torch::Tensor x = x_T * solver.init_noise_sigma();
  for (const StepPlan& step : result.plan.steps) {
    const torch::Tensor x_in = guided ? torch::cat({x, x}, 0) : x;  // (B', C, H, W)
    const auto time_options = torch::TensorOptions().dtype(torch::kFloat32).device(x.device());
    const torch::Tensor t = torch::full({x_in.size(0)}, step.timestep, time_options);
    torch::Tensor out;
    if (step.feedback) {
      const torch::Tensor t_post = torch::full({x_in.size(0)}, step.t_post, time_options);
      out = inner_loop_forward(backbone, *feedback, x_in, t, t_post, model_inputs, &result.block_forwards);
    } else if (cache) {
      out = cache->forward(backbone, x_in, t, model_inputs, step.index, &result.block_forwards);
    } else {
      out = backbone.forward(x_in, t, model_inputs);
      result.block_forwards += backbone.depth();
    }
    // (B', C, H, W) in float32 (guidance and the solver update stay float32 with bf16 / fp16 weights);
    // learned-sigma channels dropped.
    torch::Tensor eps = out.slice(1, 0, channels).to(torch::kFloat32);
    if (guided) {
      const torch::Tensor cond = eps.slice(0, 0, batch), uncond = eps.slice(0, batch);
      const int64_t g = options.guided_channels == 0 ? channels : std::min(options.guided_channels, channels);
      const torch::Tensor guided_eps = uncond.slice(1, 0, g) + options.guidance_scale * (cond.slice(1, 0, g) - uncond.slice(1, 0, g));
      eps = g == channels ? guided_eps : torch::cat({guided_eps, cond.slice(1, g)}, 1);
    }
    x = solver.step(eps, x);
    if (progress) progress(step.index + 1, static_cast<int64_t>(result.plan.steps.size()));
  }
  result.samples = x;
  return result;
}

}  // namespace ilf
