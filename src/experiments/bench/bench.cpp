// Benchmark models, methods, timing and the results table (see include/ilf/experiments/bench/bench.h).
#include "ilf/experiments/bench/bench.h"

#include <ATen/Context.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "ilf/experiments/bench/cuda_support.h"
#include "ilf/error.h"
#include "ilf/accel/registry.h"
#include "ilf/io/safetensors.h"
#include "ilf/models/dit.h"
#include "ilf/models/pixart.h"
#include "ilf/models/loader.h"
#include "ilf/models/weights.h"
#include "ilf/pipelines/forward_dump.h"
#include "ilf/pipelines/loading.h"

namespace ilf {

namespace {

// The paper's main text-to-image setting for 28-block models (inner loop 8..19, annealed t_post on the
// outer 2+2 steps; caching of the inner 18 blocks every 3rd step), scaled to smaller depths.
RunConfig preset_config(const std::string& preset, int64_t depth) {
  const Json json = {{"sampling", {{"guidance_scale", 4.5}, {"guided_channels", 0}}},
                     {"ilf",
                      {{"loop_begin", depth == 28 ? 8 : depth / 4},
                       {"loop_end", depth == 28 ? 19 : depth - 1 - depth / 4},
                       {"t_post", "anneal"},
                       {"feedback_steps", {{"mode", "outer"}, {"count", 2}}}}},
                     {"cache", {{"location", "inner"}, {"num_blocks", depth == 28 ? 18 : depth / 2}, {"interval", 3}}}};
  return parse_run_config(json, preset);
}

// Every parameter ~ N(0, 0.02^2) (zero-initialised gates would make blocks the identity).
void randomise_parameters(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) p.normal_(0.0, 0.02);
}

FeedbackModule make_copied_feedback(const Backbone& backbone, const RunConfig& config) {
  FeedbackOptions loop = config.ilf.require(config.source, "the benchmark's ILF rows");
  loop.init = FeedbackInit::kCopyLoopEnd;
  return FeedbackModule(backbone, loop);
}

}  // namespace

const std::vector<std::string>& bench_preset_names() {
  static const std::vector<std::string> names = {"dit-xl-2-256", "pixart-xl-2-512", "pixart-xl-2-1024", "dit-tiny",
                                                 "pixart-tiny",  "pixart-tiny-ms",  "pixart-sigma-tiny"};
  return names;
}

BenchModel make_preset_model(const std::string& preset, const torch::Device& device, torch::Dtype dtype, uint64_t seed) {
  BenchModel m;
  m.name = preset;
  torch::manual_seed(seed);
  const bool tiny =
      preset == "dit-tiny" || preset == "pixart-tiny" || preset == "pixart-tiny-ms" || preset == "pixart-sigma-tiny";
  if (preset == "dit-xl-2-256" || preset == "dit-tiny") {
    DiTConfig c = DiTConfig::preset("DiT-XL/2");
    c.input_size = 32;
    if (tiny) {  // 4 blocks of width 64 on 8x8 latents (16 tokens), 10 classes
      c.input_size = 8;
      c.hidden_size = 64;
      c.depth = 4;
      c.num_heads = 4;
      c.num_classes = 10;
    }
    m.backbone = std::make_shared<DiTImpl>(c);
    m.latent_shape = {c.in_channels, c.input_size, c.input_size};
  } else if (preset == "pixart-xl-2-512" || preset == "pixart-xl-2-1024" || preset == "pixart-tiny" ||
             preset == "pixart-tiny-ms" || preset == "pixart-sigma-tiny") {
    PixArtConfig c;  // XL/2: hidden 1152, depth 28, 16 heads, T5 width 4096, 120 tokens
    const bool multi_scale = preset == "pixart-xl-2-1024" || preset == "pixart-tiny-ms";
    c.variant = multi_scale ? "alpha_ms" : "alpha";
    c.input_size = preset == "pixart-xl-2-1024" ? 128 : 64;
    c.lewei_scale = multi_scale ? 2.0 : 1.0;
    if (tiny) {  // 4 blocks of width 96 on 8x8 latents, 8 caption tokens of width 32
      c.input_size = 8;
      c.hidden_size = 96;
      c.depth = 4;
      c.num_heads = 4;
      c.caption_channels = 32;
      c.model_max_length = 8;
    }
    if (preset == "pixart-sigma-tiny") {  // sigma: float32 pos-embed division at scale 2, q/k LayerNorm
      c.variant = "sigma";
      c.pe_interpolation = 2.0;
      c.qk_norm = true;
    }
    auto pixart = std::make_shared<PixArtImpl>(c);
    if (c.variant == "sigma") {  // Sigma's null caption is T5(""): one valid token (EOS); random features here
      auto generator = at::detail::createCPUGenerator(seed + 3);
      torch::Tensor mask = torch::zeros({c.model_max_length}, torch::kInt64);  // (L,)
      mask[0] = 1;
      pixart->set_null_caption(torch::randn({c.model_max_length, c.caption_channels}, generator), mask);
    }
    m.backbone = pixart;
    m.latent_shape = {c.in_channels, c.input_size, c.input_size};
    m.caption_length = c.model_max_length;
  } else {
    std::string names;
    for (const auto& n : bench_preset_names()) names += (names.empty() ? "" : ", ") + n;
    throw Error("unknown benchmark preset \"" + preset + "\" (expected one of " + names + ")");
  }
  m.config = preset_config(preset, m.backbone->depth());
  randomise_parameters(*m.backbone);
  m.feedback = make_copied_feedback(*m.backbone, m.config);
  move_backbone(*m.backbone, device, dtype);
  m.feedback->to(device, dtype);
  m.backbone->eval();
  m.feedback->eval();
  return m;
}

