// TeaCache (Liu et al. 2025), the method "teacache": a whole step's block stack is skipped, and its
// last residual (the stack's output minus its input) reused, while the accumulated change of the
// timestep-modulated input stays small. At each step the first block's modulated input m_k (one
// LayerNorm and one modulation: TransformerBlock::modulated_input) is compared with the previous
// step's: d_k = mean|m_k - m_{k-1}| / mean|m_{k-1}|; a per-model polynomial p maps that to the expected
// change of the output, and acc += max(p(d_k), 0). While acc < threshold the step reuses the residual
// (0 block forwards); otherwise it computes the stack, stores its residual and resets acc. The first and
// the last steps always compute. threshold 0 is exactly the plain sampler. The decision is made while
// sampling, so the plan shows the most a step can cost and the result what it did.
//
// The polynomial is fitted per model by `ilf_calibrate --method teacache` (pipelines/calibration.h),
// which samples with the plain method, records (d_k, e_k) pairs with e_k the relative L1 change of the
// stack's residual between consecutive steps, and fits e ~ p(d) by least squares; the coefficients go to
// a small JSON file next to the weights ("teacache.calibration"). Without one, p(d) = d.
#pragma once
#include <string>
#include <vector>

#include "ilf/accel/method.h"
#include "ilf/accel/registry.h"

namespace ilf {

// The "teacache" config section.
struct TeaCacheSettings : MethodSettings {
  TeaCacheSettings() : MethodSettings("teacache") {}
  double threshold = 0.1;
  std::string calibration;           // a calibration file ("" = p(d) = d)
  std::vector<double> coefficients;  // from the file: highest degree first (numpy.polyval order)
};

// Reads "teacache" {threshold, calibration} and the calibration file's coefficients.
MethodSettingsPtr parse_teacache_settings(ConfigReader& reader);

// p(d) for coefficients highest degree first; no coefficients: d.
double evaluate_polynomial(const std::vector<double>& coefficients, double d);

class TeaCacheMethod : public AccelerationMethod {
 public:
  explicit TeaCacheMethod(const TeaCacheSettings& settings) : settings_(settings) {}

  std::string name() const override { return "teacache"; }
  nlohmann::json settings() const override;
  StepAction plan_step(const StepInfo& step) const override;
  void begin(int64_t num_steps) override;
  torch::Tensor forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs,
                        const StepInfo& step, StepAction& action) override;

 private:
  TeaCacheSettings settings_;
  torch::Tensor previous_modulated_;  // m_{k-1}
  torch::Tensor residual_;            // the stack's output - input at the last computed step
  double accumulated_ = 0;
};

// --- calibration --------------------------------------------------------------------------------

// The plain sampler's step that also records, per step, the relative L1 change of the first block's
// modulated input and of the stack's residual against the previous step (from the second step on).
class TeaCacheRecorder : public AccelerationMethod {
 public:
  std::string name() const override { return "teacache_recorder"; }
  nlohmann::json settings() const override { return nlohmann::json::object(); }
  StepAction plan_step(const StepInfo& step) const override;
  void begin(int64_t num_steps) override;
  torch::Tensor forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs,
                        const StepInfo& step, StepAction& action) override;

  const std::vector<double>& input_changes() const { return input_changes_; }    // d_k
  const std::vector<double>& output_changes() const { return output_changes_; }  // e_k

 private:
  torch::Tensor previous_modulated_, previous_residual_;
  std::vector<double> input_changes_, output_changes_;
};

// Least-squares polynomial fit y ~ p(x) of `degree` (coefficients highest degree first), in double.
std::vector<double> fit_polynomial(const std::vector<double>& x, const std::vector<double>& y, int64_t degree);

// Relative L1 distance mean|a - b| / mean|b|.
double relative_l1(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace ilf
