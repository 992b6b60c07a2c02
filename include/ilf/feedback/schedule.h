// Feedback-aware inference scheduling (docs/design.md, "The method"): which sampling steps use feedback, and
// the post-feedback time t_post that the loop blocks, the rest of the backbone and the head are
// conditioned on. The solver itself keeps the sigmas of t.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ilf {

// t_post rules. `none`: t; `uniform`: t - i/2; `rescale` (paper Eq. 4): t - i * N/m;
// `anneal` (paper Eq. 5): rescale on the first step, later t - max(scale * i * N/m * t/1000, floor)
// with the paper's scale 1 and floor 10 by default (AnnealParams; the schedule search tunes them).
// i = t_k - t_{k+1} is the spacing to the next step (t_n = 0 after the last one).
enum class TPostRule { kNone, kUniform, kRescale, kAnneal };

// The parameters of `anneal` after the first step ("ilf.anneal_floor", "ilf.anneal_scale").
struct AnnealParams {
  double floor = 10.0;  // the least shift t - t_post, in model time
  double scale = 1.0;   // multiplies the annealed rescale shift i * N/m * t/1000
  bool is_default() const { return floor == 10.0 && scale == 1.0; }
};

TPostRule parse_t_post_rule(const std::string& name);  // throws ilf::Error listing the valid names
std::string to_string(TPostRule rule);

// t_post for step k of `timesteps` (model times, decreasing) with a backbone of `depth` blocks and an
// inner loop of `loop_size` blocks, clamped into the trained range [0, 999].
double compute_t_post(TPostRule rule, const std::vector<double>& timesteps, int64_t k, int64_t depth, int64_t loop_size,
                      const AnnealParams& anneal = {});

// Which steps run the inner loop with feedback (the others are plain backbone forwards).
struct FeedbackSteps {
  enum class Mode { kAll, kOuter, kFirst, kLast, kAlternating, kList, kNone };
  Mode mode = Mode::kAll;
  int64_t count = 2;           // outer: first `count` and last `count`; first/last: `count` steps
  std::vector<int64_t> steps;  // kList: explicit step indices; negative ones count from the end (-1: last)

  bool uses_feedback(int64_t step, int64_t num_steps) const;
  // Throws ilf::Error for impossible settings (count < 0, list entries outside [-num_steps, num_steps)).
  void validate(int64_t num_steps) const;
};

FeedbackSteps::Mode parse_feedback_steps_mode(const std::string& name);
std::string to_string(FeedbackSteps::Mode mode);

}  // namespace ilf