BenchModel load_config_model(const std::string& config_path, const std::vector<std::string>& overrides,
                             const torch::Device& device, torch::Dtype dtype) {
  BenchModel m;
  m.name = config_path;
  m.config = load_tool_config(config_path, overrides).config;
  m.backbone = load_backbone(m.config, device);
  if (!m.config.ilf.weights.empty()) {
    m.feedback = load_feedback_module(m.config, *m.backbone, device);
    m.feedback_is_random = false;
  } else {
    m.feedback = make_copied_feedback(*m.backbone, m.config);
  }
  move_backbone(*m.backbone, device, dtype);
  m.feedback->to(device, dtype);
  m.backbone->eval();
  m.feedback->eval();
  const Backbone& b = *m.backbone;
  m.latent_shape = {b.in_channels(), b.input_size(), b.input_size()};
  m.caption_length = b.caption_length();
  return m;
}

BenchInputs make_bench_inputs(const BenchModel& model, int64_t images, uint64_t seed) {
  if (images < 1) throw Error("benchmark inputs: the number of images must be >= 1");
  const torch::Device device = model.backbone->parameters().front().device();
  BenchInputs b;
  const Backbone& backbone = *model.backbone;
  if (backbone.condition_kind() == ConditionKind::kClassLabel) {
    b.inputs.class_labels = (torch::arange(images, torch::kInt64) % backbone.num_classes()).to(device);  // (B,)
  } else {
    auto generator = at::detail::createCPUGenerator(seed + 1);
    const int64_t length = model.caption_length;
    b.inputs.caption = torch::randn({images, length, backbone.caption_channels()}, generator).to(device);  // (B, L, C)
    torch::Tensor mask = torch::zeros({images, length}, torch::kInt64);                                    // (B, L)
    mask.slice(1, 0, std::max<int64_t>(1, length / 2)).fill_(1);  // a caption shorter than the maximum
    b.inputs.caption_mask = mask.to(device);
    if (backbone.uses_size_conditioning()) {
      const double h = 8.0 * static_cast<double>(model.latent_shape[1]), w = 8.0 * static_cast<double>(model.latent_shape[2]);
      b.inputs.image_hw = torch::tensor({h, w}, torch::kFloat32).repeat({images, 1}).to(device);  // (B, 2)
      b.inputs.aspect_ratio = torch::full({images, 1}, h / w, torch::kFloat32).to(device);        // (B, 1)
    }
  }
  b.null_inputs = model.backbone->null_condition(b.inputs);
  return b;
}

std::string BenchMethod::label() const { return method + "-" + std::to_string(steps); }

