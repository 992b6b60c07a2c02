// Exponential moving average of the trainable parameters (see include/ilf/training/ema.h).
#include "ilf/training/ema.h"

#include "ilf/error.h"

namespace ilf {

ParameterEma::ParameterEma(std::vector<std::pair<std::string, torch::Tensor>> parameters, double decay)
    : parameters_(std::move(parameters)), decay_(decay) {
  if (decay < 0 || decay >= 1) throw Error("ema_decay must be in [0, 1), got " + std::to_string(decay));
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : parameters_) values_[name] = p.detach().to(torch::kFloat32).clone();
}

void ParameterEma::update() {
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : parameters_) {
    torch::Tensor& e = values_.at(name);
    if (decay_ == 0)
      e.copy_(p);
    else
      e.mul_(decay_).add_(p.detach().to(torch::kFloat32), 1.0 - decay_);
  }
}

void ParameterEma::load(const TensorMap& values, const std::string& source) {
  torch::NoGradGuard no_grad;
  for (auto& [name, e] : values_) {
    auto it = values.find(name);
    if (it == values.end()) throw Error(source + ": EMA value for \"" + name + "\" missing");
    if (it->second.sizes() != e.sizes())
      throw Error(source + ": EMA value for \"" + name + "\" has shape " + c10::str(it->second.sizes()) + ", expected " +
                  c10::str(e.sizes()));
    e.copy_(it->second);
  }
}

ParameterEma::Swap::Swap(ParameterEma& ema) : ema_(ema) {
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : ema_.parameters_) {
    saved_.push_back(p.detach().clone());
    p.copy_(ema_.values_.at(name));
  }
}

ParameterEma::Swap::~Swap() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < saved_.size(); ++i) ema_.parameters_[i].second.copy_(saved_[i]);
}

}  // namespace ilf
