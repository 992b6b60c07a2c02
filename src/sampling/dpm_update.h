// The DPM-Solver++ multistep update shared by diffusers' DPMSolverMultistepScheduler (dpm_solver.cpp)
// and the official PixArt DPM-Solver (pixart_dpm_solver.cpp): both reduce a step to the same six
// float32 coefficients, computed on the host in the references' order, and apply them here with tensor
// arithmetic only, so the update reads no host number (docs/design.md, "Solvers").
#pragma once
#include <torch/torch.h>

#include <vector>

#include "float32_math.h"
#include "ilf/sampling/solver.h"

namespace ilf::detail {

// Columns of a DPM-Solver++ step's coefficients.
enum DPMCoefficient : int64_t {
  kDPMSigmaT = 0,  // sigma_t at the step: x0 = (x - sigma_t eps) / alpha_t
  kDPMAlphaT,      // alpha_t at the step
  kDPMSigmaRatio,  // sigma_{t+1} / sigma_t
  kDPMC0,          // alpha_{t+1} (e^-h - 1)
  kDPMInvR0,       // 1 / r0 with r0 = h_0 / h (second order only; 0 on first-order steps)
  kDPMHalfC0,      // 0.5 * c0
  kDPMCoefficients
};

// Step k's coefficients (order 1 or 2) from the float32 quantities at the step boundaries: sigma_t,
// alpha_t, lambda = log alpha_t - log sigma_t, and e^-h - 1 per step (h = lambda_{k+1} - lambda_k).
inline std::vector<float> dpm_coefficients(int64_t k, int64_t order, const std::vector<float>& sigma_t,
                                           const std::vector<float>& alpha_t, const std::vector<float>& lambda,
                                           const std::vector<float>& exp_neg_h_minus_1) {
  std::vector<float> c(kDPMCoefficients, 0.0f);
  c[kDPMSigmaT] = sigma_t[k];
  c[kDPMAlphaT] = alpha_t[k];
  c[kDPMSigmaRatio] = sigma_t[k + 1] / sigma_t[k];
  c[kDPMC0] = alpha_t[k + 1] * exp_neg_h_minus_1[k];
  c[kDPMHalfC0] = 0.5f * c[kDPMC0];
  if (order == 2) {
    const float h = lambda[k + 1] - lambda[k];
    const float h_0 = lambda[k] - lambda[k - 1];
    c[kDPMInvR0] = 1.0f / (h_0 / h);
  }
  return c;
}

// The (N, kDPMCoefficients) float32 table of every step's coefficients, given each step's order.
inline torch::Tensor dpm_coefficient_table(const std::vector<int64_t>& orders, const std::vector<float>& sigma_t,
                                           const std::vector<float>& alpha_t, const std::vector<float>& lambda,
                                           const std::vector<float>& exp_neg_h_minus_1) {
  std::vector<float> rows;
  for (int64_t k = 0; k < static_cast<int64_t>(orders.size()); ++k) {
    const std::vector<float> row = dpm_coefficients(k, orders[k], sigma_t, alpha_t, lambda, exp_neg_h_minus_1);
    rows.insert(rows.end(), row.begin(), row.end());
  }
  return to_float_tensor(rows).view({static_cast<int64_t>(orders.size()), kDPMCoefficients});
}

// x0 = (x - sigma_t eps) / alpha_t; first order: x' = (sigma_{t+1} / sigma_t) x - c0 x0; second order
// (midpoint): also - 0.5 c0 D1 with D1 = (x0 - previous_x0) / r0. All in float32.
inline SolverUpdate dpm_update(const SolverStep& step, const torch::Tensor& model_output, const torch::Tensor& sample,
                               const torch::Tensor& previous_x0) {
  const torch::Tensor& c = step.coefficients;          // (kDPMCoefficients,)
  const torch::Tensor x = sample.to(torch::kFloat32);  // (B, C, H, W)
  const torch::Tensor eps = model_output.to(torch::kFloat32);
  SolverUpdate out;
  out.x0 = (x - eps * c[kDPMSigmaT]) / c[kDPMAlphaT];
  if (step.kind == 1) {
    out.sample = x * c[kDPMSigmaRatio] - out.x0 * c[kDPMC0];
  } else {
    const torch::Tensor d1 = (out.x0 - previous_x0) * c[kDPMInvR0];
    out.sample = x * c[kDPMSigmaRatio] - out.x0 * c[kDPMC0] - d1 * c[kDPMHalfC0];
  }
  return out;
}

}  // namespace ilf::detail