BenchMethod parse_bench_method(const std::string& name) {
  const size_t dash = name.rfind('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 >= name.size())
    throw Error("benchmark method \"" + name + "\": expected <method>-<steps>, e.g. baseline-20, cache-20, ilf-10");
  BenchMethod m;
  try {
    m.method = find_acceleration_method(name.substr(0, dash)).name;
  } catch (const Error& e) {
    throw Error("benchmark method \"" + name + "\": " + e.what());
  }
  const std::string steps = name.substr(dash + 1);
  if (steps.find_first_not_of("0123456789") != std::string::npos)
    throw Error("benchmark method \"" + name + "\": the steps \"" + steps + "\" must be an integer >= 1");
  try {
    m.steps = std::stoll(steps);
  } catch (const std::exception&) {
    throw Error("benchmark method \"" + name + "\": the steps \"" + steps + "\" must be an integer >= 1");
  }
  if (m.steps < 1) throw Error("benchmark method \"" + name + "\": steps must be >= 1");
  return m;
}

const std::vector<std::string>& default_bench_methods() {
  static const std::vector<std::string> names = {"baseline-20", "baseline-12", "cache-20", "ilf-10", "ilf-12"};
  return names;
}

SamplingOptions bench_sampling_options(const BenchModel& model, const BenchMethod& method) {
  SamplingOptions o = model.sampling();
  o.steps = method.steps;
  return o;
}

AccelerationMethodPtr make_bench_method(BenchModel& model, const BenchMethod& method) {
  RunConfig config = model.config;
  config.sampling.method = method.method;
  const bool uses_feedback = find_acceleration_method(method.method).uses_feedback_module;
  try {
    AccelerationMethodPtr m = make_acceleration_method(config, uses_feedback ? model.feedback.get() : nullptr);
    m->validate(model.backbone->depth(), method.steps);
    return m;
  } catch (const Error& e) {
    throw Error(model.name + ", " + method.label() + ": " + e.what());
  }
}

int64_t forward_batch(const SamplingOptions& options, int64_t images) {
  return options.guidance_scale != 1.0 ? 2 * images : images;
}

void fill_ratios(std::vector<BenchRow>& rows) {
  for (BenchRow& row : rows) {
    const auto base = std::find_if(rows.begin(), rows.end(), [&](const BenchRow& b) {
      return b.method == "baseline-20" && b.model == row.model && b.device == row.device && b.dtype == row.dtype &&
             b.batch == row.batch && b.cuda_graph == row.cuda_graph;
    });
    if (base == rows.end() || row.seconds_per_image <= 0 || row.block_forwards <= 0) continue;
    row.speedup = base->seconds_per_image / row.seconds_per_image;
    row.block_forward_ratio = static_cast<double>(base->block_forwards) / static_cast<double>(row.block_forwards);
    row.efficiency = row.speedup / row.block_forward_ratio;
  }
}

namespace {

std::string fixed_digits(double value, int digits) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", digits, value);
  return buffer;
}

// Seconds with three significant digits (CPU runs take seconds, GPU runs milliseconds).
std::string seconds(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.3g", value);
  return buffer;
}

}  // namespace

std::string format_bench_table(const std::vector<BenchRow>& rows) {
  std::ostringstream out;
  out << "| model | device | dtype | CUDA graph | batch | method | ms / forward | s / image | s / image + VAE | "
         "block forwards | speedup vs baseline-20 | block-forward ratio | speedup / ratio |\n";
  out << "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const BenchRow& r : rows) {
    out << "| " << r.model << " | " << r.device << " | " << r.dtype << " | " << (r.cuda_graph ? "yes" : "no") << " | " << r.batch
        << " | " << r.method << " | " << fixed_digits(r.ms_per_forward, 2) << " | " << seconds(r.seconds_per_image) << " | "
        << (r.seconds_per_image_with_vae < 0 ? std::string("-") : seconds(r.seconds_per_image_with_vae)) << " | "
        << r.block_forwards << " | " << (r.speedup > 0 ? fixed_digits(r.speedup, 2) + "x" : std::string("-")) << " | "
        << (r.block_forward_ratio > 0 ? fixed_digits(r.block_forward_ratio, 2) + "x" : std::string("-")) << " | "
        << (r.efficiency > 0 ? fixed_digits(r.efficiency, 2) : std::string("-")) << " |\n";
  }
  return out.str();
}

