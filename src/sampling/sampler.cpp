// The sampling loop with guidance and block-forward accounting (see include/ilf/sampling/sampler.h).
#include "ilf/sampling/sampler.h"

#include "ilf/error.h"
#include "ilf/sampling/guidance.h"
#include "ilf/util/checks.h"

namespace ilf {

void SamplingOptions::validate() const {
  if (steps < 1) throw Error("sampling.steps must be >= 1 (got " + std::to_string(steps) + ")");
  if (guided_channels < 0) throw Error("sampling.guided_channels must be >= 0 (0 = all eps channels)");
  if (!(guidance_scale >= 0 && guidance_scale <= kMaxGuidanceScale))
    throw Error("sampling.guidance_scale must be a number from 0 to 1000 (got " + std::to_string(guidance_scale) + ")");
}

nlohmann::json SamplingPlan::to_json() const {
  nlohmann::json steps_json = nlohmann::json::array();
  for (const auto& s : steps) {
    nlohmann::json row = {{"index", s.index},
                          {"timestep", s.timestep},
                          {"sigma", s.sigma},
                          {"kind", s.action.kind},
                          {"feedback", s.action.feedback},
                          {"t_post", s.action.t_post},
                          {"reused_blocks", s.action.reused_blocks},
                          {"block_forwards", s.action.block_forwards}};
    if (s.action.decided_at_run_time) row["decided_at_run_time"] = true;
    if (!s.action.extra_work.empty()) row["extra_work"] = s.action.extra_work;
    if (s.block_forwards_run >= 0) row["block_forwards_run"] = s.block_forwards_run;
    steps_json.push_back(std::move(row));
  }
  return {{"method", method}, {"steps", steps_json}, {"total_block_forwards", total_block_forwards}};
}

namespace {

StepInfo step_info(const std::vector<double>& timesteps, int64_t k, int64_t depth) {
  StepInfo info;
  info.index = k;
  info.num_steps = static_cast<int64_t>(timesteps.size());
  info.timesteps = timesteps;
  info.depth = depth;
  return info;
}

}  // namespace

SamplingPlan plan_sampling(const AccelerationMethod& method, Solver& solver, int64_t steps, int64_t depth) {
  SamplingOptions{steps}.validate();
  solver.set_timesteps(steps);
  const std::vector<double> timesteps = solver.timesteps();
  const std::vector<double> sigmas = solver.sigmas();
  const int64_t n = static_cast<int64_t>(timesteps.size());
  method.validate(depth, n);

  SamplingPlan plan;
  plan.method = method.name();
  for (int64_t k = 0; k < n; ++k) {
    StepPlan s;
    s.index = k;
    s.timestep = timesteps[k];
    s.sigma = k < static_cast<int64_t>(sigmas.size()) ? sigmas[k] : 0.0;
    s.action = method.plan_step(step_info(timesteps, k, depth));
    plan.total_block_forwards += s.action.block_forwards;
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

SamplingResult sample(Backbone& backbone, AccelerationMethod& method, Solver& solver, const SamplingOptions& options,
                      const torch::Tensor& x_T, const ConditionInputs& inputs, const ConditionInputs& null_inputs,
                      const ProgressCallback& progress) {
  torch::NoGradGuard no_grad;
  options.validate();
  SamplingResult result;
  result.plan = plan_sampling(method, solver, options.steps, backbone.depth());  // also set_timesteps on the solver
  const bool guided = options.guidance_scale != 1.0;
  const ConditionInputs model_inputs = guided ? concat_conditions(inputs, null_inputs) : inputs;
  const int64_t batch = x_T.size(0);
  const int64_t channels = backbone.in_channels();
  const int64_t guided_channels = options.guided_channels == 0 ? channels : std::min(options.guided_channels, channels);
  const std::vector<double> timesteps = solver.timesteps();
  const int64_t n = static_cast<int64_t>(result.plan.steps.size());
  method.begin(n);

  BlockRunner runner(backbone);
  torch::Tensor x = x_T * solver.init_noise_sigma();
  result.plan.total_block_forwards = 0;
  for (StepPlan& step : result.plan.steps) {
    const torch::Tensor x_in = guided ? torch::cat({x, x}, 0) : x;  // (B', C, H, W)
    // The model time from the solver's step tensors (step.timestep's value, already on the device).
    const torch::Tensor t = solver.step_tensors(step.index, x.device()).timestep.expand({x_in.size(0)}).contiguous();  // (B',)
    const int64_t before = runner.block_forwards();
    const torch::Tensor out =
        method.forward(runner, x_in, t, model_inputs, step_info(timesteps, step.index, backbone.depth()), step.action);
    step.block_forwards_run = runner.block_forwards() - before;
    result.plan.total_block_forwards += step.action.block_forwards;
    // (B', C, H, W) in float32 (guidance and the solver update stay float32 with bf16 / fp16 weights);
    // learned-sigma channels dropped.
    torch::Tensor eps = out.slice(1, 0, channels).to(torch::kFloat32);
    if (guided) eps = classifier_free_guidance(eps, options.guidance_scale, guided_channels).narrow(0, 0, batch);
    x = solver.step(eps, x);
    // Non-finite latents only give black or NaN images: stop at the step that made them (a check, it
    // changes no value).
    if (options.check_finite_latents && !all_finite(x))
      throw Error("sampling: the latents became NaN or Inf at step " + std::to_string(step.index + 1) + "/" + std::to_string(n) +
                  " (timestep " + std::to_string(step.timestep) +
                  "; non-finite weights or inputs, or a guidance scale, schedule or strength too extreme)");
    if (progress) progress(step.index + 1, n);
  }
  result.block_forwards = runner.block_forwards();
  result.samples = x;
  return result;
}

}  // namespace ilf
