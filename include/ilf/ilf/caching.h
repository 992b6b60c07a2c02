// The caching baseline the paper compares against (paper Sec. 2.2 and supplement): c cacheable
// blocks at a chosen location; on full steps (step % interval == 0) every block runs and each cached
// block's residual contribution (its attention + cross-attention + MLP residuals, i.e. output - input)
// is stored; on the other steps those blocks are skipped and the stored residual is added to their
// new input instead. interval = 1 is exactly the plain sampler.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "ilf/models/backbone.h"

namespace ilf {

enum class CacheLocation { kFirst, kLast, kOuter, kInner, kAlternating };

CacheLocation parse_cache_location(const std::string& name);  // throws ilf::Error listing valid names
std::string to_string(CacheLocation location);

struct CacheOptions {
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

class BlockCache {
 public:
  BlockCache(const CacheOptions& options, int64_t depth);

  // The backbone output for x at step `step`, reusing stored residuals on cached steps.
  // x (B, C, H, W), t (B,) -> (B, out_channels, H, W).
  torch::Tensor forward(Backbone& backbone, const torch::Tensor& x, const torch::Tensor& t,
                        const ConditionInputs& inputs, int64_t step, int64_t* block_forwards = nullptr);
  void reset() { residuals_.clear(); }

 private:
  CacheOptions options_;
  std::vector<bool> is_cached_;                // per block
  std::map<int64_t, torch::Tensor> residuals_;  // block -> output - input from the last full step, (B, T, D)
};

}  // namespace ilf