nlohmann::json bench_rows_to_json(const std::vector<BenchRow>& rows) {
  nlohmann::json out = nlohmann::json::array();
  for (const BenchRow& r : rows)
    out.push_back({{"model", r.model},
                   {"device", r.device},
                   {"dtype", r.dtype},
                   {"cuda_graph", r.cuda_graph},
                   {"batch", r.batch},
                   {"images", r.images},
                   {"method", r.method},
                   {"ms_per_forward", r.ms_per_forward},
                   {"seconds_per_image", r.seconds_per_image},
                   {"seconds_per_image_with_vae",
                    r.seconds_per_image_with_vae < 0 ? nlohmann::json() : nlohmann::json(r.seconds_per_image_with_vae)},
                   {"block_forwards", r.block_forwards},
                   {"planned_block_forwards", r.planned_block_forwards},
                   {"speedup", r.speedup},
                   {"block_forward_ratio", r.block_forward_ratio},
                   {"speedup_over_ratio", r.efficiency}});
  return out;
}

namespace {

// max|a - b| / max|b| in float64 on the CPU.
double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor x = a.detach().to(torch::kCPU, torch::kFloat64), y = b.detach().to(torch::kCPU, torch::kFloat64);
  const double denom = y.abs().max().item<double>(), num = (x - y).abs().max().item<double>();
  return denom == 0 ? num : num / denom;
}

double psnr(const torch::Tensor& a, const torch::Tensor& b, double peak) {
  const double mse = (a.to(torch::kCPU, torch::kFloat64) - b.to(torch::kCPU, torch::kFloat64)).pow(2).mean().item<double>();
  return mse == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(peak * peak / mse);
}

torch::Device model_device(const BenchModel& model) { return model.backbone->parameters().front().device(); }

std::string device_name(const torch::Device& device) { return device.is_cuda() ? "cuda" : device.str(); }

// Initial noise for `images` images, drawn on the CPU from `seed` (the same on every device and dtype).
torch::Tensor initial_noise(const BenchModel& model, int64_t images, uint64_t seed) {
  auto generator = at::detail::createCPUGenerator(seed);
  std::vector<int64_t> shape = {images};
  shape.insert(shape.end(), model.latent_shape.begin(), model.latent_shape.end());
  return torch::randn(shape, generator).to(model_device(model));  // (B, C, H, W) float32
}

// The forward inputs of one guided batch: x (B', C, H, W), t (B',) and the [cond; null] condition.
struct ForwardInputs {
  torch::Tensor x, t;
  ConditionInputs inputs;
};

ForwardInputs make_forward_inputs(const BenchModel& model, int64_t images, uint64_t seed) {
  const BenchInputs b = make_bench_inputs(model, images, seed);
  const bool guided = model.sampling().guidance_scale != 1.0;
  ForwardInputs f;
  f.inputs = guided ? concat_conditions(b.inputs, b.null_inputs) : b.inputs;
  const int64_t batch = forward_batch(model.sampling(), images);
  f.x = initial_noise(model, batch, seed + 7);
  auto generator = at::detail::createCPUGenerator(seed + 11);
  f.t = (torch::rand({batch}, generator) * 999.0).to(model_device(model));  // (B',) float32
  return f;
}

}  // namespace

