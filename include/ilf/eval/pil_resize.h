// PIL's Image.resize, bit for bit: the resampling the reference packages run before their networks
// (clean-fid's "clean" resize in mode "F"; the BLIP / ImageReward and the CLIP image transforms on RGB
// images), so that our preprocessing of any image size is theirs.
#pragma once
#include <torch/torch.h>

namespace ilf {

enum class PilFilter { kNearest, kBilinear, kBicubic, kLanczos };

// image uint8 (H, W, C), C in {1, 3, 4} (PIL modes "L", "RGB", "RGBA") -> uint8 (height, width, C), as
// PIL.Image.resize((width, height), filter) computes it (its 8-bit fixed-point path, with rounding).
torch::Tensor pil_resize_uint8(const torch::Tensor& image, int64_t height, int64_t width, PilFilter filter);

// image float32 (H, W) (PIL mode "F") -> float32 (height, width), as PIL.Image.resize does for mode "F".
torch::Tensor pil_resize_float(const torch::Tensor& image, int64_t height, int64_t width, PilFilter filter);

}  // namespace ilf
