// Building solvers by name: "dpmpp2m" (diffusers' DPMSolverMultistepScheduler), "ddim" (diffusers'
// DDIMScheduler) and "pixart_dpm" (the official PixArt DPM-Solver), with their options (read from a
// run config's "sampling" section by config/run_config.h), e.g.
//   {"solver": "dpmpp2m", "timestep_spacing": "linspace", "solver_order": 2, "lower_order_final": true,
//    "final_sigmas_type": "zero", "clip_sample": true, ...}
#pragma once
#include <string>
#include <vector>

#include "ilf/sampling/ddim.h"
#include "ilf/sampling/dpm_solver.h"
#include "ilf/sampling/pixart_dpm_solver.h"
#include "ilf/sampling/solver.h"

namespace ilf {

// The solver names make_solver accepts.
const std::vector<std::string>& solver_names();

struct SolverOptions {
  std::string solver = "dpmpp2m";
  DPMSolverOptions dpmpp2m;
  DDIMOptions ddim;
  PixArtDPMSolverOptions pixart_dpm;
};

// The config settings of the solvers and the solvers each applies to:
//   all diffusers-style solvers (dpmpp2m, ddim): beta_schedule, beta_start, beta_end,
//     num_train_timesteps, timestep_spacing, steps_offset
//   dpmpp2m: solver_order, lower_order_final, euler_at_final, final_sigmas_type
//   ddim: clip_sample, clip_sample_range, set_alpha_to_one
//   pixart_dpm: solver_order, lower_order_final
// Unset keys keep the solver's defaults (diffusers' defaults; timestep_spacing linspace for dpmpp2m,
// leading for ddim).
struct SolverSetting {
  const char* key;
  std::vector<std::string> solvers;
};
const std::vector<SolverSetting>& solver_settings();

// Throws ilf::Error naming the allowed names for an unknown `name`; options of other solvers are ignored.
SolverPtr make_solver(const std::string& name, const SolverOptions& options = {});
inline SolverPtr make_solver(const SolverOptions& options) { return make_solver(options.solver, options); }

}  // namespace ilf
