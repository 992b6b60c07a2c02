// LPIPS and SSIM, the fidelity metrics the acceleration methods we compare against report beside PSNR
// (see include/ilf/eval/lpips.h). Both follow their reference packages operation by operation:
//
// LPIPS (lpips 0.1.4, version 0.1, lpips=True, spatial=False):
//   images uint8 -> x / 127.5 - 1 (lpips.im2tensor, in double, then float32);
//   ScalingLayer: (x - shift) / scale, shift (-.030, -.088, -.188), scale (.458, .448, .450);
//   the backbone's torchvision `features` stack cut into five slices, each slice's last ReLU output
//   kept: AlexNet (conv11/4 p2, relu | maxpool3/2, conv5 p2, relu | maxpool3/2, conv3 p1, relu |
//   conv3 p1, relu | conv3 p1, relu), VGG16 (relu1_2 | relu2_2 | relu3_3 | relu4_3 | relu5_3, all
//   conv3 p1, maxpool 2/2 between the blocks);
//   per layer: x / (sqrt(sum_c x^2) + 1e-10) for both images, squared difference, the 1x1 linear head
//   (no bias), mean over H and W; the sum over the five layers.
//   The weights come from scripts/export_lpips.py (one safetensors: the lpips state dict's names
//   net.sliceK.I.weight / bias and linK.model.M.weight, metadata format=ilf-lpips, net=alex|vgg);
//   the channel widths are read from the tensors, so reduced-width test models work unchanged.
//
// SSIM (torchmetrics 1.9 StructuralSimilarityIndexMeasure, defaults, data_range 1.0, per image):
//   images / 255 in float32; Gaussian window of size int(3.5 sigma + 0.5) * 2 + 1 = 11, sigma 1.5,
//   the outer product of two normalised 1-D Gaussians; both images reflect-padded by 5; one grouped
//   convolution of (x, y, x^2, y^2, xy); variances clamped at 0; c1 = (0.01)^2, c2 = (0.03)^2; the SSIM
//   map (H x W, the padded border's values included, as torchmetrics 1.9 keeps them) averaged over
//   channels and pixels.
#include "ilf/eval/lpips.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <vector>

#include "ilf/error.h"
#include "ilf/io/safetensors.h"

namespace ilf {

namespace {

// One step of a backbone's `features` stack at torchvision index `index`.
struct LpipsStep {
  enum Kind { kConv, kRelu, kPool } kind;
  int index;
  int stride = 1, padding = 0;  // conv
  int pool_kernel = 0, pool_stride = 0;
};

struct LpipsNetSpec {
  std::vector<std::vector<LpipsStep>> slices;  // five slices
};

LpipsNetSpec lpips_alex_spec() {
  using S = LpipsStep;
  LpipsNetSpec spec;
  spec.slices = {
      {{S::kConv, 0, 4, 2}, {S::kRelu, 1}},
      {{S::kPool, 2, 1, 0, 3, 2}, {S::kConv, 3, 1, 2}, {S::kRelu, 4}},
      {{S::kPool, 5, 1, 0, 3, 2}, {S::kConv, 6, 1, 1}, {S::kRelu, 7}},
      {{S::kConv, 8, 1, 1}, {S::kRelu, 9}},
      {{S::kConv, 10, 1, 1}, {S::kRelu, 11}},
  };
  return spec;
}

LpipsNetSpec lpips_vgg_spec() {
  using S = LpipsStep;
  // torchvision vgg16().features: convs (3x3, pad 1) and ReLUs, max pools (2, 2) at 4, 9, 16, 23
  const std::vector<int> bounds = {0, 4, 9, 16, 23, 30};
  const std::vector<int> pools = {4, 9, 16, 23};
  const std::vector<int> convs = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28};
  LpipsNetSpec spec;
  for (size_t s = 0; s + 1 < bounds.size(); ++s) {
    std::vector<LpipsStep> slice;
    for (int i = bounds[s]; i < bounds[s + 1]; ++i) {
      if (std::find(pools.begin(), pools.end(), i) != pools.end())
        slice.push_back({S::kPool, i, 1, 0, 2, 2});
      else if (std::find(convs.begin(), convs.end(), i) != convs.end())
        slice.push_back({S::kConv, i, 1, 1});
      else
        slice.push_back({S::kRelu, i});
    }
    spec.slices.push_back(slice);
  }
  return spec;
}

const torch::Tensor& lpips_tensor(const TensorMap& tensors, const std::string& name, const std::string& path) {
  return require_tensor(tensors, name, path);
}

}  // namespace

