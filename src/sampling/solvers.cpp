// The solver factory (see include/ilf/sampling/solvers.h).
#include "ilf/sampling/solvers.h"

#include <algorithm>

#include "ilf/error.h"
#include "ilf/util/strings.h"

namespace ilf {

const std::vector<SolverSetting>& solver_settings() {
  static const std::vector<SolverSetting> settings = {
      {"beta_schedule", {"dpmpp2m", "ddim"}},
      {"beta_start", {"dpmpp2m", "ddim"}},
      {"beta_end", {"dpmpp2m", "ddim"}},
      {"num_train_timesteps", {"dpmpp2m", "ddim"}},
      {"timestep_spacing", {"dpmpp2m", "ddim"}},
      {"steps_offset", {"dpmpp2m", "ddim"}},
      {"solver_order", {"dpmpp2m", "pixart_dpm"}},
      {"lower_order_final", {"dpmpp2m", "pixart_dpm"}},
      {"euler_at_final", {"dpmpp2m"}},
      {"final_sigmas_type", {"dpmpp2m"}},
      {"clip_sample", {"ddim"}},
      {"clip_sample_range", {"ddim"}},
      {"set_alpha_to_one", {"ddim"}},
  };
  return settings;
}

const std::vector<std::string>& solver_names() {
  static const std::vector<std::string> names = {"dpmpp2m", "ddim", "pixart_dpm"};
  return names;
}

SolverPtr make_solver(const std::string& name, const SolverOptions& options) {
  if (name == "dpmpp2m") return std::make_unique<DPMSolverMultistep>(options.dpmpp2m);
  if (name == "ddim") return std::make_unique<DDIMSolver>(options.ddim);
  if (name == "pixart_dpm") return std::make_unique<PixArtDPMSolver>(options.pixart_dpm);
  throw Error("unknown solver \"" + name + "\": expected one of " + join(solver_names()));
}

}  // namespace ilf
