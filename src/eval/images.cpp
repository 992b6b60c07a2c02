// The metric image format (see include/ilf/eval/images.h): one check shared by every metric, and the
// conversion from the sampler's [-1, 1] output that rounds exactly as write_png does (io/image.h's
// unit_range_to_uint8), so that a metric of an image in memory equals the metric of its PNG.
#include "ilf/eval/images.h"

#include <string>

#include "ilf/error.h"
#include "ilf/io/image.h"

namespace ilf {

void check_metric_images(const torch::Tensor& images, const char* what) {
  const std::string name = what ? what : "metric images";
  if (!images.defined()) throw Error(name + ": no images (an undefined tensor)");
  if (images.dim() != 4 || images.size(1) != 3)
    throw Error(name + ": expected uint8 images shaped (N, 3, H, W), got shape " + c10::str(images.sizes()));
  if (images.scalar_type() != torch::kUInt8)
    throw Error(name + ": expected uint8 images (0..255), got dtype " + std::string(c10::toString(images.scalar_type())));
  if (!images.device().is_cpu()) throw Error(name + ": expected the images on the CPU, got " + images.device().str());
  if (images.size(0) < 1 || images.size(2) < 1 || images.size(3) < 1)
    throw Error(name + ": empty images, shape " + c10::str(images.sizes()));
}

torch::Tensor metric_images_from_unit_range(const torch::Tensor& images) {
  if (!images.defined() || images.dim() != 4 || (images.size(1) != 1 && images.size(1) != 3))
    throw Error("metric images: expected images shaped (N, 1 or 3, H, W) in [-1, 1], got shape " +
                (images.defined() ? c10::str(images.sizes()) : std::string("undefined")));
  torch::Tensor pixels = unit_range_to_uint8(images);
  if (pixels.size(1) == 1) pixels = pixels.expand({-1, 3, -1, -1});
  return pixels.contiguous();
}

}  // namespace ilf