BenchResult benchmark_model(BenchModel& model, const BenchSettings& settings) {
  torch::NoGradGuard no_grad;
  const torch::Device device = model_device(model);
  if (settings.cuda_graph && !device.is_cuda()) throw Error("--cuda-graph needs a CUDA device");
  const bool guided = model.sampling().guidance_scale != 1.0;
  if (settings.batch < 1 || (guided && settings.batch % 2 != 0))
    throw Error(model.name + ": batch " + std::to_string(settings.batch) + " must be " +
                (guided ? "even and >= 2 (guidance runs [conditional; null] in one forward)" : ">= 1"));
  const int64_t images = guided ? settings.batch / 2 : settings.batch;
  BenchResult result;

  // One plain backbone forward at the forward batch.
  const ForwardInputs f = make_forward_inputs(model, images, settings.seed);
  double forward_ms = 0;
  if (settings.cuda_graph) {
    CudaGraphRecorder graph;
    torch::Tensor out;
    graph.capture([&](const std::function<void()>&) { out = model.backbone->forward(f.x, f.t, f.inputs); });
    forward_ms = median_milliseconds([&] { graph.replay(); }, device, settings.warmup, settings.repeats);
  } else {
    forward_ms =
        median_milliseconds([&] { model.backbone->forward(f.x, f.t, f.inputs); }, device, settings.warmup, settings.repeats);
  }

  const BenchInputs inputs = make_bench_inputs(model, images, settings.seed);
  const torch::Tensor noise = initial_noise(model, images, settings.seed + 3);  // (B, C, H, W)
  for (const BenchMethod& method : settings.methods) {
    const SamplingOptions options = bench_sampling_options(model, method);
    const AccelerationMethodPtr accel = make_bench_method(model, method);
    SolverPtr solver = make_solver(model.config.sampling.solver);
    BenchRow row;
    row.model = model.name;
    row.device = device_name(device);
    row.dtype = settings.dtype_name;
    row.method = method.label();
    row.cuda_graph = settings.cuda_graph;
    row.batch = settings.batch;
    row.images = images;
    row.ms_per_forward = forward_ms;
    row.planned_block_forwards = plan_sampling(*accel, *solver, options.steps, model.backbone->depth()).total_block_forwards;
    SamplingResult sampled;
    double run_ms = 0;
    if (settings.cuda_graph) {
      // Eager reference for the same noise, then one graph per step, replayed in order.
      const torch::Tensor eager =
          sample(*model.backbone, *accel, *solver, options, noise, inputs.inputs, inputs.null_inputs).samples;
      const torch::Tensor static_noise = noise.clone();
      SamplingOptions captured = options;
      captured.check_finite_latents = false;  // no read-back inside a capture
      CudaGraphRecorder graphs;
      graphs.capture([&](const std::function<void()>& cut) {
        sampled = sample(*model.backbone, *accel, *solver, captured, static_noise, inputs.inputs, inputs.null_inputs,
                         [&](int64_t step, int64_t num_steps) {
                           if (step < num_steps) cut();
                         });
      });
      run_ms = median_milliseconds(
          [&] {
            static_noise.copy_(noise);
            graphs.replay();
          },
          device, settings.warmup, settings.repeats);
      result.graph_error = std::max(result.graph_error, relative_difference(sampled.samples, eager));
    } else {
      run_ms = median_milliseconds(
          [&] { sampled = sample(*model.backbone, *accel, *solver, options, noise, inputs.inputs, inputs.null_inputs); }, device,
          settings.warmup, settings.repeats);
    }
    row.block_forwards = sampled.block_forwards;
    row.seconds_per_image = run_ms / 1000.0 / static_cast<double>(images);
    if (settings.decode) {
      const torch::Tensor latents = sampled.samples.clone();
      const double decode_ms = median_milliseconds([&] { settings.decode(latents); }, device, settings.warmup, settings.repeats);
      row.seconds_per_image_with_vae = row.seconds_per_image + decode_ms / 1000.0 / static_cast<double>(images);
    }
    result.rows.push_back(row);
  }
  return result;
}

PrecisionComparison compare_precision(BenchModel& float32_model, BenchModel& low_precision_model, const BenchMethod& method,
                                      int64_t images, uint64_t seed, const DecodeFunction& decode) {
  torch::NoGradGuard no_grad;
  PrecisionComparison c;
  c.model = float32_model.name;
  c.dtype = c10::toString(low_precision_model.backbone->parameters().front().scalar_type());
  c.method = method.label();
  const ForwardInputs f32 = make_forward_inputs(float32_model, images, seed);
  const ForwardInputs low = make_forward_inputs(low_precision_model, images, seed);
  c.forward_error = relative_difference(low_precision_model.backbone->forward(low.x, low.t, low.inputs),
                                        float32_model.backbone->forward(f32.x, f32.t, f32.inputs));
  auto run = [&](BenchModel& model) {
    const SamplingOptions options = bench_sampling_options(model, method);
    const AccelerationMethodPtr accel = make_bench_method(model, method);
    SolverPtr solver = make_solver(model.config.sampling.solver);
    const BenchInputs in = make_bench_inputs(model, images, seed);
    return sample(*model.backbone, *accel, *solver, options, initial_noise(model, images, seed + 3), in.inputs, in.null_inputs)
        .samples.to(torch::kFloat32);
  };
  const torch::Tensor reference = run(float32_model), samples = run(low_precision_model);
  c.sample_error = relative_difference(samples, reference);
  const int64_t channels = float32_model.latent_shape[0];
  if (decode) {
    c.psnr_space = "image";
    c.sample_psnr = psnr(decode(samples).clamp(-1, 1), decode(reference).clamp(-1, 1), 2.0);
  } else if (channels == 1 || channels == 3) {  // pixel-space model
    c.psnr_space = "image";
    c.sample_psnr = psnr(samples.clamp(-1, 1), reference.clamp(-1, 1), 2.0);
  } else {
    c.psnr_space = "latent";
    c.sample_psnr = psnr(samples, reference, (reference.max() - reference.min()).item<double>());
  }
  return c;
}

