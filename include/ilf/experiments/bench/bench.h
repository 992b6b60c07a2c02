// Speed benchmarking of sampling settings (ilf_bench): the models to time (official-size presets with
// random weights, or a run config with its real weights), the methods (baseline / caching / ILF at a
// number of steps), repeated timing (median after warm-up; CUDA events on CUDA), and the table that
// relates measured speedups to block-forward ratios.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ilf/accel/method.h"
#include "ilf/config/run_config.h"
#include "ilf/feedback/feedback.h"
#include "ilf/models/backbone.h"
#include "ilf/sampling/sampler.h"
#include "ilf/sampling/solvers.h"

namespace ilf {

// Preset names: "dit-xl-2-256" (DiT-XL/2, 32x32x4 latents, 1000 classes), "pixart-xl-2-512"
// (PixArt-alpha XL/2, 64x64 latents), "pixart-xl-2-1024" (PixArt-alpha MS XL/2, 128x128 latents,
// lewei_scale 2), all with 120-token T5-sized captions (PixArt); and the test-size "dit-tiny",
// "pixart-tiny", "pixart-tiny-ms", "pixart-sigma-tiny" (4 blocks, 8x8 latents; the sigma one with
// pe_interpolation 2 and q/k LayerNorm). Guidance 4.5, DPM-Solver++(2M); 28-block
// models: ILF loop 8..19 with annealed t_post on the outer 2+2 steps, caching of the inner 18 blocks
// every 3rd step (4-block models: loop 1..2, the inner 2 blocks cached).
const std::vector<std::string>& bench_preset_names();

// One model under test, on its device and in its dtype.
struct BenchModel {
  std::string name;  // preset name or config path
  RunConfig config;  // guidance, solver, the inner loop and every method's settings (method / steps set per row)
  BackbonePtr backbone;
  FeedbackModule feedback{nullptr};   // for the methods that use one
  bool feedback_is_random = true;     // no trained feedback weights were given
  std::vector<int64_t> latent_shape;  // (C, H, W) of one image
  int64_t caption_length = 0;         // PixArt: tokens of the random caption

