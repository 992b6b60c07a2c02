// TeaCache and its calibration (see include/ilf/accel/teacache.h).
#include "ilf/accel/teacache.h"

#include <algorithm>
#include <cmath>

#include "ilf/error.h"

namespace ilf {

namespace {

// One step's stack: embed_and_modulate fills its input, conditioning and the first block's modulated
// input (what TeaCache measures); run_stack adds its output (the head's input).
struct Stack {
  torch::Tensor input, output;  // (B, T, D)
  Conditioning cond;
  torch::Tensor modulated;  // the first block's modulated input (B, T, D)
};

Stack embed_and_modulate(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs) {
  Stack s;
  s.input = runner.embed(x);
  s.cond = runner.condition(t, inputs);
  s.modulated = runner.backbone().block_module(0)->modulated_input(s.input, s.cond);
  return s;
}

void run_stack(BlockRunner& runner, Stack& s) {
  torch::Tensor h = s.input;
  for (int64_t j = 0; j < runner.backbone().depth(); ++j) h = runner.block(j, h, s.cond);
  s.output = h;
}

}  // namespace

double relative_l1(const torch::Tensor& a, const torch::Tensor& b) {
  const double denominator = b.abs().mean().item<double>();
  const double numerator = (a - b).abs().mean().item<double>();
  return denominator == 0 ? numerator : numerator / denominator;
}

double evaluate_polynomial(const std::vector<double>& coefficients, double d) {
  if (coefficients.empty()) return d;
  double p = 0;
  for (double c : coefficients) p = p * d + c;  // Horner, highest degree first
  return p;
}

MethodSettingsPtr parse_teacache_settings(ConfigReader& r) {
  auto s = std::make_shared<TeaCacheSettings>();
  s->threshold = r.get<double>("teacache.threshold", s->threshold);
  if (!(s->threshold >= 0) || !std::isfinite(s->threshold))
    throw r.invalid("teacache.threshold", "a number >= 0 (0 = never skip)");
  s->calibration = r.file_path("teacache.calibration");
  if (!s->calibration.empty()) {
    Json j;
    try {
      j = load_json_file(s->calibration);
    } catch (const Error& e) {
      throw r.invalid("teacache.calibration", std::string("a calibration file written by ilf_calibrate (") + e.what() + ")");
    }
    if (!j.is_object() || j.value("format", "") != "ilf.teacache" || !j.contains("coefficients") ||
        !j["coefficients"].is_array() || j["coefficients"].empty())
      throw Error(s->calibration +
                  ": not a TeaCache calibration file (expected {\"format\": \"ilf.teacache\", "
                  "\"coefficients\": [...]}, written by ilf_calibrate --method teacache)");
    for (const auto& c : j["coefficients"]) {
      if (!c.is_number() || !std::isfinite(c.get<double>()))
        throw Error(s->calibration + ": \"coefficients\" must be finite numbers");
      s->coefficients.push_back(c.get<double>());
    }
  }
  return s;
}

nlohmann::json TeaCacheMethod::settings() const {
  return {{"threshold", settings_.threshold}, {"calibration", settings_.calibration}, {"coefficients", settings_.coefficients}};
}

StepAction TeaCacheMethod::plan_step(const StepInfo& step) const {
  StepAction a;
  a.t_post = step.timestep();
  a.block_forwards = step.depth;
  a.extra_work = "the first block's modulation and a distance";
  if (step.index != 0 && step.index + 1 != step.num_steps && settings_.threshold > 0) {
    a.kind = "full or skip";
    a.decided_at_run_time = true;  // block_forwards: the most it can cost
  }
  return a;
}

void TeaCacheMethod::begin(int64_t) {
  previous_modulated_ = residual_ = torch::Tensor();
  accumulated_ = 0;
}

torch::Tensor TeaCacheMethod::forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                      const ConditionInputs& inputs, const StepInfo& step, StepAction& action) {
  Stack s = embed_and_modulate(runner, x, t, inputs);
  bool compute = !action.decided_at_run_time || !residual_.defined() || !previous_modulated_.defined();
  if (!compute) {
    accumulated_ += std::max(0.0, evaluate_polynomial(settings_.coefficients, relative_l1(s.modulated, previous_modulated_)));
    compute = accumulated_ >= settings_.threshold;
  }
  previous_modulated_ = s.modulated;
  torch::Tensor h;
  if (compute) {
    run_stack(runner, s);
    residual_ = s.output - s.input;
    accumulated_ = 0;
    h = s.output;
    action.kind = "full";
  } else {
    h = s.input + residual_;
    action.kind = "skip";
    action.block_forwards = 0;
    for (int64_t j = 0; j < runner.backbone().depth(); ++j) action.reused_blocks.push_back(j);
  }
  return runner.head(h, s.cond, x.size(2), x.size(3));
}

StepAction TeaCacheRecorder::plan_step(const StepInfo& step) const {
  StepAction a;
  a.t_post = step.timestep();
  a.block_forwards = step.depth;
  return a;
}

void TeaCacheRecorder::begin(int64_t) { previous_modulated_ = previous_residual_ = torch::Tensor(); }

torch::Tensor TeaCacheRecorder::forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                        const ConditionInputs& inputs, const StepInfo&, StepAction&) {
  Stack s = embed_and_modulate(runner, x, t, inputs);
  run_stack(runner, s);
  const torch::Tensor residual = s.output - s.input;
  if (previous_modulated_.defined()) {
    input_changes_.push_back(relative_l1(s.modulated, previous_modulated_));
    output_changes_.push_back(relative_l1(residual, previous_residual_));
  }
  previous_modulated_ = s.modulated;
  previous_residual_ = residual;
  return runner.head(s.output, s.cond, x.size(2), x.size(3));
}

std::vector<double> fit_polynomial(const std::vector<double>& x, const std::vector<double>& y, int64_t degree) {
  if (x.size() != y.size() || static_cast<int64_t>(x.size()) <= degree)
    throw Error("fit_polynomial: need more than " + std::to_string(degree) + " (x, y) pairs, got " + std::to_string(x.size()));
  const auto n = static_cast<int64_t>(x.size());
  const auto options = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor a = torch::empty({n, degree + 1}, options);  // Vandermonde, highest power first
  auto acc = a.accessor<double, 2>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p <= degree; ++p) acc[i][p] = std::pow(x[static_cast<size_t>(i)], static_cast<double>(degree - p));
  const torch::Tensor b = torch::tensor(y, options).unsqueeze(1);
  // Normal equations, scaled by the column norms for conditioning.
  const torch::Tensor scale = a.norm(2, {0}).clamp_min(1e-300);
  const torch::Tensor as = a / scale;
  const torch::Tensor solution = at::linalg_solve(as.t().mm(as), as.t().mm(b)).squeeze(1) / scale;
  std::vector<double> c(static_cast<size_t>(degree + 1));
  for (int64_t p = 0; p <= degree; ++p) c[static_cast<size_t>(p)] = solution[p].item<double>();
  return c;
}

}  // namespace ilf