nlohmann::json architecture_json(const Backbone& backbone) { return backbone.architecture_json(); }

void write_forward_dump(BenchModel& model, int64_t images, uint64_t seed, const std::string& path) {
  torch::NoGradGuard no_grad;
  const ForwardInputs f = make_forward_inputs(model, images, seed);
  TensorMap tensors;
  for (const auto& p : model.backbone->named_parameters(true)) tensors["weight." + p.key()] = p.value();
  for (const auto& b : model.backbone->named_buffers(true)) tensors["weight." + b.key()] = b.value();
  tensors["input.x"] = f.x;
  tensors["input.t"] = f.t;
  const std::pair<const char*, const torch::Tensor*> conditions[] = {{"input.class_labels", &f.inputs.class_labels},
                                                                     {"input.caption", &f.inputs.caption},
                                                                     {"input.caption_mask", &f.inputs.caption_mask},
                                                                     {"input.image_hw", &f.inputs.image_hw},
                                                                     {"input.aspect_ratio", &f.inputs.aspect_ratio}};
  for (const auto& [name, tensor] : conditions)
    if (tensor->defined()) tensors[name] = *tensor;
  tensors["output"] = model.backbone->forward(f.x, f.t, f.inputs);
  write_safetensors(path, tensors,
                    {{"architecture", architecture_json(*model.backbone).dump()},
                     {"dtype", c10::toString(model.backbone->parameters().front().scalar_type())},
                     {"model", model.name}});
}

double median(std::vector<double> values) {
  if (values.empty()) throw Error("median of no values");
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double median_milliseconds(const std::function<void()>& fn, const torch::Device& device, int64_t warmup, int64_t repeats) {
  if (repeats < 1) throw Error("timing: repeats must be >= 1");
  const bool cuda = device.is_cuda();
  for (int64_t i = 0; i < warmup; ++i) fn();
  if (cuda) torch::cuda::synchronize();
  std::vector<double> times;
  for (int64_t i = 0; i < repeats; ++i) {
    if (cuda && cuda_support_compiled()) {
      times.push_back(cuda_event_milliseconds(fn));
    } else {
      const auto start = std::chrono::steady_clock::now();
      fn();
      if (cuda) torch::cuda::synchronize();
      times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
  }
  return median(times);
}

double reference_parity(const std::string& weights_path, const std::string& io_path, const std::vector<std::string>& overrides,
                        const torch::Device& device) {
  const RunConfig config = parse_run_config(read_run_config_json("", overrides), "--set");
  BackbonePtr model = load_backbone(weights_path, config.model);
  move_backbone(*model, device, torch::kFloat32);
  model->eval();
  const TensorMap io = read_safetensors(io_path).tensors;
  const ForwardDumpInputs in = read_forward_dump_inputs(io, io_path, *model, device);
  torch::NoGradGuard no_grad;
  const torch::Tensor ours = model->forward(in.x, in.t, in.condition).to(torch::kCPU, torch::kFloat64);
  const torch::Tensor ref = require_tensor(io, "out", io_path).to(torch::kFloat64);
  if (ours.sizes() != ref.sizes()) throw Error(io_path + ": our output has another shape than \"out\"");
  return (ours - ref).abs().max().item<double>() / ref.abs().max().item<double>();
}

void set_tf32(bool enabled) {
  at::globalContext().setAllowTF32CuBLAS(enabled);
  at::globalContext().setAllowTF32CuDNN(enabled);
}

}  // namespace ilf
