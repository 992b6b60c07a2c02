// ILF combined with caching (see include/ilf/accel/ilf_cache.h).
#include "ilf/accel/ilf_cache.h"

#include "ilf/error.h"
#include "ilf/feedback/inner_loop.h"

namespace ilf {

MethodSettingsPtr parse_ilf_cache_settings(ConfigReader& r) {
  auto s = std::make_shared<IlfCacheSettings>();
  s->mode = r.choice("ilf_cache.mode", s->mode, {"alternate", "outside", "forecast"});
  return s;
}

IlfCacheMethod::IlfCacheMethod(const IlfCacheSettings& settings, const IlfSettings& ilf, const CacheOptions& cache,
                               const TaylorSeerSettings& forecast, int64_t loop_begin, int64_t loop_end,
                               FeedbackModuleImpl* feedback)
    : settings_(settings),
      ilf_(ilf),
      cache_(cache),
      forecast_(forecast),
      ilf_method_(ilf, loop_begin, loop_end, feedback),
      loop_begin_(loop_begin),
      loop_end_(loop_end),
      feedback_(feedback) {}

nlohmann::json IlfCacheMethod::settings() const {
  nlohmann::json s = {{"mode", settings_.mode}, {"ilf", ilf_method_.settings()}};
  if (settings_.mode == "alternate")
    s["cache"] = {{"location", to_string(cache_.location)}, {"num_blocks", cache_.num_blocks}, {"interval", cache_.interval}};
  if (settings_.mode == "forecast") s["taylorseer"] = {{"interval", forecast_.interval}, {"order", forecast_.order}};
  return s;
}

void IlfCacheMethod::validate(int64_t depth, int64_t num_steps) const {
  ilf_method_.validate(depth, num_steps);
  if (settings_.mode == "alternate") cache_.validate(depth);
}

int64_t IlfCacheMethod::plain_steps_before(int64_t k, int64_t num_steps) const {
  int64_t q = 0;
  for (int64_t j = 0; j < k; ++j) q += ilf_.feedback_steps.uses_feedback(j, num_steps) ? 0 : 1;
  return q;
}

StepAction IlfCacheMethod::plan_step(const StepInfo& step) const {
  StepAction a = ilf_method_.plan_step(step);  // feedback steps as ILF; the others full
  const int64_t q = plain_steps_before(step.index, step.num_steps);
  if (settings_.mode == "outside") {
    if (a.feedback && q > 0) {  // a full step without feedback came before: reuse the blocks outside the loop
      a.kind = "feedback, outside reused";
      for (int64_t j = 0; j < step.depth; ++j)
        if (j < loop_begin_ || j > loop_end_) a.reused_blocks.push_back(j);
      a.block_forwards = 2 * (loop_end_ - loop_begin_ + 1) + 1;
      a.extra_work = "one add per reused block";
    }
    return a;
  }
  if (settings_.mode == "forecast") {
    if (!a.feedback && q % forecast_.interval != 0) {
      a.kind = "forecast";
      for (int64_t j = 0; j < step.depth; ++j) a.reused_blocks.push_back(j);
      a.block_forwards = 0;
      a.extra_work = "order + 1 elementwise multiply-adds per block";
    }
    return a;
  }
  if (!a.feedback && q % cache_.interval != 0) {
    a.kind = "reuse";
    a.reused_blocks = cache_.cached_blocks(step.depth);
    a.block_forwards = step.depth - static_cast<int64_t>(a.reused_blocks.size());
    a.extra_work = "one add per reused block";
  }
  return a;
}

torch::Tensor IlfCacheMethod::feedback_reusing_outside(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                                       const torch::Tensor& t_post, const ConditionInputs& inputs) {
  if (!feedback_) throw Error("sampling method ilf_cache needs a feedback module (ilf.feedback_weights)");
  const int64_t depth = runner.backbone().depth(), b = loop_begin_, e = loop_end_;
  torch::Tensor h = runner.embed(x);  // (B, T, D)
  const Conditioning cond_t = runner.condition(t, inputs);
  for (int64_t j = 0; j < b; ++j) h = h + residuals_[static_cast<size_t>(j)];
  const torch::Tensor loop_input = h;
  for (int64_t j = b; j <= e; ++j) h = runner.block(j, h, cond_t);
  const torch::Tensor f_feed = feedback_at_strength(runner, *feedback_, h, cond_t, ilf_.strength);  // (B, T, D), one block
  const Conditioning cond_post = runner.condition(t_post, inputs);
  h = loop_input;
  for (int64_t j = b; j <= e; ++j) h = runner.block(j, h + feedback_->scale(j).to(h.dtype()) * f_feed, cond_post);
  for (int64_t j = e + 1; j < depth; ++j) h = h + residuals_[static_cast<size_t>(j)];
  return runner.head(h, cond_post, x.size(2), x.size(3));
}

torch::Tensor IlfCacheMethod::forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                      const ConditionInputs& inputs, const StepInfo& step, StepAction& action) {
  if (action.feedback) {
    if (action.reused_blocks.empty()) return ilf_method_.forward(runner, x, t, inputs, step, action);
    const torch::Tensor t_post = torch::full({x.size(0)}, action.t_post, t.options());  // (B,)
    return feedback_reusing_outside(runner, x, t, t_post, inputs);
  }
  if (settings_.mode == "forecast") {
    const auto depth = static_cast<size_t>(runner.backbone().depth());
    if (forecasters_.empty()) forecasters_.assign(depth, TaylorForecaster(forecast_.order));
    if (action.reused_blocks.empty()) {
      torch::Tensor out = forward_with_residuals(runner, x, t, inputs, nullptr, &residuals_);
      for (size_t j = 0; j < depth; ++j) forecasters_[j].update(step.index, residuals_[j]);
      return out;
    }
    if (forecasters_[0].empty())
      throw Error("ilf_cache: step " + std::to_string(step.index) + " forecasts before a full step without feedback");
    return forward_with_residuals(runner, x, t, inputs,
                                  [&](int64_t j) { return forecasters_[static_cast<size_t>(j)].predict(step.index); });
  }
  if (action.reused_blocks.empty()) return forward_with_residuals(runner, x, t, inputs, nullptr, &residuals_);
  if (residuals_.empty())
    throw Error("ilf_cache: step " + std::to_string(step.index) + " reuses blocks before a full step without feedback");
  std::vector<bool> reused(static_cast<size_t>(runner.backbone().depth()), false);
  for (int64_t j : action.reused_blocks) reused[static_cast<size_t>(j)] = true;
  return forward_with_residuals(runner, x, t, inputs, [&](int64_t j) -> torch::Tensor {
    return reused[static_cast<size_t>(j)] ? residuals_[static_cast<size_t>(j)] : torch::Tensor();
  });
}

}  // namespace ilf
