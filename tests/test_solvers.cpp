// Solver parity and behaviour: DPM-Solver++(2M), DDIM and the official PixArt DPM-Solver against the
// reference trajectories (tests/data/{dpmpp2m_N*,ddim_N20,pixart_dpms_N20}.safetensors, produced by
// diffusers and the official PixArt code with the README's fake model), plus properties for step
// counts and options the references do not cover, the noise schedule and the factory/config reader.
// One file of about 670 lines on purpose: the three solvers share one table-driven base
// (sampling/tabulated_solver.h), and their parity, step-table and schedule tests share the reference
// loaders and trajectory helpers at its top.
#include <gtest/gtest.h>
#include <torch/version.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>

#include "ilf/error.h"
#include "ilf/io/config.h"
#include "ilf/io/safetensors.h"
#include "ilf/sampling/ddim.h"
#include "ilf/sampling/dpm_solver.h"
#include "ilf/sampling/noise_schedule.h"
#include "ilf/sampling/pixart_dpm_solver.h"
#include "ilf/config/run_config.h"
#include "ilf/sampling/solvers.h"
#include "test_helpers.h"

using namespace ilf;

namespace {

constexpr double kSolverTolerance = 1e-5;  // max|ours - ref| / max|ref| per tensor

// The references' fake model: eps(x, t) = tanh(x) * a(t) + b(t) with a(t) = t / 1000 and
// b(t) = 0.05 cos(t / 37) evaluated in float64 and rounded to float32; the rest in float32.
torch::Tensor fake_eps(const torch::Tensor& x, double t) {
  const float a = static_cast<float>(t / 1000.0);
  const float b = static_cast<float>(0.05 * std::cos(t / 37.0));
  return torch::tanh(x) * a + b;
}

TensorMap load(const std::string& name) { return read_safetensors(test::data_path(name)).tensors; }

const torch::Tensor& ref(const TensorMap& tensors, const std::string& key) { return require_tensor(tensors, key, "reference"); }

// The references were written by diffusers / the official PixArt code on torch 1.13, and the schedules
// are built with the same operations. torch 2.x rounds float32 torch.linspace differently (measured
// with 2.11: 209 of the 1000 linear betas differ by one ulp, alphas_cumprod by <= 2.3e-7 relative), so
// against 2.x (what diffusers on 2.x computes too) the schedule tables agree to float32 rounding, not
// bit for bit; on 1.13 they stay bit-exact.
#if TORCH_VERSION_MAJOR >= 2
constexpr double kTableTolerance = 1e-6;  // relative
#else
constexpr double kTableTolerance = 0;
#endif

bool same_table(const torch::Tensor& ours, const torch::Tensor& reference) {
  if (kTableTolerance == 0) return torch::equal(ours, reference);
  return ours.sizes() == reference.sizes() &&
         torch::allclose(ours.to(torch::kFloat64), reference.to(torch::kFloat64), kTableTolerance, 0);
}

template <typename T, typename U>
void expect_same_values(const std::vector<T>& ours, const std::vector<U>& reference) {
  ASSERT_EQ(ours.size(), reference.size());
  for (size_t i = 0; i < ours.size(); ++i) {
    const double a = static_cast<double>(ours[i]), b = static_cast<double>(reference[i]);
    if (kTableTolerance == 0) {
      EXPECT_EQ(a, b) << "entry " << i;
    } else {
      EXPECT_NEAR(a, b, kTableTolerance * std::abs(b)) << "entry " << i;
    }
  }
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Largest relative error seen for each compared quantity of one trajectory.
struct ErrorLog {
  double chained_x = 0, chained_x0 = 0, chained_eps = 0, forced_x = 0, forced_eps = 0;
  void print(const std::string& name) const {
    std::printf("[ measured ] %s: chained x %.3g, x0 %.3g, eps %.3g | from reference x.k/eps.k: x %.3g, eps %.3g\n", name.c_str(),
                chained_x, chained_x0, chained_eps, forced_x, forced_eps);
  }
};

// Runs `solver` with the fake model from the reference x.0 (chaining its own outputs) and step by step
// from the reference x.k / eps.k, comparing every x.{k+1}, eps.k and (if x0_key is set) the x0 prediction.
template <typename SolverT>
ErrorLog check_trajectory(SolverT& solver, const TensorMap& r, int64_t n, const std::string& x0_key,
                          const std::string& x_in_key = "x") {
  ErrorLog log;
  solver.set_timesteps(n);
  const std::vector<double> times = solver.timesteps();
  torch::Tensor x = ref(r, "x.0");
  for (int64_t k = 0; k < n; ++k) {
    SCOPED_TRACE("chained step " + std::to_string(k));
    const std::string ks = std::to_string(k);
    log.chained_x = std::max(log.chained_x, test::relative_error(x, ref(r, x_in_key + "." + ks)));
    const torch::Tensor eps = fake_eps(x, times[k]);
    log.chained_eps = std::max(log.chained_eps, test::relative_error(eps, ref(r, "eps." + ks)));
    x = solver.step(eps, x);
    log.chained_x = std::max(log.chained_x, test::relative_error(x, ref(r, "x." + std::to_string(k + 1))));
    if (!x0_key.empty())
      log.chained_x0 = std::max(log.chained_x0, test::relative_error(solver.x0_prediction(), ref(r, x0_key + "." + ks)));
  }
  solver.set_timesteps(n);
  for (int64_t k = 0; k < n; ++k) {
    const std::string ks = std::to_string(k);
    const torch::Tensor& x_k = ref(r, "x." + ks);
    const torch::Tensor& eps_k = ref(r, "eps." + ks);
    log.forced_eps = std::max(log.forced_eps, test::relative_error(fake_eps(ref(r, x_in_key + "." + ks), times[k]), eps_k));
    const torch::Tensor next = solver.step(eps_k, x_k);
    log.forced_x = std::max(log.forced_x, test::relative_error(next, ref(r, "x." + std::to_string(k + 1))));
  }
  EXPECT_LT(log.chained_x, kSolverTolerance);
  EXPECT_LT(log.chained_x0, kSolverTolerance);
  EXPECT_LT(log.chained_eps, kSolverTolerance);
  EXPECT_LT(log.forced_x, kSolverTolerance);
  EXPECT_LT(log.forced_eps, kSolverTolerance);
  return log;
}

std::vector<int64_t> int64_values(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

std::vector<float> float_values(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kFloat32).contiguous();
  return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}

// Runs a whole trajectory with the fake model; checks the timesteps/sigmas layout and finiteness.
void run_and_check_layout(Solver& solver, int64_t n, bool integer_times) {
  SCOPED_TRACE(solver.name() + " with " + std::to_string(n) + " steps");
  ASSERT_NO_THROW(solver.set_timesteps(n));
  EXPECT_EQ(solver.num_steps(), n);
  const std::vector<double> times = solver.timesteps();
  const std::vector<double> sigmas = solver.sigmas();
  ASSERT_EQ(static_cast<int64_t>(times.size()), n);
  ASSERT_EQ(static_cast<int64_t>(sigmas.size()), n + 1);
  for (int64_t k = 0; k < n; ++k) {
    EXPECT_GE(times[k], 0.0);
    EXPECT_LT(times[k], 1000.0);
    if (integer_times) {
      EXPECT_EQ(times[k], std::round(times[k]));
    }
    if (k > 0) {
      EXPECT_LT(times[k], times[k - 1]) << "timesteps must decrease";
    }
    // The last DDIM step of "linspace" goes from timestep 0 to abar_0 (set_alpha_to_one false): equal sigmas.
    if (k + 1 < n) {
      EXPECT_GT(sigmas[k], sigmas[k + 1]) << "sigmas must decrease";
    } else {
      EXPECT_GE(sigmas[k], sigmas[k + 1]);
    }
  }
  EXPECT_GE(sigmas[n], 0.0);
  torch::Tensor x = torch::randn({2, 4, 8, 8}, at::detail::createCPUGenerator(7));
  for (int64_t k = 0; k < n; ++k) {
    EXPECT_EQ(solver.step_index(), k);
    x = solver.step(fake_eps(x, times[k]), x);
  }
  EXPECT_TRUE(torch::isfinite(x).all().item<bool>());
  EXPECT_THROW(solver.step(x, x), Error) << "stepping past the last step must fail";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Noise schedule

TEST(NoiseSchedule, LinearAlphasCumprodEqualsReference) {
  const NoiseSchedule schedule = NoiseSchedule::create();
  EXPECT_EQ(schedule.num_train_timesteps(), 1000);
  EXPECT_TRUE(same_table(schedule.alphas_cumprod, ref(load("dpmpp2m_N20.safetensors"), "alphas_cumprod")));
  EXPECT_TRUE(same_table(schedule.alphas_cumprod, ref(load("ddim_N20.safetensors"), "alphas_cumprod")));
}

TEST(NoiseSchedule, ScaledLinearIsASquaredLinspace) {
  NoiseScheduleOptions options;
  options.beta_schedule = "scaled_linear";
  options.beta_start = 0.00085;
  options.beta_end = 0.012;
  const NoiseSchedule schedule = NoiseSchedule::create(options);
  const torch::Tensor root = schedule.betas.to(torch::kFloat64).sqrt();
  EXPECT_NEAR(root[0].item<double>(), std::sqrt(0.00085), 1e-7);
  EXPECT_NEAR(root[-1].item<double>(), std::sqrt(0.012), 1e-7);
  const torch::Tensor gaps = root.slice(0, 1) - root.slice(0, 0, -1);
  EXPECT_LT((gaps - gaps.mean()).abs().max().item<double>(), 1e-8);
  EXPECT_TRUE(torch::allclose(schedule.alphas_cumprod.to(torch::kFloat64),
                              torch::cumprod(1.0 - schedule.betas.to(torch::kFloat64), 0), 1e-5, 0));
}

TEST(NoiseSchedule, AddNoiseMatchesSigmaParametrisation) {
  const NoiseSchedule schedule = NoiseSchedule::create();
  const torch::Tensor x0 = torch::randn({3, 4, 8, 8});
  const torch::Tensor eps = torch::randn({3, 4, 8, 8});
  const torch::Tensor t = torch::tensor({0, 500, 999}, torch::kLong);
  const torch::Tensor x_t = schedule.add_noise(x0, eps, t);
  for (int64_t b = 0; b < 3; ++b) {
    // x_t / sqrt(abar) = x0 + sigma(t) eps
    const double abar = schedule.alphas_cumprod[t[b].item<int64_t>()].item<double>();
    const torch::Tensor lhs = x_t[b] / std::sqrt(abar);
    const torch::Tensor rhs = x0[b] + schedule.sigma(t[b].item<int64_t>()) * eps[b];
    EXPECT_LT(test::relative_error(lhs, rhs), 1e-5) << "batch element " << b;
  }
  EXPECT_NEAR(schedule.sigma(999), schedule.sigmas()[999].item<double>(), 0);
}

TEST(NoiseSchedule, RejectsBadTimestepsAndOptions) {
  const NoiseSchedule schedule = NoiseSchedule::create();
  const torch::Tensor x0 = torch::zeros({2, 4});
  EXPECT_NE(message_of([&] {
              schedule.add_noise(x0, x0, torch::tensor({0, 1000}, torch::kLong));
            }).find("[0, 1000)"),
            std::string::npos);
  EXPECT_THROW(schedule.add_noise(x0, x0, torch::tensor({0}, torch::kLong)), Error);
  EXPECT_THROW(schedule.add_noise(x0, x0, torch::tensor({0.5, 1.0})), Error);
  EXPECT_THROW(schedule.add_noise(x0, torch::zeros({2, 5}), torch::tensor({0, 1}, torch::kLong)), Error);
  EXPECT_THROW(schedule.sigma(-1), Error);
  NoiseScheduleOptions options;
  options.beta_schedule = "cosine";
  EXPECT_NE(message_of([&] { NoiseSchedule::create(options); }).find("beta_schedule"), std::string::npos);
}

TEST(NoiseSchedule, SpacedTimestepsFollowDiffusersPlacementPerGrid) {
  // Expected values: numpy on the formulas of diffusers' DDIMScheduler (one point per step) and
  // DPMSolverMultistepScheduler (N + 1 points, the last dropped), worked out by hand for N = 10, T = 1000.
  const NoiseSchedule schedule = NoiseSchedule::create();
  using V = std::vector<int64_t>;
  auto spaced = [&](TimestepSpacing spacing, SpacingGrid grid, int64_t offset = 0) {
    return schedule.spaced_timesteps("test", spacing, grid, 10, offset);
  };
  // round(linspace(0, 999, 10))[::-1]: step 111.
  EXPECT_EQ(spaced(TimestepSpacing::kLinspace, SpacingGrid::kOnePerStep), (V{999, 888, 777, 666, 555, 444, 333, 222, 111, 0}));
  // round(linspace(0, 999, 11))[::-1][:-1]: step 99.9, 499.5... rounds to 500.
  EXPECT_EQ(spaced(TimestepSpacing::kLinspace, SpacingGrid::kWithFinalBoundary),
            (V{999, 899, 799, 699, 599, 500, 400, 300, 200, 100}));
  // arange(10) * (1000 // 10) reversed, + 1; arange(11) * (1000 // 11) reversed without the 0.
  EXPECT_EQ(spaced(TimestepSpacing::kLeading, SpacingGrid::kOnePerStep, 1), (V{901, 801, 701, 601, 501, 401, 301, 201, 101, 1}));
  EXPECT_EQ(spaced(TimestepSpacing::kLeading, SpacingGrid::kWithFinalBoundary),
            (V{900, 810, 720, 630, 540, 450, 360, 270, 180, 90}));
  // round(arange(1000, 0, -100)) - 1, the same for both grids.
  const V trailing{999, 899, 799, 699, 599, 499, 399, 299, 199, 99};
  EXPECT_EQ(spaced(TimestepSpacing::kTrailing, SpacingGrid::kOnePerStep), trailing);
  EXPECT_EQ(spaced(TimestepSpacing::kTrailing, SpacingGrid::kWithFinalBoundary), trailing);
  // Errors start with the solver's name.
  EXPECT_EQ(message_of([&] {
              schedule.spaced_timesteps("dpmpp2m", TimestepSpacing::kLinspace, SpacingGrid::kOnePerStep, 0);
            }).rfind("dpmpp2m: the number of steps must be >= 1", 0),
            0u);
  EXPECT_NE(message_of([&] {
              schedule.spaced_timesteps("ddim", TimestepSpacing::kLinspace, SpacingGrid::kWithFinalBoundary, 1000);
            }).find("ddim: 1000 steps with timestep_spacing linspace give repeated timesteps"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// DPM-Solver++(2M) against diffusers' DPMSolverMultistepScheduler

class DPMSolverReference : public ::testing::TestWithParam<int64_t> {};

TEST_P(DPMSolverReference, TimestepsSigmasAndTrajectoryMatch) {
  const int64_t n = GetParam();
  const std::string name = "dpmpp2m_N" + std::to_string(n);
  const TensorMap r = load(name + ".safetensors");
  DPMSolverMultistep solver;
  solver.set_timesteps(n);
  EXPECT_EQ(solver.integer_timesteps(), int64_values(ref(r, "timesteps")));
  expect_same_values(solver.float_sigmas(), float_values(ref(r, "sigmas")));  // bit-exact float32 on 1.13
  EXPECT_TRUE(same_table(solver.noise_schedule().alphas_cumprod, ref(r, "alphas_cumprod")));
  // Solver order per step (the reference cases' "solver_order_per_step"): first and last step first order.
  for (int64_t k = 0; k < n; ++k) {
    EXPECT_EQ(solver.next_step_order(), (k == 0 || k == n - 1) ? 1 : 2) << "step " << k;
    solver.step(torch::zeros({1}), torch::zeros({1}));
  }
  check_trajectory(solver, r, n, "x0_pred").print(name);
}

INSTANTIATE_TEST_SUITE_P(DPMSolver, DPMSolverReference, ::testing::Values(10, 12, 20, 25),
                         [](const ::testing::TestParamInfo<int64_t>& info) { return "N" + std::to_string(info.param); });

TEST(DPMSolver, FinalStepReturnsTheX0Prediction) {
  // final_sigmas_type "zero": sigma_N = 0 so the last step is exactly x0.
  const TensorMap r = load("dpmpp2m_N10.safetensors");
  DPMSolverMultistep solver;
  solver.set_timesteps(10);
  for (int64_t k = 0; k < 9; ++k) solver.step(ref(r, "eps." + std::to_string(k)), ref(r, "x." + std::to_string(k)));
  const torch::Tensor last = solver.step(ref(r, "eps.9"), ref(r, "x.9"));
  EXPECT_TRUE(torch::equal(last, solver.x0_prediction()));
}

TEST(DPMSolver, OtherStepCountsAndOptionsRun) {
  for (const auto spacing : {TimestepSpacing::kLinspace, TimestepSpacing::kLeading, TimestepSpacing::kTrailing}) {
    for (const std::string final_sigmas : {"zero", "sigma_min"}) {
      for (const int64_t order : {1, 2}) {
        DPMSolverOptions options;
        options.timestep_spacing = spacing;
        options.final_sigmas_type = final_sigmas;
        options.solver_order = order;
        options.steps_offset = spacing == TimestepSpacing::kLeading ? 1 : 0;
        DPMSolverMultistep solver(options);
        for (const int64_t n : {1, 2, 3, 7, 14, 15, 50, 61, 998}) run_and_check_layout(solver, n, true);
      }
    }
  }
}

TEST(DPMSolver, FinalSigmaAndFinalOrderFollowTheOptions) {
  DPMSolverOptions options;
  options.final_sigmas_type = "sigma_min";
  DPMSolverMultistep solver(options);
  solver.set_timesteps(20);
  EXPECT_EQ(solver.sigmas().back(), solver.noise_schedule().sigmas()[0].item<double>());
  for (int64_t k = 0; k < 19; ++k) solver.step(torch::zeros({1}), torch::ones({1}));
  EXPECT_EQ(solver.next_step_order(), 2) << "20 >= 15 steps with sigma_min keep the last step second order";
  solver.set_timesteps(14);
  for (int64_t k = 0; k < 13; ++k) solver.step(torch::zeros({1}), torch::ones({1}));
  EXPECT_EQ(solver.next_step_order(), 1) << "lower_order_final below 15 steps";

  options.euler_at_final = true;
  DPMSolverMultistep euler(options);
  euler.set_timesteps(20);
  for (int64_t k = 0; k < 19; ++k) euler.step(torch::zeros({1}), torch::ones({1}));
  EXPECT_EQ(euler.next_step_order(), 1);
}

TEST(DPMSolver, FirstOrderEqualsDDIMWithoutClipping) {
  // DPM-Solver++ 1 is DDIM (eta = 0): same trailing timesteps, final abar = 1 on both sides.
  DPMSolverOptions dpm_options;
  dpm_options.solver_order = 1;
  dpm_options.timestep_spacing = TimestepSpacing::kTrailing;
  DDIMOptions ddim_options;
  ddim_options.timestep_spacing = TimestepSpacing::kTrailing;
  ddim_options.clip_sample = false;
  ddim_options.set_alpha_to_one = true;
  DPMSolverMultistep dpm(dpm_options);
  DDIMSolver ddim(ddim_options);
  dpm.set_timesteps(10);
  ddim.set_timesteps(10);
  ASSERT_EQ(dpm.integer_timesteps(), ddim.integer_timesteps());
  torch::Tensor x_dpm = torch::randn({2, 4, 8, 8}, at::detail::createCPUGenerator(3));
  torch::Tensor x_ddim = x_dpm.clone();
  for (int64_t k = 0; k < 10; ++k) {
    const double t = dpm.timesteps()[k];
    x_dpm = dpm.step(fake_eps(x_dpm, t), x_dpm);
    x_ddim = ddim.step(fake_eps(x_ddim, t), x_ddim);
    EXPECT_LT(test::relative_error(x_dpm, x_ddim), 1e-5) << "step " << k;
  }
}

TEST(DPMSolver, RejectsBadStepCountsAndMisuse) {
  DPMSolverMultistep solver;
  EXPECT_NE(message_of([&] { solver.set_timesteps(0); }).find(">= 1"), std::string::npos);
  EXPECT_THROW(solver.set_timesteps(-5), Error);
  EXPECT_THROW(solver.set_timesteps(1001), Error);
  EXPECT_THROW(solver.step(torch::zeros({1}), torch::zeros({1})), Error) << "step before set_timesteps";
  solver.set_timesteps(5);
  EXPECT_THROW(solver.step(torch::zeros({2, 8}), torch::zeros({2, 4})), Error) << "shape mismatch";
  // 1000 steps over 1000 training timesteps repeat a timestep with linspace spacing.
  EXPECT_NE(message_of([&] { solver.set_timesteps(1000); }).find("repeated"), std::string::npos);
  DPMSolverOptions options;
  options.solver_order = 3;
  EXPECT_NE(message_of([&] { DPMSolverMultistep bad(options); }).find("solver_order"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// DDIM against diffusers' DDIMScheduler(set_alpha_to_one=False)

TEST(DDIM, TimestepsAndTrajectoryMatchReference) {
  const TensorMap r = load("ddim_N20.safetensors");
  DDIMOptions options;
  options.set_alpha_to_one = false;
  DDIMSolver solver(options);
  solver.set_timesteps(20);
  EXPECT_EQ(solver.integer_timesteps(), int64_values(ref(r, "timesteps")));
  EXPECT_EQ(solver.final_alpha_cumprod(), ref(r, "final_alpha_cumprod")[0].item<float>());
  EXPECT_TRUE(same_table(solver.noise_schedule().alphas_cumprod, ref(r, "alphas_cumprod")));
  check_trajectory(solver, r, 20, "pred_x0").print("ddim_N20");
}

TEST(DDIM, OtherStepCountsAndOptionsRun) {
  for (const auto spacing : {TimestepSpacing::kLinspace, TimestepSpacing::kLeading, TimestepSpacing::kTrailing}) {
    for (const bool alpha_to_one : {true, false}) {
      DDIMOptions options;
      options.timestep_spacing = spacing;
      options.set_alpha_to_one = alpha_to_one;
      options.steps_offset = spacing == TimestepSpacing::kLeading ? 1 : 0;
      DDIMSolver solver(options);
      for (const int64_t n : {1, 2, 7, 15, 50, 61, 999}) run_and_check_layout(solver, n, true);
    }
  }
}

TEST(DDIM, ClipSampleBoundsTheX0Prediction) {
  DDIMOptions options;
  options.clip_sample_range = 0.5;
  DDIMSolver solver(options);
  solver.set_timesteps(10);
  const torch::Tensor x = 3 * torch::randn({2, 4, 8, 8});
  solver.step(fake_eps(x, solver.timesteps()[0]), x);
  EXPECT_LE(solver.x0_prediction().abs().max().item<float>(), 0.5f);
  options.clip_sample = false;
  DDIMSolver unclipped(options);
  unclipped.set_timesteps(10);
  unclipped.step(fake_eps(x, unclipped.timesteps()[0]), x);
  EXPECT_GT(unclipped.x0_prediction().abs().max().item<float>(), 0.5f);
}

TEST(DDIM, RejectsBadStepCountsAndOffsets) {
  DDIMSolver solver;
  EXPECT_NE(message_of([&] { solver.set_timesteps(0); }).find(">= 1"), std::string::npos);
  EXPECT_THROW(solver.set_timesteps(-1), Error);
  EXPECT_THROW(solver.set_timesteps(1001), Error);
  EXPECT_THROW(solver.step(torch::zeros({1}), torch::zeros({1})), Error);
  DDIMOptions options;
  options.steps_offset = 1;  // leading, 1 step of 1000: timestep 0 * 1000 + 1 is fine; 1000 steps reach 1000
  DDIMSolver offset(options);
  EXPECT_NO_THROW(offset.set_timesteps(1));
  EXPECT_NE(message_of([&] { offset.set_timesteps(1000); }).find("outside the training range"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Official PixArt DPM-Solver

TEST(PixArtDPMSolver, TablesGridAndTrajectoryMatchReference) {
  const TensorMap r = load("pixart_dpms_N20.safetensors");
  PixArtDPMSolver solver;
  EXPECT_TRUE(same_table(solver.t_array(), ref(r, "t_array")));
  EXPECT_TRUE(same_table(solver.log_alpha_array(), ref(r, "log_alpha_array")));
  solver.set_timesteps(20);
  expect_same_values(solver.time_grid(), float_values(ref(r, "t_grid")));
  const std::vector<float> t_input = float_values(ref(r, "model_t_input"));
  const std::vector<double> times = solver.timesteps();
  ASSERT_EQ(times.size(), t_input.size());
  expect_same_values(times, t_input);
  for (int64_t k = 0; k < 20; ++k) {
    EXPECT_EQ(solver.next_step_order(), k == 0 ? 1 : 2) << "step " << k;
    solver.step(torch::zeros({1}), torch::ones({1}));
  }
  // The official intermediates: x.k is also the input of the k-th model call (model_x.k).
  check_trajectory(solver, r, 20, "", "model_x").print("pixart_dpms_N20");
}

TEST(PixArtDPMSolver, SigmasAreNoiseToSignalRatiosAtTheGridTimes) {
  PixArtDPMSolver solver;
  solver.set_timesteps(20);
  const std::vector<double> sigmas = solver.sigmas();
  const std::vector<float> grid = solver.time_grid();
  ASSERT_EQ(sigmas.size(), 21u);
  for (size_t i = 0; i < sigmas.size(); ++i) {
    const double alpha = std::exp(static_cast<double>(solver.log_alpha_at(grid[i])));
    // The official float32 sigma = sqrt(1 - alpha^2) cancels near t = 1/1000 (1 - alpha^2 ~ 1e-4).
    EXPECT_NEAR(sigmas[i], std::sqrt(1 - alpha * alpha) / alpha, 1e-3 * sigmas[i]) << "grid time " << i;
  }
  // The discrete schedule's sigma at training step 999 is the sigma at t = 1 (t_array's last entry).
  EXPECT_NEAR(sigmas[0], NoiseSchedule::create().sigma(999), 1e-4 * sigmas[0]);
}

TEST(PixArtDPMSolver, OtherStepCountsRunWithLowerOrderFinalBelowTen) {
  for (const int64_t order : {1, 2}) {
    PixArtDPMSolverOptions options;
    options.solver_order = order;
    PixArtDPMSolver solver(options);
    for (const int64_t n : {1, 2, 3, 7, 9, 10, 15, 50}) run_and_check_layout(solver, n, false);
  }
  PixArtDPMSolver solver;
  solver.set_timesteps(7);
  std::vector<int64_t> orders;
  for (int64_t k = 0; k < 7; ++k) {
    orders.push_back(solver.next_step_order());
    solver.step(torch::zeros({1}), torch::ones({1}));
  }
  EXPECT_EQ(orders, (std::vector<int64_t>{1, 2, 2, 2, 2, 2, 1}));
}

TEST(PixArtDPMSolver, RejectsBadStepCounts) {
  PixArtDPMSolver solver;
  EXPECT_NE(message_of([&] { solver.set_timesteps(0); }).find(">= 1"), std::string::npos);
  EXPECT_THROW(solver.set_timesteps(-2), Error);
  EXPECT_THROW(solver.step(torch::zeros({1}), torch::zeros({1})), Error);
}

// ---------------------------------------------------------------------------------------------
// Steps as tensors (the CUDA-graph interface): every per-step number is in step_tensors(), and update()
// reads nothing else from the solver.

// Runs `solver` for n steps with step() and, alongside, replays each step the way a captured CUDA graph
// would: one static input buffer per kind, the step's timestep and coefficients copied into it, and the
// update computed by `replayer`, a second solver of the same options set for one step only (so it has
// no per-step state to read). Both trajectories must agree bit for bit.
void expect_graph_style_replay_is_bit_identical(Solver& solver, Solver& replayer, int64_t n) {
  SCOPED_TRACE(solver.name() + " with " + std::to_string(n) + " steps");
  torch::manual_seed(3);
  const torch::Tensor x_T = torch::randn({2, 4, 6, 6}) * 2;
  solver.set_timesteps(n);
  replayer.set_timesteps(1);
  const std::vector<double> times = solver.timesteps();
  std::map<int64_t, SolverStep> graphs;  // kind -> static inputs
  torch::Tensor x = x_T, y = x_T, previous_x0;
  for (int64_t k = 0; k < n; ++k) {
    const SolverStep step = solver.step_tensors(k, x.device());
    EXPECT_EQ(step.index, k);
    EXPECT_EQ(step.timestep.dim(), 0);
    EXPECT_EQ(step.timestep.scalar_type(), torch::kFloat32);
    EXPECT_EQ(static_cast<double>(step.timestep.item<float>()), times[k]) << "step " << k;
    auto found = graphs.find(step.kind);
    if (found == graphs.end())
      found = graphs
                  .emplace(step.kind,
                           SolverStep{-1, step.kind, torch::empty_like(step.timestep), torch::empty_like(step.coefficients)})
                  .first;
    SolverStep& captured = found->second;
    captured.timestep.copy_(step.timestep);
    captured.coefficients.copy_(step.coefficients);

    x = solver.step(fake_eps(x, times[k]), x);
    const SolverUpdate next = replayer.update(captured, fake_eps(y, captured.timestep.item<float>()), y, previous_x0);
    previous_x0 = next.x0;
    y = next.sample;
    ASSERT_TRUE(torch::equal(x, y)) << "step " << k;
  }
  EXPECT_LE(graphs.size(), 2u) << "one update formula per solver order";
}

TEST(SolverSteps, EveryStepReplaysFromItsTensorsBitIdenticallyToStep) {
  for (const int64_t n : {1, 2, 9, 10, 20, 25}) {
    DPMSolverMultistep dpm, dpm_replayer;
    expect_graph_style_replay_is_bit_identical(dpm, dpm_replayer, n);
    DPMSolverOptions sigma_min;
    sigma_min.final_sigmas_type = "sigma_min";
    sigma_min.lower_order_final = false;
    DPMSolverMultistep dpm2(sigma_min), dpm2_replayer(sigma_min);
    expect_graph_style_replay_is_bit_identical(dpm2, dpm2_replayer, n);
    DDIMSolver ddim, ddim_replayer;
    expect_graph_style_replay_is_bit_identical(ddim, ddim_replayer, n);
    PixArtDPMSolver pixart, pixart_replayer;
    expect_graph_style_replay_is_bit_identical(pixart, pixart_replayer, n);
  }
}

TEST(SolverSteps, TwentyStepsNeedTwoUpdateKindsAndTheReferenceCoefficients) {
  // 20 DPM-Solver++(2M) steps: the first and last first order, the rest second order, so two graphs.
  DPMSolverMultistep dpm;
  dpm.set_timesteps(20);
  std::vector<int64_t> kinds;
  for (int64_t k = 0; k < 20; ++k) kinds.push_back(dpm.step_tensors(k, torch::kCPU).kind);
  std::vector<int64_t> expected(20, 2);
  expected.front() = expected.back() = 1;
  EXPECT_EQ(kinds, expected);
  // Step 0's x0 coefficients from the reference's sigma: alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma alpha_t
  // (bit-exact on torch 1.13; the schedule differs by an ulp on 2.x, see kTableTolerance).
  const TensorMap r = load("dpmpp2m_N20.safetensors");
  const float sigma = ref(r, "sigmas")[0].item<float>();
  const torch::Tensor c = dpm.step_tensors(0, torch::kCPU).coefficients;
  const float alpha = 1.0f / std::sqrt(sigma * sigma + 1.0f);
  expect_same_values(std::vector<float>{c[1].item<float>(), c[0].item<float>()}, std::vector<float>{alpha, sigma * alpha});
  EXPECT_EQ(c[4].item<float>(), 0.0f) << "1 / r0 is unused (0) on a first-order step";
}

TEST(SolverSteps, StepTensorsOutsideTheScheduleNameTheSolverAndTheStep) {
  DPMSolverMultistep dpm;
  EXPECT_NE(message_of([&] { dpm.step_tensors(0, torch::kCPU); }).find("dpmpp2m: step 0 does not exist"), std::string::npos);
  DDIMSolver ddim;
  ddim.set_timesteps(5);
  EXPECT_NE(message_of([&] { ddim.step_tensors(5, torch::kCPU); }).find("ddim: step 5"), std::string::npos);
  PixArtDPMSolver pixart;
  pixart.set_timesteps(5);
  EXPECT_NE(message_of([&] { pixart.step_tensors(-1, torch::kCPU); }).find("pixart_dpm: step -1"), std::string::npos);
}

TEST(SolverSteps, TheTableIsCopiedToADeviceOncePerScheduleAndDevice) {
  // The meta device stands in for a GPU here: every copy onto it makes a new storage, so step tensors
  // that share one storage come from one copy of the table, not one host-to-device copy per call.
  const torch::Device meta(torch::kMeta);
  DPMSolverMultistep dpm;
  dpm.set_timesteps(20);
  const SolverStep first = dpm.step_tensors(0, meta);
  const SolverStep later = dpm.step_tensors(7, meta);
  EXPECT_EQ(first.coefficients.device(), meta);
  EXPECT_EQ(first.timestep.device(), meta);
  EXPECT_TRUE(later.coefficients.is_alias_of(first.coefficients)) << "step 7 read from the same device table";
  EXPECT_TRUE(later.timestep.is_alias_of(first.timestep));
  EXPECT_TRUE(dpm.step_tensors(0, meta).coefficients.is_alias_of(first.coefficients)) << "a repeated call copies nothing";
  // The same schedule again keeps the device table (a captured CUDA graph keeps reading it); another
  // schedule replaces it.
  dpm.set_timesteps(20);
  EXPECT_TRUE(dpm.step_tensors(3, meta).coefficients.is_alias_of(first.coefficients));
  dpm.set_timesteps(10);
  EXPECT_FALSE(dpm.step_tensors(3, meta).coefficients.is_alias_of(first.coefficients));
  // On the host the table itself is read: two steps share its storage, and the values are step k's row.
  DDIMSolver ddim;
  ddim.set_timesteps(10);
  const SolverStep host0 = ddim.step_tensors(0, torch::kCPU), host4 = ddim.step_tensors(4, torch::kCPU);
  EXPECT_TRUE(host0.coefficients.is_alias_of(host4.coefficients));
  EXPECT_EQ(host4.timestep.item<float>(), static_cast<float>(ddim.integer_timesteps()[4]));
  // After a step on another device the host table is still what step_tensors() returns on the host.
  ddim.step_tensors(1, meta);
  EXPECT_TRUE(ddim.step_tensors(2, torch::kCPU).coefficients.is_alias_of(host0.coefficients));
}

// ---------------------------------------------------------------------------------------------
// Factory and config

TEST(SolverFactory, BuildsEveryNamedSolverAndRejectsUnknownNames) {
  for (const auto& name : solver_names()) EXPECT_EQ(make_solver(name)->name(), name);
  const std::string msg = message_of([] { make_solver("euler"); });
  EXPECT_NE(msg.find("euler"), std::string::npos) << msg;
  EXPECT_NE(msg.find("dpmpp2m, ddim, pixart_dpm"), std::string::npos) << msg;
}

TEST(SolverFactory, ReadsOptionsFromConfig) {
  ConfigReader reader(Json::parse(R"({"sampling": {"solver": "dpmpp2m", "timestep_spacing": "trailing",
      "lower_order_final": false, "final_sigmas_type": "sigma_min", "solver_order": 1, "steps_offset": 0,
      "beta_schedule": "linear", "euler_at_final": true}})"),
                      "run.json");
  const SolverOptions options = parse_solver_options(reader, "sampling");
  EXPECT_NO_THROW(reader.check_all_used());
  EXPECT_EQ(options.solver, "dpmpp2m");
  EXPECT_EQ(options.dpmpp2m.timestep_spacing, TimestepSpacing::kTrailing);
  EXPECT_FALSE(options.dpmpp2m.lower_order_final);
  EXPECT_TRUE(options.dpmpp2m.euler_at_final);
  EXPECT_EQ(options.dpmpp2m.final_sigmas_type, "sigma_min");
  EXPECT_EQ(options.dpmpp2m.solver_order, 1);
  EXPECT_EQ(make_solver(options)->name(), "dpmpp2m");

  ConfigReader ddim_reader(Json::parse(R"({"solver": "ddim", "clip_sample": false, "set_alpha_to_one": false})"), "d.json");
  const SolverOptions ddim = parse_solver_options(ddim_reader, "");
  EXPECT_NO_THROW(ddim_reader.check_all_used());
  EXPECT_FALSE(ddim.ddim.clip_sample);
  EXPECT_FALSE(ddim.ddim.set_alpha_to_one);
  EXPECT_EQ(ddim.ddim.timestep_spacing, TimestepSpacing::kLeading) << "ddim's default spacing";

  ConfigReader empty(Json::object(), "e.json");
  EXPECT_EQ(parse_solver_options(empty, "sampling").solver, "dpmpp2m");
}

TEST(SolverFactory, BadConfigValuesNameTheKeyAndTheAllowedValues) {
  const auto error_for = [](const std::string& json) {
    return message_of([&] {
      ConfigReader reader(Json::parse(json), "run.json");
      parse_solver_options(reader, "sampling");
    });
  };
  std::string msg = error_for(R"({"sampling": {"solver": "heun"}})");
  EXPECT_NE(msg.find("sampling.solver"), std::string::npos) << msg;
  EXPECT_NE(msg.find("dpmpp2m, ddim, pixart_dpm"), std::string::npos) << msg;
  msg = error_for(R"({"sampling": {"timestep_spacing": "uniform"}})");
  EXPECT_NE(msg.find("sampling.timestep_spacing"), std::string::npos) << msg;
  EXPECT_NE(msg.find("linspace, leading, trailing"), std::string::npos) << msg;
  msg = error_for(R"({"sampling": {"solver_order": 3}})");
  EXPECT_NE(msg.find("sampling.solver_order"), std::string::npos) << msg;
  msg = error_for(R"({"sampling": {"final_sigmas_type": "none"}})");
  EXPECT_NE(msg.find("zero, sigma_min"), std::string::npos) << msg;
  msg = error_for(R"({"sampling": {"lower_order_final": "yes"}})");
  EXPECT_NE(msg.find("boolean"), std::string::npos) << msg;
  msg = error_for(R"({"sampling": {"solver": "dpmpp2m", "clip_sample": true}})");
  EXPECT_NE(msg.find("sampling.clip_sample"), std::string::npos) << msg;
  EXPECT_NE(msg.find("ddim"), std::string::npos) << msg;
  msg = error_for(R"({"sampling": {"solver": "pixart_dpm", "timestep_spacing": "linspace"}})");
  EXPECT_NE(msg.find("sampling.timestep_spacing"), std::string::npos) << msg;
  msg = error_for(R"({"sampling": {"solver": "ddim", "clip_sample_range": 0}})");
  EXPECT_NE(msg.find("sampling.clip_sample_range"), std::string::npos) << msg;
  msg = error_for(R"({"sampling": {"steps_offset": -1}})");
  EXPECT_NE(msg.find("sampling.steps_offset"), std::string::npos) << msg;
}
