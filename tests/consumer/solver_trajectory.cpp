// An external program built against the installed ILF library: replays a solver reference
// trajectory (diffusers DPM-Solver++ / official PixArt DPM-Solver) with the reference's fake model and
// prints the worst relative error. Usage: solver_trajectory <dpmpp2m|pixart_dpm> <file.safetensors> <steps>
#include <ilf/io/safetensors.h>
#include <ilf/sampling/solvers.h>

#include <cmath>
#include <iostream>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: solver_trajectory <dpmpp2m|pixart_dpm> <reference.safetensors> <steps>\n";
    return 2;
  }
  const auto ref = ilf::read_safetensors(argv[2]).tensors;
  const int64_t steps = std::stoll(argv[3]);
  auto solver = ilf::make_solver(argv[1]);
  solver->set_timesteps(steps);
  torch::Tensor x = ref.at("x.0");
  double worst = 0;
  for (int64_t k = 0; k < steps; ++k) {
    // The references' fake model: eps = tanh(x) * a(t) + b(t), a and b in double then float32.
    const double t = solver->timesteps()[k];
    const float a = static_cast<float>(t / 1000.0), b = static_cast<float>(0.05 * std::cos(t / 37.0));
    const torch::Tensor eps = torch::tanh(x) * a + b;
    x = solver->step(eps, x);
    const torch::Tensor& expected = ref.at("x." + std::to_string(k + 1));
    worst = std::max(worst, ((x - expected).abs().max() / expected.abs().max()).item<double>());
  }
  std::cout << "max relative error " << worst << std::endl;
  return worst < 1e-5 ? 0 : 1;
}
