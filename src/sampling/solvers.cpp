// Solver factory and config reading (see include/ilf/sampling/solvers.h).
#include "ilf/sampling/solvers.h"

#include <algorithm>

#include "ilf/error.h"

namespace ilf {
namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

// Which solvers each solver setting applies to.
struct SolverSetting {
  const char* key;
  std::vector<std::string> solvers;
};

const std::vector<SolverSetting>& solver_settings() {
  static const std::vector<SolverSetting> settings = {
      {"beta_schedule", {"dpmpp2m", "ddim"}},     {"beta_start", {"dpmpp2m", "ddim"}},
      {"beta_end", {"dpmpp2m", "ddim"}},          {"num_train_timesteps", {"dpmpp2m", "ddim"}},
      {"timestep_spacing", {"dpmpp2m", "ddim"}},  {"steps_offset", {"dpmpp2m", "ddim"}},
      {"solver_order", {"dpmpp2m", "pixart_dpm"}}, {"lower_order_final", {"dpmpp2m", "pixart_dpm"}},
      {"euler_at_final", {"dpmpp2m"}},            {"final_sigmas_type", {"dpmpp2m"}},
      {"clip_sample", {"ddim"}},                  {"clip_sample_range", {"ddim"}},
      {"set_alpha_to_one", {"ddim"}},
  };
  return settings;
}

}  // namespace

const std::vector<std::string>& solver_names() {
  static const std::vector<std::string> names = {"dpmpp2m", "ddim", "pixart_dpm"};
  return names;
}

SolverOptions SolverOptions::from_config(ConfigReader& reader, const std::string& prefix) {
  const auto path = [&](const std::string& key) { return prefix.empty() ? key : prefix + "." + key; };
  SolverOptions options;
  options.solver = reader.choice(path("solver"), options.solver, solver_names());
  const std::string& solver = options.solver;

  for (const auto& setting : solver_settings()) {
    const bool applies = std::find(setting.solvers.begin(), setting.solvers.end(), solver) != setting.solvers.end();
    if (!applies && reader.has(path(setting.key)))
      throw reader.invalid(path(setting.key), "left out with solver \"" + solver + "\": it applies only to " +
                                                  join(setting.solvers));
  }

  if (solver == "dpmpp2m" || solver == "ddim") {
    NoiseScheduleOptions schedule;
    schedule.beta_schedule = reader.choice(path("beta_schedule"), schedule.beta_schedule, {"linear", "scaled_linear"});
    schedule.beta_start = reader.get<double>(path("beta_start"), schedule.beta_start);
    schedule.beta_end = reader.get<double>(path("beta_end"), schedule.beta_end);
    if (!(schedule.beta_start > 0 && schedule.beta_start < 1))
      throw reader.invalid(path("beta_start"), "in (0, 1) (got " + std::to_string(schedule.beta_start) + ")");
    if (!(schedule.beta_end > 0 && schedule.beta_end < 1))
      throw reader.invalid(path("beta_end"), "in (0, 1) (got " + std::to_string(schedule.beta_end) + ")");
    schedule.num_train_timesteps = reader.get<int64_t>(path("num_train_timesteps"), schedule.num_train_timesteps);
    if (schedule.num_train_timesteps < 2)
      throw reader.invalid(path("num_train_timesteps"), ">= 2 (got " + std::to_string(schedule.num_train_timesteps) + ")");

    const std::string default_spacing = solver == "dpmpp2m" ? "linspace" : "leading";
    const TimestepSpacing spacing =
        parse_timestep_spacing(reader.choice(path("timestep_spacing"), default_spacing, {"linspace", "leading", "trailing"}));
    const int64_t steps_offset = reader.get<int64_t>(path("steps_offset"), 0);
    if (steps_offset < 0) throw reader.invalid(path("steps_offset"), ">= 0 (got " + std::to_string(steps_offset) + ")");

    if (solver == "dpmpp2m") {
      DPMSolverOptions& o = options.dpmpp2m;
      o.schedule = schedule;
      o.timestep_spacing = spacing;
      o.steps_offset = steps_offset;
      o.solver_order = reader.get<int64_t>(path("solver_order"), o.solver_order);
      if (o.solver_order != 1 && o.solver_order != 2)
        throw reader.invalid(path("solver_order"), "1 or 2 (got " + std::to_string(o.solver_order) + ")");
      o.lower_order_final = reader.get<bool>(path("lower_order_final"), o.lower_order_final);
      o.euler_at_final = reader.get<bool>(path("euler_at_final"), o.euler_at_final);
      o.final_sigmas_type = reader.choice(path("final_sigmas_type"), o.final_sigmas_type, {"zero", "sigma_min"});
    } else {
      DDIMOptions& o = options.ddim;
      o.schedule = schedule;
      o.timestep_spacing = spacing;
      o.steps_offset = steps_offset;
      o.clip_sample = reader.get<bool>(path("clip_sample"), o.clip_sample);
      o.clip_sample_range = reader.get<double>(path("clip_sample_range"), o.clip_sample_range);
      if (!(o.clip_sample_range > 0))
        throw reader.invalid(path("clip_sample_range"), "> 0 (got " + std::to_string(o.clip_sample_range) + ")");
      o.set_alpha_to_one = reader.get<bool>(path("set_alpha_to_one"), o.set_alpha_to_one);
    }
  } else {  // pixart_dpm
    PixArtDPMSolverOptions& o = options.pixart_dpm;
    o.solver_order = reader.get<int64_t>(path("solver_order"), o.solver_order);
    if (o.solver_order != 1 && o.solver_order != 2)
      throw reader.invalid(path("solver_order"), "1 or 2 (got " + std::to_string(o.solver_order) + ")");
    o.lower_order_final = reader.get<bool>(path("lower_order_final"), o.lower_order_final);
  }
  return options;
}

SolverPtr make_solver(const std::string& name, const SolverOptions& options) {
  if (name == "dpmpp2m") return std::make_unique<DPMSolverMultistep>(options.dpmpp2m);
  if (name == "ddim") return std::make_unique<DDIMSolver>(options.ddim);
  if (name == "pixart_dpm") return std::make_unique<PixArtDPMSolver>(options.pixart_dpm);
  throw Error("unknown solver \"" + name + "\": expected one of " + join(solver_names()));
}

}  // namespace ilf