  const SamplingOptions& sampling() const { return config.sampling.options; }
};

// Builds a preset with random weights drawn from `seed` (every parameter ~ N(0, 0.02^2), so that no
// block is the identity), moved to `device` in `dtype`. Throws ilf::Error for unknown names.
BenchModel make_preset_model(const std::string& preset, const torch::Device& device, torch::Dtype dtype, uint64_t seed = 0);

// Loads the backbone ("weights" + "model"), the sampling / method / solver settings and, when
// "ilf.feedback_weights" is set, the trained feedback module of a run config (e.g.
// configs/fashion_mnist.json); without feedback weights the ILF rows use a feedback block copied
// from the loop end (zero scales).
BenchModel load_config_model(const std::string& config_path, const std::vector<std::string>& overrides,
                             const torch::Device& device, torch::Dtype dtype);

// The condition of `images` images (class labels cycling 0..; PixArt: a random caption of
// caption_length tokens, the first half valid, and the micro-conditions of the latent size) and the
// matching null condition, on the model's device.
struct BenchInputs {
  ConditionInputs inputs, null_inputs;
};
BenchInputs make_bench_inputs(const BenchModel& model, int64_t images, uint64_t seed = 0);

// A method row: "baseline-20", "baseline-12", "cache-20", "ilf-10", "ilf-12", ... (<method>-<steps>,
// any registered acceleration method).
struct BenchMethod {
  std::string method = "baseline";
  int64_t steps = 20;
  std::string label() const;
};
BenchMethod parse_bench_method(const std::string& name);  // throws ilf::Error for bad names / steps < 1
const std::vector<std::string>& default_bench_methods();

// The model's sampling settings with this step count.
SamplingOptions bench_sampling_options(const BenchModel& model, const BenchMethod& method);
// The row's acceleration method with the model's settings, validated against the depth and steps.
AccelerationMethodPtr make_bench_method(BenchModel& model, const BenchMethod& method);

// The backbone forward batch for `images` images: 2 * images with guidance, else images.
int64_t forward_batch(const SamplingOptions& options, int64_t images);

// One table row.
struct BenchRow {
  std::string model, device, dtype, method;
  bool cuda_graph = false;
  int64_t batch = 0;                       // backbone forward batch
  int64_t images = 0;                      // images per sampling run
  double ms_per_forward = 0;               // one plain backbone forward at `batch`
  double seconds_per_image = 0;            // sampling (backbone, guidance, solver) / images
  double seconds_per_image_with_vae = -1;  // < 0: no VAE given
  int64_t block_forwards = 0;              // per image (per sampling run), from the sampler's counter
  int64_t planned_block_forwards = 0;      // from plan_sampling
  double speedup = 0;                      // baseline-20 seconds / these seconds (same model, dtype, batch, graph)
  double block_forward_ratio = 0;          // baseline-20 block forwards / these
  double efficiency = 0;                   // speedup / block_forward_ratio
};

// Fills speedup, block_forward_ratio and efficiency against the "baseline-20" row of the same model,
// dtype, batch and graph setting (left 0 where there is none).
void fill_ratios(std::vector<BenchRow>& rows);
std::string format_bench_table(const std::vector<BenchRow>& rows);  // Markdown
nlohmann::json bench_rows_to_json(const std::vector<BenchRow>& rows);

// A VAE decoder for the "+ VAE" column: latents (B, C, H, W) float32 -> images. Empty = none.
using DecodeFunction = std::function<torch::Tensor(const torch::Tensor&)>;

struct BenchSettings {
  std::vector<BenchMethod> methods;
  int64_t batch = 2;        // backbone forward batch (even with guidance: batch / 2 images)
  bool cuda_graph = false;  // replay captured CUDA graphs instead of running eagerly
  int64_t warmup = 1, repeats = 3;
  uint64_t seed = 0;
  std::string dtype_name = "float32";
  DecodeFunction decode;
};

// Times one plain backbone forward at settings.batch and a sampling run of every method, returning
// one row per method (ratios not yet filled: see fill_ratios). With cuda_graph, the forward is one
// captured graph and each sampling run a captured sequence of one graph per step (CudaGraphRecorder);
// the replayed samples are checked against an eager run of the same noise (graph_error).
struct BenchResult {
  std::vector<BenchRow> rows;
  double graph_error = -1;  // max relative difference replay vs eager over the methods; < 0 without graphs
};
BenchResult benchmark_model(BenchModel& model, const BenchSettings& settings);

// Precision: the same weights and inputs in float32 and in a lower dtype (both models built the same
// way), compared on one backbone forward and on a whole same-seed sampling run.
struct PrecisionComparison {
  std::string model, dtype, method;
  double forward_error = 0;  // max|low - fp32| / max|fp32| of the backbone output
  double sample_error = 0;   // the same for the final samples
  double sample_psnr = 0;    // dB; images in [-1, 1] (peak 2) when decoded or pixel-space, else latents (peak = fp32 range)
  std::string psnr_space;    // "image" or "latent"
};
PrecisionComparison compare_precision(BenchModel& float32_model, BenchModel& low_precision_model, const BenchMethod& method,
                                      int64_t images, uint64_t seed, const DecodeFunction& decode = nullptr);

// The architecture settings of a DiT / PixArt backbone as JSON ({"family": ..., fields of DiTConfig or
// PixArtConfig}), as scripts/bench_pytorch_reference.py reads them.
nlohmann::json architecture_json(const Backbone& backbone);

// Writes one safetensors file for the PyTorch agreement check: "weight.<official key>" for every
// parameter and buffer, the forward inputs "input.x" (B, C, H, W), "input.t" (B,), "input.class_labels"
// or "input.caption" / "input.caption_mask" (/ "input.image_hw", "input.aspect_ratio"), and "output",
// our backbone forward; metadata "architecture" (architecture_json) and "dtype". B = forward batch of
// `images` images (conditional and null halves with guidance).
void write_forward_dump(BenchModel& model, int64_t images, uint64_t seed, const std::string& path);

// Timing: `warmup` untimed calls, then `repeats` timed calls; returns the median in milliseconds.
// On CUDA each call is timed with CUDA events on the current stream when this build has CUDA support
// (see cuda_support.h), else with a device synchronisation and the steady clock; on the CPU with the
// steady clock.
double median_milliseconds(const std::function<void()>& fn, const torch::Device& device, int64_t warmup, int64_t repeats);
double median(std::vector<double> values);

// One reference forward on `device` in float32 (TF32 as set_tf32 says): the official model's output "out"
// in `io_path` for the inputs there (DiT: x, t, y; PixArt: x, timestep, y, mask, data_info.*), with
// the architecture from the weights and `overrides` (e.g. model.num_heads=4). Returns
// max|ours - out| / max|out|.
double reference_parity(const std::string& weights_path, const std::string& io_path, const std::vector<std::string>& overrides,
                        const torch::Device& device);

// TF32 for float32 matmuls and convolutions on CUDA (cuBLAS and cuDNN); no effect on the CPU.
void set_tf32(bool enabled);

}  // namespace ilf
