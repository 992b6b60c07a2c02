// ilf_forward: one plain forward pass of a DiT or PixArt backbone on inputs read from a safetensors
// file, writing the output and every hidden state in the layout of the reference *.io.safetensors
// (see pipelines/forward_dump.h). The architecture comes from the weights; the "model" section of
// --config and --set model.key=value supply what the weights cannot tell (num_heads, PixArt variant, ...).
#include <CLI/CLI.hpp>

#include "ilf/config/run_config.h"
#include "ilf/pipelines/forward_dump.h"
#include "tool_common.h"

using namespace ilf;

int main(int argc, char** argv) {
  CLI::App app{"One forward pass of a DiT / PixArt backbone: writes out and every hidden state to a safetensors file."};
  ForwardDumpRequest request;
  std::string config;
  std::vector<std::string> overrides;
  app.add_option("--weights", request.weights, "backbone weights: safetensors, TorchScript archive, or a folder")->required();
  app.add_option("--inputs", request.inputs, "safetensors with x, t, y (DiT) or x, timestep, y, mask[, data_info.*] (PixArt)")
      ->required();
  app.add_option("--out", request.out, "output safetensors (out, hidden.0 .. hidden.<depth>)")->required()->check(cli::NonEmpty);
  app.add_option("--config", config, "JSON config; its \"model\" section completes what the weights cannot tell");
  app.add_option("--set", overrides, "override a config key, e.g. --set model.num_heads=16 (repeatable)");
  app.add_option("--dtype", request.dtype, "float32 (default), or bfloat16 / float16 on CUDA");
  app.add_option("--device", request.device, "auto (default: CUDA when the build and machine have it), cpu or cuda[:N]");
  if (const int code = cli::parse(app, argc, argv, "ilf_forward"); code >= 0) return code;
  try {
    const RunConfig run = parse_run_config(read_run_config_json(config, overrides), config.empty() ? "--set" : config);
    write_forward_dump(run.model, request);
    return 0;
  } catch (...) {
    return cli::report_error("ilf_forward");
  }
}
