// An external program built against the installed ilf::experiments library (sweeps and the benchmark,
// exported in the same CMake package as ilf::ilf): the Slurm array specification of a few point
// indices. Usage: sweep_array_spec (exit status 0 when it is "0-2,5,7-8%2").
#include <ilf/experiments/sweep/sweep.h>

#include <iostream>
#include <string>

int main() {
  const std::string spec = ilf::slurm_array_spec({0, 1, 2, 5, 7, 8}, 2);
  std::cout << "slurm array " << spec << std::endl;
  return spec == "0-2,5,7-8%2" ? 0 : 1;
}
