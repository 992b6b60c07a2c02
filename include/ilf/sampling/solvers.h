// Building solvers by name: "dpmpp2m" (diffusers' DPMSolverMultistepScheduler), "ddim" (diffusers'
// DDIMScheduler) and "pixart_dpm" (the official PixArt DPM-Solver), with their options read from a
// config section such as
//   {"solver": "dpmpp2m", "timestep_spacing": "linspace", "solver_order": 2, "lower_order_final": true,
//    "final_sigmas_type": "zero", "clip_sample": true, ...}
#pragma once
#include <string>
#include <vector>

#include "ilf/io/config.h"
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

  // Reads `<prefix>.solver` and the settings of the chosen solver from the same section (prefix ""
  // reads top-level keys):
  //   all diffusers-style solvers (dpmpp2m, ddim): beta_schedule, beta_start, beta_end,
  //     num_train_timesteps, timestep_spacing, steps_offset
  //   dpmpp2m: solver_order, lower_order_final, euler_at_final, final_sigmas_type
  //   ddim: clip_sample, clip_sample_range, set_alpha_to_one
  //   pixart_dpm: solver_order, lower_order_final
  // Unset keys keep the solver's defaults (diffusers' defaults; timestep_spacing linspace for dpmpp2m,
  // leading for ddim). Bad names or values, and settings that do not apply to the chosen solver, throw
  // ilf::Error naming the key and the allowed values. Other keys of the section are left to their
  // readers (and to ConfigReader::check_all_used).
  static SolverOptions from_config(ConfigReader& reader, const std::string& prefix = "");
};

// Throws ilf::Error naming the allowed names for an unknown `name`; options of other solvers are ignored.
SolverPtr make_solver(const std::string& name, const SolverOptions& options = {});
inline SolverPtr make_solver(const SolverOptions& options) { return make_solver(options.solver, options); }

}  // namespace ilf
