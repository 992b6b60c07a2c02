// Learning-to-Cache router training (see include/ilf/training/l2c_router.h).
#include "ilf/training/l2c_router.h"

#include "ilf/accel/block_residuals.h"
#include "ilf/error.h"
#include "ilf/io/safetensors.h"

namespace ilf {

namespace {

// One step of a plain trajectory as the model saw it: its input (the guided batch when guidance runs),
// each block's residual and the output.
struct RecordedStep {
  torch::Tensor x, t;  // (B', C, H, W), (B',)
  ConditionInputs inputs;
  BlockResiduals residuals;  // depth x (B', T, D)
  torch::Tensor output;      // (B', out_channels, H, W)
};

// The plain sampler's step, recording what the router training needs.
class TrajectoryRecorder : public AccelerationMethod {
 public:
  std::vector<RecordedStep> steps;

  std::string name() const override { return "l2c_trajectory"; }
  nlohmann::json settings() const override { return nlohmann::json::object(); }
  StepAction plan_step(const StepInfo& step) const override {
    StepAction a;
    a.t_post = step.timestep();
    a.block_forwards = step.depth;
    return a;
  }
  void begin(int64_t) override { steps.clear(); }
  torch::Tensor forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& inputs,
                        const StepInfo&, StepAction&) override {
    RecordedStep s{x, t, inputs, {}, {}};
    s.output = forward_with_residuals(runner, x, t, inputs, nullptr, &s.residuals);
    steps.push_back(s);
    return s.output;
  }
};

ConditionInputs to_device(ConditionInputs c, const torch::Device& device) {
  for (torch::Tensor* t : {&c.class_labels, &c.caption, &c.caption_mask, &c.image_hw, &c.aspect_ratio})
    if (t->defined()) *t = t->to(device);
  return c;
}

}  // namespace

torch::Tensor train_l2c_router(Backbone& backbone, Solver& solver, const SamplingOptions& sampling, Dataset& data,
                               const L2CRouterOptions& options, const torch::Device& device,
                               const std::function<void(const L2CRouterStep&)>& log) {
  if (options.iterations < 1 || options.batch < 1)
    throw Error("l2c training: training.steps and training.batch_size must be >= 1");
  if (sampling.steps < 2) throw Error("l2c training: sampling.steps must be >= 2 (the first step always computes)");
  for (auto& p : backbone.parameters()) p.set_requires_grad(false);
  backbone.eval();
  const int64_t depth = backbone.depth(), n = sampling.steps;
  torch::Tensor theta = torch::full({n, depth}, options.initial_logit, torch::dtype(torch::kFloat32).device(device));
  theta.set_requires_grad(true);
  torch::optim::Adam optimizer({theta}, torch::optim::AdamOptions(options.lr));
  TrajectoryRecorder recorder;
  auto order_generator = at::detail::createCPUGenerator(options.seed);
  const std::vector<int64_t> shape = data.sample_shape();  // (C, H, W)

  for (int64_t it = 0; it < options.iterations; ++it) {
    // Conditions from the data, noise from the seed: a new batch of trajectories each iteration.
    const torch::Tensor picks = torch::randint(data.size(), {options.batch}, order_generator, torch::kInt64);
    std::vector<int64_t> indices(picks.data_ptr<int64_t>(), picks.data_ptr<int64_t>() + options.batch);
    const ConditionInputs cond = to_device(data.load(indices).condition, device);
    auto noise_generator = at::detail::createCPUGenerator(options.seed * 1000003 + static_cast<uint64_t>(it));
    const torch::Tensor x_T = torch::randn({options.batch, shape[0], shape[1], shape[2]}, noise_generator).to(device);
    sample(backbone, recorder, solver, sampling, x_T, cond, backbone.null_condition(cond));

    const torch::Tensor gate = torch::sigmoid(theta);  // (n, depth)
    torch::Tensor reconstruction = torch::zeros({}, theta.options());
    for (int64_t k = 1; k < n; ++k) {
      const RecordedStep& now = recorder.steps[static_cast<size_t>(k)];
      const RecordedStep& before = recorder.steps[static_cast<size_t>(k - 1)];
      torch::Tensor h = backbone.embed(now.x);  // (B', T, D)
      const Conditioning c = backbone.condition(now.t, now.inputs);
      for (int64_t j = 0; j < depth; ++j) {
        const torch::Tensor fresh = backbone.block(j, h, c) - h;
        const torch::Tensor g = gate[k][j];
        h = h + g * fresh + (1 - g) * before.residuals[static_cast<size_t>(j)];
      }
      const torch::Tensor out = backbone.head(h, c, now.x.size(2), now.x.size(3));
      reconstruction = reconstruction + torch::mse_loss(out, now.output);
    }
    reconstruction = reconstruction / static_cast<double>(n - 1);
    const torch::Tensor mean_gate = gate.slice(0, 1).mean();
    const torch::Tensor loss = reconstruction + options.sparsity * mean_gate;
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    if (log) log({it + 1, loss.item<double>(), reconstruction.item<double>(), mean_gate.item<double>()});
  }
  return theta.detach().to(torch::kCPU);
}

void write_l2c_router(const std::string& path, const torch::Tensor& logits, std::map<std::string, std::string> metadata) {
  metadata["format"] = "ilf.l2c_router";
  metadata["steps"] = std::to_string(logits.size(0));
  metadata["depth"] = std::to_string(logits.size(1));
  write_safetensors(path, {{"router_logits", logits.to(torch::kFloat32).contiguous()}}, metadata);
}

}  // namespace ilf
