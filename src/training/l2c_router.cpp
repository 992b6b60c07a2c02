// Learning-to-Cache router training (see include/ilf/training/l2c_router.h).
#include "ilf/training/l2c_router.h"

#include <algorithm>

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

// Applies `f` to every defined field of the condition sets, field by field: the n-ary concatenation
// and the row selection of the pool below.
template <typename F>
ConditionInputs l2c_map_conditions(const std::vector<ConditionInputs>& parts, F f) {
  ConditionInputs out;
  const std::vector<torch::Tensor ConditionInputs::*> fields = {&ConditionInputs::class_labels, &ConditionInputs::caption,
                                                                &ConditionInputs::caption_mask, &ConditionInputs::image_hw,
                                                                &ConditionInputs::aspect_ratio};
  for (auto field : fields) {
    std::vector<torch::Tensor> values;
    for (const ConditionInputs& p : parts)
      if ((p.*field).defined()) values.push_back(p.*field);
    if (!values.empty()) out.*field = f(values);
  }
  return out;
}

// What the loss needs at one cache step k, for every row (model input) of the pool.
struct L2CPoolStep {
  torch::Tensor x, t;      // (N, C, H, W), (N,)
  ConditionInputs inputs;  // N rows
  torch::Tensor cache;     // (depth, N, T, D): r_j^{k-1}, the plain trajectory's residuals of step k-1
  torch::Tensor teacher;   // (N, out_channels, H, W): the full model's output at step k
};

}  // namespace

