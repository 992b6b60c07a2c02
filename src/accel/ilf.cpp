// Inner Loop Feedback as a sampling method (see include/ilf/accel/ilf.h).
#include "ilf/accel/ilf.h"

#include <cmath>

#include "ilf/error.h"
#include "ilf/feedback/inner_loop.h"

namespace ilf {

MethodSettingsPtr parse_ilf_settings(ConfigReader& r) {
  auto s = std::make_shared<IlfSettings>();
  s->t_post = parse_t_post_rule(r.choice("ilf.t_post", to_string(s->t_post), {"none", "uniform", "rescale", "anneal"}));
  s->anneal.floor = r.get<double>("ilf.anneal_floor", s->anneal.floor);
  s->anneal.scale = r.get<double>("ilf.anneal_scale", s->anneal.scale);
  if (!std::isfinite(s->anneal.floor) || s->anneal.floor < 0) throw r.invalid("ilf.anneal_floor", "a number >= 0");
  if (!std::isfinite(s->anneal.scale) || s->anneal.scale < 0) throw r.invalid("ilf.anneal_scale", "a number >= 0");
  s->strength = r.get<double>("ilf.strength", s->strength);
  if (!(s->strength >= 0 && s->strength <= kMaxFeedbackStrength))
    throw r.invalid("ilf.strength", "a number from 0 to 100 (1 = as trained; got " + std::to_string(s->strength) + ")");
  s->feedback_steps.mode = parse_feedback_steps_mode(r.choice("ilf.feedback_steps.mode", to_string(s->feedback_steps.mode),
                                                              {"all", "outer", "first", "last", "alternating", "list", "none"}));
  s->feedback_steps.count = r.get<int64_t>("ilf.feedback_steps.count", s->feedback_steps.count);
  s->feedback_steps.steps = r.get<std::vector<int64_t>>("ilf.feedback_steps.steps", s->feedback_steps.steps);
  if (s->feedback_steps.count < 0) throw r.invalid("ilf.feedback_steps.count", "an integer >= 0");
  return s;
}

IlfMethod::IlfMethod(const IlfSettings& settings, int64_t loop_begin, int64_t loop_end, FeedbackModuleImpl* feedback)
    : settings_(settings), loop_begin_(loop_begin), loop_end_(loop_end), feedback_(feedback) {
  if (feedback && (feedback->loop_begin() != loop_begin || feedback->loop_end() != loop_end))
    throw Error("the feedback module was made for loop [" + std::to_string(feedback->loop_begin()) + ", " +
                std::to_string(feedback->loop_end()) + "] but the sampling settings ask for [" + std::to_string(loop_begin) +
                ", " + std::to_string(loop_end) + "]");
}

nlohmann::json IlfMethod::settings() const {
  nlohmann::json j = {{"loop_begin", loop_begin_},
                      {"loop_end", loop_end_},
                      {"t_post", to_string(settings_.t_post)},
                      {"feedback_steps", to_string(settings_.feedback_steps.mode)},
                      {"feedback_count", settings_.feedback_steps.count}};
  if (settings_.feedback_steps.mode == FeedbackSteps::Mode::kList) j["feedback_step_list"] = settings_.feedback_steps.steps;
  if (settings_.t_post == TPostRule::kAnneal && !settings_.anneal.is_default())
    j["anneal"] = {{"floor", settings_.anneal.floor}, {"scale", settings_.anneal.scale}};
  if (settings_.strength != 1.0) j["strength"] = settings_.strength;
  return j;
}

void IlfMethod::validate(int64_t depth, int64_t num_steps) const {
  if (loop_begin_ < 0 || loop_end_ >= depth || loop_begin_ > loop_end_)
    throw Error("ilf.loop_begin/loop_end: the inner loop [" + std::to_string(loop_begin_) + ", " + std::to_string(loop_end_) +
                "] must satisfy 0 <= loop_begin <= loop_end <= " + std::to_string(depth - 1) + " for a backbone of depth " +
                std::to_string(depth));
  settings_.feedback_steps.validate(num_steps);
}

StepAction IlfMethod::plan_step(const StepInfo& step) const {
  StepAction a;
  a.t_post = step.timestep();
  a.block_forwards = step.depth;
  if (settings_.feedback_steps.uses_feedback(step.index, step.num_steps)) {
    a.kind = "feedback";
    a.feedback = true;
    a.t_post = compute_t_post(settings_.t_post, step.timesteps, step.index, step.depth, loop_size(), settings_.anneal);
    a.block_forwards = step.depth + loop_size() + 1;
  }
  return a;
}

torch::Tensor IlfMethod::forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                 const ConditionInputs& inputs, const StepInfo&, StepAction& action) {
  if (!action.feedback) return runner.forward(x, t, inputs);
  if (!feedback_) throw Error("sampling method ilf needs a feedback module (ilf.feedback_weights)");
  const torch::Tensor t_post = torch::full({x.size(0)}, action.t_post, t.options());  // (B,)
  return inner_loop_forward(runner, *feedback_, x, t, t_post, inputs, settings_.strength);
}

}  // namespace ilf
