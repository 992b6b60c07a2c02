// One forward pass keeping every hidden state (see include/ilf/pipelines/forward_dump.h).
#include "ilf/pipelines/forward_dump.h"

#include <spdlog/spdlog.h>

#include "ilf/error.h"
#include "ilf/io/safetensors.h"
#include "ilf/models/loader.h"
#include "ilf/models/weights.h"
#include "ilf/util/device.h"
#include "ilf/util/checks.h"

namespace ilf {

namespace {

const torch::Tensor* optional_tensor(const TensorMap& tensors, const std::string& name) {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

}  // namespace

ForwardDumpInputs read_forward_dump_inputs(const TensorMap& io, const std::string& source, const Backbone& backbone,
                                           const torch::Device& device) {
  ForwardDumpInputs in;
  in.x = require_tensor(io, "x", source).to(device);
  if (!in.x.is_floating_point() || in.x.dim() != 4) throw Error(source + ": \"x\" must be a float tensor (B, C, H, W)");
  if (backbone.condition_kind() == ConditionKind::kClassLabel) {
    in.t = require_tensor(io, "t", source).to(device);
    in.condition.class_labels = require_tensor(io, "y", source).to(device);
  } else {
    in.t = require_tensor(io, "timestep", source).to(device);
    in.condition.caption = require_tensor(io, "y", source).to(device);
    if (const auto* mask = optional_tensor(io, "mask")) in.condition.caption_mask = mask->to(device);
    if (const auto* hw = optional_tensor(io, "data_info.img_hw")) in.condition.image_hw = hw->to(device);
    if (const auto* ar = optional_tensor(io, "data_info.aspect_ratio")) in.condition.aspect_ratio = ar->to(device);
  }
  if (in.t.dim() > 1 || (in.t.numel() != 1 && in.t.numel() != in.x.size(0)))
    throw Error(source + ": the timesteps must be (B,) with B = " + std::to_string(in.x.size(0)) + " (the batch of x)");
  return in;
}

TensorMap forward_keeping_hidden_states(Backbone& backbone, const ForwardDumpInputs& inputs, const std::string& source) {
  torch::NoGradGuard no_grad;
  const torch::Tensor& x = inputs.x;  // (B, C, H, W)
  TensorMap outputs;
  torch::Tensor h = backbone.embed(x);  // (B, T, D)
  const Conditioning cond = backbone.condition(inputs.t, inputs.condition);
  if (h.size(0) != cond.head.size(0))
    throw Error(source + ": x has batch " + std::to_string(h.size(0)) + " but the condition has batch " +
                std::to_string(cond.head.size(0)));
  outputs["hidden.0"] = h.to(torch::kCPU, torch::kFloat32);
  for (int64_t j = 0; j < backbone.depth(); ++j) {
    h = backbone.block(j, h, cond);
    outputs["hidden." + std::to_string(j + 1)] = h.to(torch::kCPU, torch::kFloat32);
  }
  outputs["out"] = backbone.head(h, cond, x.size(2), x.size(3)).to(torch::kCPU, torch::kFloat32);  // (B, out_channels, H, W)
  return outputs;
}

void write_forward_dump(const ModelSpec& model, const ForwardDumpRequest& request) {
  const torch::Dtype dtype = parse_dtype(request.dtype);
  const torch::Device device = resolve_device(request.device);

  BackbonePtr backbone = load_backbone(request.weights, model);
  move_backbone(*backbone, device, dtype);
  backbone->eval();
  spdlog::info("{}: {} backbone, depth {}, hidden size {}", request.weights, backbone->family(), backbone->depth(),
               backbone->hidden_size());

  const TensorMap io = read_safetensors(request.inputs).tensors;
  require_finite_tensors(io, request.inputs);
  const ForwardDumpInputs inputs = read_forward_dump_inputs(io, request.inputs, *backbone, device);
  TensorMap outputs = forward_keeping_hidden_states(*backbone, inputs, request.inputs);
  // Non-finite outputs (inputs or weights with NaN / Inf, an overflow) are refused, not written.
  for (const auto& [name, tensor] : outputs)
    require_finite(tensor, request.out + ": output \"" + name + "\"", "nothing written; inputs " + request.inputs);
  write_safetensors(request.out, outputs,
                    {{"family", backbone->family()}, {"weights", request.weights}, {"dtype", request.dtype}});
  spdlog::info("wrote {} (out {} and {} hidden states)", request.out, c10::str(outputs["out"].sizes()), backbone->depth() + 1);
}

}  // namespace ilf
