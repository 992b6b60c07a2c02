// ilf_forward: one plain forward pass of a DiT or PixArt backbone on inputs read from a safetensors
// file, writing the output and every hidden state in the layout of the reference *.io.safetensors:
//   DiT inputs: x (B, C, H, W), t (B,), y (B,) int64;
//   PixArt inputs: x, timestep (B,), y (B, 1, L, C) or (B, L, C), optional mask (B, L), and for
//   PixArt-alpha MS data_info.img_hw (B, 2), data_info.aspect_ratio (B, 1);
//   outputs: out (B, out_channels, H, W), hidden.0 (embed output), hidden.k (output of block k-1).
// The architecture comes from the weights; the "model" section of --config and --set model.key=value
// supply what the weights cannot tell (num_heads, PixArt variant, ...).
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <iostream>

#include "ilf/error.h"
#include "ilf/config/run_config.h"
#include "ilf/io/safetensors.h"
#include "ilf/models/weights.h"
#include "tool_common.h"

using namespace ilf;

namespace {

struct Args {
  std::string weights, inputs, out, config, dtype = "float32", device = "cpu";
  std::vector<std::string> overrides;
};

const torch::Tensor* optional_tensor(const TensorMap& tensors, const std::string& name) {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

int run(const Args& args) {
  const RunConfig config =
      parse_run_config(read_run_config_json(args.config, args.overrides), args.config.empty() ? "--set" : args.config);
  const torch::Dtype dtype = parse_dtype(args.dtype);
  const torch::Device device(args.device);

  TensorMap weights = read_weights(args.weights);
  BackbonePtr model = make_backbone_for_weights(weights, config.model, args.weights);
  load_backbone_weights(*model, std::move(weights), args.weights);
  move_backbone(*model, device, dtype);
  model->eval();
  spdlog::info("{}: {} backbone, depth {}, hidden size {}", args.weights, model->family(), model->depth(), model->hidden_size());

  const TensorMap inputs = read_safetensors(args.inputs).tensors;
  const torch::Tensor x = require_tensor(inputs, "x", args.inputs).to(device);
  if (!x.is_floating_point() || x.dim() != 4) throw Error(args.inputs + ": \"x\" must be a float tensor (B, C, H, W)");
  torch::Tensor t;
  ConditionInputs condition_inputs;
  if (model->condition_kind() == ConditionKind::kClassLabel) {
    t = require_tensor(inputs, "t", args.inputs).to(device);
    condition_inputs.class_labels = require_tensor(inputs, "y", args.inputs).to(device);
  } else {
    t = require_tensor(inputs, "timestep", args.inputs).to(device);
    condition_inputs.caption = require_tensor(inputs, "y", args.inputs).to(device);
    if (const auto* mask = optional_tensor(inputs, "mask")) condition_inputs.caption_mask = mask->to(device);
    if (const auto* hw = optional_tensor(inputs, "data_info.img_hw")) condition_inputs.image_hw = hw->to(device);
    if (const auto* ar = optional_tensor(inputs, "data_info.aspect_ratio")) condition_inputs.aspect_ratio = ar->to(device);
  }
  if (t.dim() > 1 || (t.numel() != 1 && t.numel() != x.size(0)))
    throw Error(args.inputs + ": the timesteps must be (B,) with B = " + std::to_string(x.size(0)) + " (the batch of x)");

  torch::NoGradGuard no_grad;
  TensorMap outputs;
  torch::Tensor h = model->embed(x);
  const Conditioning cond = model->condition(t, condition_inputs);
  if (h.size(0) != cond.head.size(0))
    throw Error(args.inputs + ": x has batch " + std::to_string(h.size(0)) + " but the condition has batch " +
                std::to_string(cond.head.size(0)));
  outputs["hidden.0"] = h.to(torch::kCPU, torch::kFloat32);
  for (int64_t j = 0; j < model->depth(); ++j) {
    h = model->block(j, h, cond);
    outputs["hidden." + std::to_string(j + 1)] = h.to(torch::kCPU, torch::kFloat32);
  }
  outputs["out"] = model->head(h, cond, x.size(2), x.size(3)).to(torch::kCPU, torch::kFloat32);
  write_safetensors(args.out, outputs, {{"family", model->family()}, {"weights", args.weights}, {"dtype", args.dtype}});
  spdlog::info("wrote {} (out {} and {} hidden states)", args.out, c10::str(outputs["out"].sizes()), model->depth() + 1);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"One forward pass of a DiT / PixArt backbone: writes out and every hidden state to a safetensors file."};
  Args args;
  app.add_option("--weights", args.weights, "backbone weights: safetensors, TorchScript archive, or a folder")->required();
  app.add_option("--inputs", args.inputs, "safetensors with x, t, y (DiT) or x, timestep, y, mask[, data_info.*] (PixArt)")
      ->required();
  app.add_option("--out", args.out, "output safetensors (out, hidden.0 .. hidden.<depth>)")->required();
  app.add_option("--config", args.config, "JSON config; its \"model\" section completes what the weights cannot tell");
  app.add_option("--set", args.overrides, "override a config key, e.g. --set model.num_heads=16 (repeatable)");
  app.add_option("--dtype", args.dtype, "float32 (default), or bfloat16 / float16 on CUDA");
  app.add_option("--device", args.device, "cpu (default) or cuda[:N]");
  if (const int code = cli::parse(app, argc, argv, "ilf_forward"); code >= 0) return code;
  try {
    return run(args);
  } catch (...) {
    return cli::report_error("ilf_forward");
  }
}
