// One plain forward pass of a backbone on inputs read from a safetensors file, keeping every hidden
// state, in the layout of the reference *.io.safetensors in tests/data/ (what `ilf_forward` writes and
// the parity tests compare with the official models):
//   DiT inputs: x (B, C, H, W), t (B,), y (B,) int64;
//   PixArt inputs: x, timestep (B,), y (B, 1, L, C) or (B, L, C), optional mask (B, L), and for
//   PixArt-alpha MS data_info.img_hw (B, 2), data_info.aspect_ratio (B, 1);
//   outputs: out (B, out_channels, H, W), hidden.0 (embed output), hidden.k (output of block k-1).
#pragma once
#include <torch/torch.h>

#include <string>

#include "ilf/io/safetensors.h"
#include "ilf/models/backbone.h"
#include "ilf/models/model_spec.h"

namespace ilf {

// The inputs of one forward pass.
struct ForwardDumpInputs {
  torch::Tensor x;  // (B, C, H, W) float
  torch::Tensor t;  // (B,) or one time for the whole batch
  ConditionInputs condition;
};

// Reads the inputs for `backbone`'s kind of condition from `io` (the tensors of the file `source`),
// on `device`. Errors name `source` and the tensor missing or mis-shaped.
ForwardDumpInputs read_forward_dump_inputs(const TensorMap& io, const std::string& source, const Backbone& backbone,
                                           const torch::Device& device);

// The plain forward without gradients, keeping "hidden.0" (the embedding), "hidden.k" (the output of
// block k-1, k = 1..depth) and "out" (the head's output), each float32 on the CPU. `source` names the
// inputs in errors (a batch that differs between x and the condition).
TensorMap forward_keeping_hidden_states(Backbone& backbone, const ForwardDumpInputs& inputs, const std::string& source);

struct ForwardDumpRequest {
  std::string weights;            // backbone weights (any format read_weights reads)
  std::string inputs;             // safetensors with the inputs above
  std::string out;                // safetensors written: out, hidden.0 .. hidden.<depth>
  std::string dtype = "float32";  // or bfloat16 / float16 on CUDA
  std::string device = "auto";    // "auto": CUDA when the build and machine have it (util/device.h)
};

// Loads the backbone of `request.weights` (its architecture completed by `model`), runs
// forward_keeping_hidden_states on `request.inputs` and writes the result to `request.out` with the
// metadata family, weights and dtype. Nothing is written when anything fails.
void write_forward_dump(const ModelSpec& model, const ForwardDumpRequest& request);

}  // namespace ilf