torch::Tensor train_l2c_router(Backbone& backbone, Solver& solver, const SamplingOptions& sampling, Dataset& data,
                               const L2CRouterOptions& options, const torch::Device& device,
                               const std::function<void(const L2CRouterStep&)>& log) {
  if (options.iterations < 1 || options.batch < 1 || options.trajectories < 1)
    throw Error("l2c training: training.steps, training.batch_size and l2c.trajectories must be >= 1");
  const std::vector<int64_t> cache_steps = l2c_cache_steps(sampling.steps, options.full_every);
  if (cache_steps.empty())
    throw Error("l2c training: " + std::to_string(sampling.steps) + " steps with a full step every " +
                std::to_string(options.full_every) + " have no cache step to route (sampling.steps >= 2, l2c.full_every >= 2)");
  for (auto& p : backbone.parameters()) p.set_requires_grad(false);
  backbone.eval();
  const int64_t depth = backbone.depth(), num_cache = static_cast<int64_t>(cache_steps.size());

  // The pool, recorded without gradients in chunks of a few trajectories (the recorder holds every
  // step's residuals of a chunk; the pool only those of the steps before cache steps).
  std::vector<std::vector<torch::Tensor>> xs(cache_steps.size()), ts(cache_steps.size()), caches(cache_steps.size()),
      teachers(cache_steps.size());
  std::vector<std::vector<ConditionInputs>> conds(cache_steps.size());
  {
    torch::NoGradGuard no_grad;
    TrajectoryRecorder recorder;
    auto order_generator = at::detail::createCPUGenerator(options.seed);
    const std::vector<int64_t> shape = data.sample_shape();  // (C, H, W)
    constexpr int64_t kChunk = 16;
    for (int64_t first = 0, chunk = 0; first < options.trajectories; first += kChunk, ++chunk) {
      const int64_t b = std::min(kChunk, options.trajectories - first);
      const torch::Tensor picks = torch::randint(data.size(), {b}, order_generator, torch::kInt64);
      std::vector<int64_t> indices(picks.data_ptr<int64_t>(), picks.data_ptr<int64_t>() + b);
      const ConditionInputs cond = to_device(data.load(indices).condition, device);
      auto noise_generator = at::detail::createCPUGenerator(options.seed * 1000003 + static_cast<uint64_t>(chunk));
      const torch::Tensor x_T = torch::randn({b, shape[0], shape[1], shape[2]}, noise_generator).to(device);
      sample(backbone, recorder, solver, sampling, x_T, cond, backbone.null_condition(cond));
      for (size_t i = 0; i < cache_steps.size(); ++i) {
        const RecordedStep& now = recorder.steps[static_cast<size_t>(cache_steps[i])];
        const RecordedStep& before = recorder.steps[static_cast<size_t>(cache_steps[i] - 1)];
        xs[i].push_back(now.x);
        ts[i].push_back(now.t);
        conds[i].push_back(now.inputs);
        caches[i].push_back(torch::stack(before.residuals, 0));  // (depth, B', T, D)
        teachers[i].push_back(now.output);
      }
    }
  }
  std::vector<L2CPoolStep> pool(cache_steps.size());
  for (size_t i = 0; i < cache_steps.size(); ++i) {
    pool[i] = {torch::cat(xs[i], 0), torch::cat(ts[i], 0),
               l2c_map_conditions(conds[i], [](const std::vector<torch::Tensor>& v) { return torch::cat(v, 0); }),
               torch::cat(caches[i], 1), torch::cat(teachers[i], 0)};
    xs[i].clear();  // the pool holds its own copies: free the chunks
    ts[i].clear();
    conds[i].clear();
    caches[i].clear();
    teachers[i].clear();
  }
  const int64_t rows = pool[0].x.size(0);

  // The router: N(0, 1) logits as the paper's (a spread start: no ties by construction, gates near 0.5
  // where the reconstruction gradient is largest).
  auto init_generator = at::detail::createCPUGenerator(options.seed + 7);
  torch::Tensor theta = torch::randn({num_cache, depth}, init_generator).to(device);
  theta.set_requires_grad(true);
  torch::optim::AdamW optimizer({theta}, torch::optim::AdamWOptions(options.lr).weight_decay(0));
  auto batch_generator = at::detail::createCPUGenerator(options.seed + 13);
  // Which cache step each row of a minibatch belongs to: every step gets `batch` rows.
  const torch::Tensor step_of_row =
      torch::arange(num_cache, torch::kInt64).repeat_interleave(options.batch).to(device);  // (num_cache * batch,)

  for (int64_t it = 0; it < options.iterations; ++it) {
    // One forward for all cache steps at once (each row carries its own time, condition and gates):
    // larger matrix products than one forward per step, and the same loss.
    std::vector<torch::Tensor> x, t, cache, teacher;
    std::vector<ConditionInputs> cond;
    for (size_t i = 0; i < pool.size(); ++i) {
      const torch::Tensor pick = torch::randint(rows, {options.batch}, batch_generator, torch::kInt64).to(device);
      x.push_back(pool[i].x.index_select(0, pick));
      t.push_back(pool[i].t.index_select(0, pick));
      cond.push_back(
          l2c_map_conditions({pool[i].inputs}, [&](const std::vector<torch::Tensor>& v) { return v[0].index_select(0, pick); }));
      cache.push_back(pool[i].cache.index_select(1, pick));
      teacher.push_back(pool[i].teacher.index_select(0, pick));
    }
    const torch::Tensor x_all = torch::cat(x, 0), t_all = torch::cat(t, 0), cache_all = torch::cat(cache, 1),
                        teacher_all = torch::cat(teacher, 0);
    const ConditionInputs cond_all =
        l2c_map_conditions(cond, [](const std::vector<torch::Tensor>& v) { return torch::cat(v, 0); });

    const torch::Tensor gate = torch::sigmoid(theta);                  // (num_cache, depth)
    const torch::Tensor row_gate = gate.index_select(0, step_of_row);  // (rows, depth)
    torch::Tensor h = backbone.embed(x_all);                           // (rows, T, D)
    const Conditioning c = backbone.condition(t_all, cond_all);
    for (int64_t j = 0; j < depth; ++j) {
      const torch::Tensor fresh = backbone.block(j, h, c) - h;
      const torch::Tensor g = row_gate.select(1, j).view({-1, 1, 1});
      h = h + g * fresh + (1 - g) * cache_all[j];
    }
    const torch::Tensor out = backbone.head(h, c, x_all.size(2), x_all.size(3));
    // Sum over cache steps of each step's mean squared error: every step has `batch` rows.
    const torch::Tensor reconstruction = (out - teacher_all).pow(2).mean({1, 2, 3}).sum() / static_cast<double>(options.batch);
    const torch::Tensor loss = reconstruction + options.sparsity * gate.sum();
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    {
      torch::NoGradGuard no_grad;
      theta.clamp_(-options.clamp, options.clamp);  // keeps sigmoid's gradient alive: a unit can come back
    }
    if (log)
      log({it + 1, loss.item<double>(), reconstruction.item<double>() / static_cast<double>(num_cache),
           gate.mean().item<double>()});
  }
  return theta.detach().to(torch::kCPU);
}

void write_l2c_router(const std::string& path, const torch::Tensor& logits, int64_t steps, int64_t full_every,
                      std::map<std::string, std::string> metadata) {
  if (logits.dim() != 2 || logits.size(0) != static_cast<int64_t>(l2c_cache_steps(steps, full_every).size()))
    throw Error("write_l2c_router: the logits must have one row per cache step");
  metadata["format"] = "ilf.l2c_router";
  metadata["steps"] = std::to_string(steps);
  metadata["full_every"] = std::to_string(full_every);
  metadata["depth"] = std::to_string(logits.size(1));
  write_safetensors(path, {{"router_logits", logits.to(torch::kFloat32).contiguous()}}, metadata);
}

}  // namespace ilf
