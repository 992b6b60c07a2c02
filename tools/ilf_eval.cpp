// ilf_eval: evaluates one sampling setting of a class-conditional model (FID, class accuracy, fidelity to
// same-seed reference samples, block forwards, seconds per image; see pipelines/evaluation.h). Writes
// one JSON object to --out (atomically) and prints it.
#include <CLI/CLI.hpp>
#include <iostream>

#include "ilf/io/atomic_file.h"
#include "ilf/pipelines/evaluation.h"
#include "ilf/pipelines/loading.h"

using namespace ilf;

int main(int argc, char** argv) {
  CLI::App app{"ilf_eval: FID, class accuracy, fidelity and cost of one sampling setting"};
  std::string config = "configs/fashion_mnist.json", out;
  std::vector<std::string> overrides;
  EvalRequest request;
  app.add_option("--config", config, "run config (JSON)")->capture_default_str();
  app.add_option("--set", overrides, "override a config value: key.path=value (repeatable)");
  app.add_option("--num-samples", request.num_samples, "samples to generate")->capture_default_str();
  app.add_option("--batch", request.batch, "samples per sampling batch")->capture_default_str();
  app.add_option("--seed", request.seed, "base seed of the initial noise")->capture_default_str();
  app.add_option("--write-samples", request.write_samples, "save the generated samples (safetensors) for later fidelity runs");
  app.add_option("--reference-samples", request.reference_samples, "same-seed reference samples for MSE/PSNR");
  app.add_option("--label", request.label, "a name for this row in reports");
  app.add_option("--out", out, "metrics JSON file");
  app.add_option("--device", request.device, "cpu or cuda")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const RunConfig run = load_tool_config(config, overrides).config;
    const std::string text = evaluate_class_to_image(run, request).dump(2);
    if (!out.empty()) write_file_atomically(out, [&](std::ostream& o) { o << text << "\n"; });
    std::cout << text << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "ilf_eval: error: " << e.what() << std::endl;
    return 1;
  }
}
