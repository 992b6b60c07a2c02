// The caching baseline the paper compares against (paper Sec. 2.2 and supplement), the method "cache":
// c cacheable blocks at a chosen location; on full steps (step % interval == 0) every block runs and
// each cached block's residual contribution (its attention + cross-attention + MLP residuals, i.e.
// output - input) is stored; on the other steps those blocks are skipped and the stored residual is
// added to their new input instead. interval = 1 is exactly the plain sampler. Extra work: one add per
// reused block.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "ilf/accel/method.h"
#include "ilf/accel/registry.h"

namespace ilf {

enum class CacheLocation { kFirst, kLast, kOuter, kInner, kAlternating };

CacheLocation parse_cache_location(const std::string& name);  // throws ilf::Error listing valid names
std::string to_string(CacheLocation location);

// The "cache" config section.
struct CacheOptions : MethodSettings {
  CacheOptions() : MethodSettings("cache") {}
  CacheLocation location = CacheLocation::kInner;
  int64_t num_blocks = 0;  // c
  int64_t interval = 1;    // recompute every `interval`-th step

  // The indices of the cached blocks, ascending: first c; last c; outer (c/2 first, the rest last);
  // inner (the middle c); alternating (evenly spaced, floor(i * N / c)).
  std::vector<int64_t> cached_blocks(int64_t depth) const;
  bool is_full_step(int64_t step) const { return step % interval == 0; }
  // Throws ilf::Error for impossible settings (c outside [0, depth], interval < 1).
  void validate(int64_t depth) const;
};

// Reads "cache" {location, num_blocks, interval}.
MethodSettingsPtr parse_cache_options(ConfigReader& reader);

class CacheMethod : public AccelerationMethod {
 public:
  explicit CacheMethod(const CacheOptions& options) : options_(options) {}

  std::string name() const override { return "cache"; }
  nlohmann::json settings() const override;
  void validate(int64_t depth, int64_t num_steps) const override { options_.validate(depth); }
  StepAction plan_step(const StepInfo& step) const override;
  void begin(int64_t num_steps) override { residuals_.clear(); }
  torch::Tensor forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs,
                        const StepInfo& step, StepAction& action) override;

 private:
  CacheOptions options_;
  std::map<int64_t, torch::Tensor> residuals_;  // block -> output - input from the last full step, (B, T, D)
};

}  // namespace ilf
