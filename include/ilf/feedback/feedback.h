// The FeedbackModule of Inner Loop Feedback: one extra block F of the backbone's own type, built
// with the same settings, plus per-block scales s_b..s_e (initialised to zero) for the inner loop
// [loop_begin, loop_end]. F's output is fed back, times s_j, into the input of each loop block.
#pragma once
#include <torch/torch.h>

#include <string>

#include "ilf/io/safetensors.h"
#include "ilf/models/backbone.h"

namespace ilf {

enum class FeedbackInit { kCopyLoopEnd, kRandom };

struct FeedbackOptions {
  int64_t loop_begin = 0;  // b
  int64_t loop_end = 0;    // e (inclusive)
  FeedbackInit init = FeedbackInit::kCopyLoopEnd;
};

class FeedbackModuleImpl : public torch::nn::Module {
 public:
  // Validates the loop against the backbone depth (0 <= b <= e < depth) and builds F.
  FeedbackModuleImpl(const Backbone& backbone, const FeedbackOptions& options);

  int64_t loop_begin() const { return options_.loop_begin; }
  int64_t loop_end() const { return options_.loop_end; }
  int64_t loop_size() const { return options_.loop_end - options_.loop_begin + 1; }  // m

  // The scale s_j for loop block j as a 0-d tensor (on the autograd path).
  torch::Tensor scale(int64_t j) const { return scales[j - options_.loop_begin]; }

  // Saves F and the scales with metadata naming the backbone (family, width, depth) and the loop.
  void save(const std::string& path) const;
  // Loads weights saved by save(); refuses files made for another backbone or loop.
  void load(const std::string& path);

  BlockPtr block;        // F: f_e (B, T, D) -> f_feed (B, T, D); runs through a BlockRunner (inner_loop.h)
  torch::Tensor scales;  // (m,) float32, zero at initialisation

 private:
  FeedbackOptions options_;
  std::string family_;
  int64_t hidden_size_ = 0;
  int64_t depth_ = 0;
};
TORCH_MODULE(FeedbackModule);

}  // namespace ilf
