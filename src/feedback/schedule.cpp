// t_post rules and the choice of feedback steps (see include/ilf/feedback/schedule.h).
#include "ilf/feedback/schedule.h"

#include <algorithm>

#include "ilf/error.h"

namespace ilf {

TPostRule parse_t_post_rule(const std::string& name) {
  if (name == "none") return TPostRule::kNone;
  if (name == "uniform") return TPostRule::kUniform;
  if (name == "rescale") return TPostRule::kRescale;
  if (name == "anneal") return TPostRule::kAnneal;
  throw Error("unknown t_post rule \"" + name + "\" (expected none, uniform, rescale or anneal)");
}

std::string to_string(TPostRule rule) {
  switch (rule) {
    case TPostRule::kNone: return "none";
    case TPostRule::kUniform: return "uniform";
    case TPostRule::kRescale: return "rescale";
    case TPostRule::kAnneal: return "anneal";
  }
  return "?";
}

double compute_t_post(TPostRule rule, const std::vector<double>& timesteps, int64_t k, int64_t depth, int64_t loop_size,
                      const AnnealParams& anneal) {
  const double t = timesteps.at(static_cast<size_t>(k));
  const double next = k + 1 < static_cast<int64_t>(timesteps.size()) ? timesteps[static_cast<size_t>(k + 1)] : 0.0;
  const double spacing = t - next;                                                         // i
  const double depth_ratio = static_cast<double>(depth) / static_cast<double>(loop_size);  // N / m
  double t_post = t;
  switch (rule) {
    case TPostRule::kNone: break;
    case TPostRule::kUniform: t_post = t - spacing / 2.0; break;
    case TPostRule::kRescale: t_post = t - spacing * depth_ratio; break;
    case TPostRule::kAnneal:
      t_post =
          k == 0 ? t - spacing * depth_ratio : t - std::max(anneal.scale * (spacing * depth_ratio * (t / 1000.0)), anneal.floor);
      break;
  }
  return std::clamp(t_post, 0.0, 999.0);
}

bool FeedbackSteps::uses_feedback(int64_t step, int64_t num_steps) const {
  switch (mode) {
    case Mode::kAll: return true;
    case Mode::kNone: return false;
    case Mode::kOuter: return step < count || step >= num_steps - count;
    case Mode::kFirst: return step < count;
    case Mode::kLast: return step >= num_steps - count;
    case Mode::kAlternating: return step % 2 == 0;
    case Mode::kList:
      // A negative entry counts from the end (-1 is the last step), so one list fits every step count.
      return std::any_of(steps.begin(), steps.end(), [&](int64_t s) { return (s < 0 ? num_steps + s : s) == step; });
  }
  return false;
}

void FeedbackSteps::validate(int64_t num_steps) const {
  if (count < 0) throw Error("feedback_steps.count must be >= 0 (got " + std::to_string(count) + ")");
  if (mode == Mode::kList) {
    for (int64_t s : steps)
      if (s < -num_steps || s >= num_steps)
        throw Error("feedback_steps.steps: step " + std::to_string(s) + " is outside [-" + std::to_string(num_steps) + ", " +
                    std::to_string(num_steps) + ") for " + std::to_string(num_steps) +
                    " sampling steps (a negative step counts from the end: -1 is the last)");
  }
}

FeedbackSteps::Mode parse_feedback_steps_mode(const std::string& name) {
  using M = FeedbackSteps::Mode;
  if (name == "all") return M::kAll;
  if (name == "outer") return M::kOuter;
  if (name == "first") return M::kFirst;
  if (name == "last") return M::kLast;
  if (name == "alternating") return M::kAlternating;
  if (name == "list") return M::kList;
  if (name == "none") return M::kNone;
  throw Error("unknown feedback_steps mode \"" + name + "\" (expected all, outer, first, last, alternating, list or none)");
}

std::string to_string(FeedbackSteps::Mode mode) {
  using M = FeedbackSteps::Mode;
  switch (mode) {
    case M::kAll: return "all";
    case M::kOuter: return "outer";
    case M::kFirst: return "first";
    case M::kLast: return "last";
    case M::kAlternating: return "alternating";
    case M::kList: return "list";
    case M::kNone: return "none";
  }
  return "?";
}

}  // namespace ilf
