// Internal helpers for the solvers' scalar coefficients. The references compute them as float32 torch
// tensors; LibTorch's float32 exp/log/expm1 differ from glibc's expf/logf/expm1f in the last bit for
// a few percent of inputs, so the transcendental parts go through LibTorch on small vectors while
// + - * / and sqrt (correctly rounded everywhere) stay plain C++ float arithmetic.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace ilf::detail {

inline torch::Tensor to_float_tensor(const std::vector<float>& values) {
  return torch::tensor(values, torch::TensorOptions().dtype(torch::kFloat32));
}

inline std::vector<float> to_float_vector(const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.to(torch::kCPU, torch::kFloat32).contiguous();
  return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
}

inline std::vector<float> float32_exp(const std::vector<float>& v) { return to_float_vector(to_float_tensor(v).exp()); }
inline std::vector<float> float32_log(const std::vector<float>& v) { return to_float_vector(to_float_tensor(v).log()); }
inline std::vector<float> float32_expm1(const std::vector<float>& v) { return to_float_vector(to_float_tensor(v).expm1()); }

}  // namespace ilf::detail
