// The discrete training noise schedule (DDPM betas over 1000 steps) as diffusers computes it, shared by
// the solvers and the trainer: betas, alphas_cumprod = cumprod(1 - beta) in float32, the forward
// noising x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, sigma(t) = sqrt((1 - abar_t) / abar_t), and the
// placement of a sampler's integer timesteps over the training timesteps (diffusers' timestep_spacing).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace ilf {

// How diffusers-style solvers place their integer timesteps (diffusers' `timestep_spacing`).
enum class TimestepSpacing { kLinspace, kLeading, kTrailing };
TimestepSpacing parse_timestep_spacing(const std::string& name);  // throws ilf::Error listing the names
std::string to_string(TimestepSpacing spacing);

// How many points a spacing lays out for N steps: DDIMScheduler one per step; DPMSolverMultistepScheduler
// N + 1, the last being the final boundary (timestep 0 for "linspace" and "leading"), which it drops.
// "trailing" lays out the same N timesteps either way.
enum class SpacingGrid { kOnePerStep, kWithFinalBoundary };

// The accepted betas ("beta_start", "beta_end" of the dpmpp2m and ddim solvers): 1e-8 to 0.5, around
// every published schedule (DiT 1e-4 .. 0.02, SD 0.00085 .. 0.012); and the smallest alphas_cumprod the
// table may reach (sigma up to 1e15; DiT's ends at 4e-5, sigma 157). Outside them the images are NaN.
constexpr double kMinBeta = 1e-8;
constexpr double kMaxBeta = 0.5;
constexpr double kMinAlphasCumprod = 1e-30;

struct NoiseScheduleOptions {
  std::string beta_schedule = "linear";  // "linear" or "scaled_linear" (linspace of sqrt(beta), squared)
  double beta_start = 1e-4;
  double beta_end = 0.02;
  int64_t num_train_timesteps = 1000;

  // Throws ilf::Error naming the field for an unknown schedule or impossible values.
  void validate() const;
};

struct NoiseSchedule {
  torch::Tensor betas;           // (T,) float32: float32 linspace as torch.linspace computes it
  torch::Tensor alphas_cumprod;  // (T,) float32: cumprod(1 - betas)

  static NoiseSchedule create(const NoiseScheduleOptions& options = {});

  int64_t num_train_timesteps() const { return alphas_cumprod.size(0); }

  // sigma = sqrt((1 - abar) / abar) for every training timestep: (T,) float32.
  torch::Tensor sigmas() const;
  // sigma of one integer training timestep t in [0, T).
  double sigma(int64_t t) const;

  // x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps for integer timesteps t (B,) (one per batch element).
  // x0 and eps: (B, ...) of the same shape; computed in x0's dtype on x0's device. Throws ilf::Error
  // for mismatched shapes or timesteps outside [0, T).
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& t) const;

  // diffusers' integer timesteps for `num_steps` steps over the training timesteps, decreasing, as numpy
  // computes them (float64 linspace / arange, round half to even); steps_offset is added to "leading"
  // ones. Throws ilf::Error starting with `solver` (e.g. "ddim") for num_steps < 1, more steps than
  // training timesteps, a timestep outside [0, T) or a repeated one.
  std::vector<int64_t> spaced_timesteps(const std::string& solver, TimestepSpacing spacing, SpacingGrid grid, int64_t num_steps,
                                        int64_t steps_offset = 0) const;
};

}  // namespace ilf
