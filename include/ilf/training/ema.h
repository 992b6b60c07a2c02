// Exponential moving average of the trainable parameters: ema = decay * ema + (1 - decay) * p after
// every optimizer step (decay 0 keeps a plain copy). The trainer saves EMA weights for sampling and
// swaps them into the modules for a moment to write feedback / backbone files and sample grids.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "ilf/io/safetensors.h"

namespace ilf {

class ParameterEma {
 public:
  // `parameters`: the trainable tensors by name (the live parameters; the EMA starts as a copy).
  ParameterEma(std::vector<std::pair<std::string, torch::Tensor>> parameters, double decay);

  void update();
  double decay() const { return decay_; }

  // name -> EMA value (float32, on the parameters' device).
  const TensorMap& values() const { return values_; }
  // Restores EMA values saved from values(); throws ilf::Error naming a missing or misshapen entry.
  void load(const TensorMap& values, const std::string& source);

  // While alive, the parameters hold the EMA values; the destructor puts the live values back.
  class Swap {
   public:
    explicit Swap(ParameterEma& ema);
    ~Swap();
    Swap(const Swap&) = delete;
    Swap& operator=(const Swap&) = delete;

   private:
    ParameterEma& ema_;
    std::vector<torch::Tensor> saved_;
  };

 private:
  std::vector<std::pair<std::string, torch::Tensor>> parameters_;
  TensorMap values_;
  double decay_;
};

}  // namespace ilf