class LpipsModel {
 public:
  LpipsModel(const std::string& path, const torch::Device& device) : device_(device) {
    const SafetensorsFile file = read_safetensors(path);
    const auto net = file.metadata.find("net");
    if (file.metadata.count("format") == 0 || file.metadata.at("format") != "ilf-lpips" || net == file.metadata.end())
      throw Error(path +
                  ": not an LPIPS weights file (metadata format=ilf-lpips and net missing; convert with "
                  "scripts/export_lpips.py)");
    const auto version = file.metadata.find("version");
    if (version != file.metadata.end() && version->second != "0.1")
      throw Error(path + ": LPIPS version " + version->second + " (only 0.1 is supported)");
    if (net->second == "alex")
      spec_ = lpips_alex_spec();
    else if (net->second == "vgg" || net->second == "vgg16")
      spec_ = lpips_vgg_spec();
    else
      throw Error(path + ": LPIPS net '" + net->second + "' is not supported (alex, vgg)");
    for (size_t s = 0; s < spec_.slices.size(); ++s)
      for (const LpipsStep& step : spec_.slices[s]) {
        if (step.kind != LpipsStep::kConv) continue;
        const std::string prefix = "net.slice" + std::to_string(s + 1) + "." + std::to_string(step.index);
        const torch::Tensor w = lpips_tensor(file.tensors, prefix + ".weight", path).to(device_, torch::kFloat32);
        const torch::Tensor b = lpips_tensor(file.tensors, prefix + ".bias", path).to(device_, torch::kFloat32);
        if (w.dim() != 4 || b.dim() != 1 || b.size(0) != w.size(0))
          throw Error(path + ": " + prefix + ".weight / .bias have shapes " + c10::str(w.sizes()) + " / " + c10::str(b.sizes()));
        conv_weights_[step.index] = w;
        conv_biases_[step.index] = b;
      }
    for (size_t k = 0; k < spec_.slices.size(); ++k) {
      torch::Tensor head;
      for (const char* m : {".model.1.weight", ".model.0.weight"}) {  // with / without the Dropout in front
        const auto it = file.tensors.find("lin" + std::to_string(k) + m);
        if (it != file.tensors.end()) head = it->second;
      }
      if (!head.defined()) throw Error(path + ": missing tensor lin" + std::to_string(k) + ".model.1.weight (the linear head)");
      heads_.push_back(head.to(device_, torch::kFloat32));  // (1, C_k, 1, 1)
    }
    const auto shift = file.tensors.find("scaling_layer.shift");
    const auto scale = file.tensors.find("scaling_layer.scale");
    shift_ = (shift != file.tensors.end() ? shift->second : torch::tensor({-.030f, -.088f, -.188f}))
                 .to(device_, torch::kFloat32)
                 .reshape({1, 3, 1, 1});
    scale_ = (scale != file.tensors.end() ? scale->second : torch::tensor({.458f, .448f, .450f}))
                 .to(device_, torch::kFloat32)
                 .reshape({1, 3, 1, 1});
    path_ = path;
  }

  // x float32 (N, 3, H, W) in [-1, 1] -> the five slices' outputs.
  std::vector<torch::Tensor> features(torch::Tensor x) const {
    x = (x - shift_) / scale_;
    std::vector<torch::Tensor> outs;
    for (const auto& slice : spec_.slices) {
      for (const LpipsStep& step : slice) {
        if (step.kind == LpipsStep::kConv)
          x = torch::conv2d(x, conv_weights_.at(step.index), conv_biases_.at(step.index), step.stride, step.padding);
        else if (step.kind == LpipsStep::kRelu)
          x = torch::relu(x);
        else
          x = torch::max_pool2d(x, step.pool_kernel, step.pool_stride);
      }
      outs.push_back(x);  // (N, C_k, H_k, W_k)
    }
    return outs;
  }

  torch::Tensor distances(const torch::Tensor& images, const torch::Tensor& references) const {
    torch::NoGradGuard no_grad;
    const auto to_input = [&](const torch::Tensor& u8) {                         // lpips.im2tensor: x / 127.5 - 1 in double
      return (u8.to(torch::kFloat64) / 127.5 - 1).to(device_, torch::kFloat32);  // (N, 3, H, W)
    };
    const std::vector<torch::Tensor> a = features(to_input(images)), b = features(to_input(references));
    torch::Tensor total;
    for (size_t k = 0; k < a.size(); ++k) {
      const auto unit = [](const torch::Tensor& f) { return f / (f.pow(2).sum(1, true).sqrt() + 1e-10); };
      const torch::Tensor diff = (unit(a[k]) - unit(b[k])).pow(2);                    // (N, C_k, H_k, W_k)
      const torch::Tensor layer = torch::conv2d(diff, heads_[k]).mean({2, 3}, true);  // (N, 1, 1, 1)
      total = total.defined() ? total + layer : layer;
    }
    return total.reshape({-1}).to(torch::kCPU, torch::kFloat64);  // (N,)
  }

  const std::string& path() const { return path_; }

 private:
  torch::Device device_;
  std::string path_;
  LpipsNetSpec spec_;
  std::map<int, torch::Tensor> conv_weights_, conv_biases_;
  std::vector<torch::Tensor> heads_;
  torch::Tensor shift_, scale_;
};

LpipsModelPtr load_lpips(const std::string& path, const torch::Device& device) {
  return std::make_shared<LpipsModel>(path, device);
}

torch::Tensor lpips_distances(LpipsModel& model, const torch::Tensor& images, const torch::Tensor& references) {
  if (images.dim() != 4 || images.size(1) != 3 || images.scalar_type() != torch::kUInt8)
    throw Error("lpips_distances: expected uint8 images shaped (N, 3, H, W)");
  if (images.sizes() != references.sizes() || references.scalar_type() != torch::kUInt8)
    throw Error("lpips_distances: images " + c10::str(images.sizes()) + " and references " + c10::str(references.sizes()) +
                " differ in shape or type");
  try {
    return model.distances(images, references);
  } catch (const c10::Error& e) {
    throw Error(model.path() + ": LPIPS failed on images shaped " + c10::str(images.sizes()) +
                " (too small for the network?): " + e.what_without_backtrace());
  }
}

torch::Tensor ssim_per_image(const torch::Tensor& images, const torch::Tensor& references) {
  if (images.dim() != 4 || images.scalar_type() != torch::kUInt8 || images.sizes() != references.sizes() ||
      references.scalar_type() != torch::kUInt8)
    throw Error("ssim_per_image: expected uint8 images and references of one shape (N, C, H, W), got " +
                c10::str(images.sizes()) + " and " + c10::str(references.sizes()));
  constexpr double kSigma = 1.5, kK1 = 0.01, kK2 = 0.03, kDataRange = 1.0;
  const int64_t size = static_cast<int64_t>(3.5 * kSigma + 0.5) * 2 + 1, pad = (size - 1) / 2;
  if (images.size(2) <= pad || images.size(3) <= pad)
    throw Error("ssim_per_image: images of " + std::to_string(images.size(2)) + " x " + std::to_string(images.size(3)) +
                " are too small for the 11 x 11 window (reflect padding needs more than 5 pixels)");
  torch::NoGradGuard no_grad;
  const int64_t n = images.size(0), channels = images.size(1);
  torch::Tensor x = images.to(torch::kFloat32) / 255;  // (N, C, H, W)
  torch::Tensor y = references.to(torch::kFloat32) / 255;
  x = torch::reflection_pad2d(x, {pad, pad, pad, pad});
  y = torch::reflection_pad2d(y, {pad, pad, pad, pad});
  const torch::Tensor dist = torch::arange((1 - size) / 2.0, (1 + size) / 2.0, 1.0, torch::kFloat32);  // (size,)
  torch::Tensor gauss = torch::exp(-torch::pow(dist / kSigma, 2) / 2);
  gauss = (gauss / gauss.sum()).unsqueeze(0);                                              // (1, size)
  const torch::Tensor kernel = gauss.t().matmul(gauss).expand({channels, 1, size, size});  // (C, 1, size, size)
  const torch::Tensor stacked = torch::cat({x, y, x * x, y * y, x * y});                   // (5N, C, H+2p, W+2p)
  const std::vector<int64_t> one = {1, 1}, zero = {0, 0};
  const std::vector<torch::Tensor> parts =
      torch::conv2d(stacked, kernel, c10::nullopt, one, zero, one, channels).split(n);  // 5 x (N, C, H, W)
  const torch::Tensor mu_x2 = parts[0].pow(2), mu_y2 = parts[1].pow(2), mu_xy = parts[0] * parts[1];
  const torch::Tensor var_x = torch::clamp(parts[2] - mu_x2, 0.0), var_y = torch::clamp(parts[3] - mu_y2, 0.0);
  const torch::Tensor cov = parts[4] - mu_xy;
  const double c1 = std::pow(kK1 * kDataRange, 2), c2 = std::pow(kK2 * kDataRange, 2);
  const torch::Tensor upper = 2 * cov + c2, lower = (var_x + var_y) + c2;
  const torch::Tensor map = ((2 * mu_xy + c1) * upper) / ((mu_x2 + mu_y2 + c1) * lower);  // (N, C, H, W)
  return map.reshape({n, -1}).mean(-1).to(torch::kFloat64);                               // (N,)
}

}  // namespace ilf
