// PIL's Image.resize re-derived in C++ (see include/ilf/eval/pil_resize.h). The reference packages run
// their images through Pillow before their networks (clean-fid resizes every channel in mode "F" to
// 299 x 299; CLIP and BLIP transforms resize RGB images), and a metric is only theirs if its input is
// theirs to the last bit. What Pillow does, and what this file reproduces:
//   - the filters (bilinear: triangle, support 1; bicubic: Keys a = -0.5, support 2; lanczos: sinc
//     windowed by sinc(x/3), support 3), evaluated in double;
//   - per output position a window: scale = in / out, the support widened by the scale when
//     downscaling (antialiasing), the centre (i + 0.5) * scale, the first and last source pixels
//     rounded by truncating (c -/+ support + 0.5), the weights divided by their sum one by one;
//   - two passes, normally horizontal first (only over the rows the vertical pass reads), vertical
//     first when the image loses many more rows than columns (pil_two_pass); a pass is skipped when
//     its size does not change;
//   - uint8 images: the weights rounded to 22-bit fixed point (away from zero), integer sums started
//     at one half, the result shifted down and clipped to 0..255 after each pass (so the intermediate
//     image is uint8 too); RGBA is premultiplied by alpha before and divided after (Pillow converts
//     to "RGBa" for every filter but nearest);
//   - float images ("F"): double sums of float pixels times double weights, stored as float after
//     each pass;
//   - nearest: not a filter but Pillow's affine scaling, source index = truncate(x0 + (i + 0.5) * in /
//     out) with the position accumulated step by step as Pillow adds it.
// Floating-point operations are written in Pillow's order; the file must not be compiled with
// -ffast-math or FMA contraction (x86-64 without -march has none).
#include "ilf/eval/pil_resize.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "ilf/error.h"

namespace ilf {
namespace {

constexpr int kPilPrecisionBits = 32 - 8 - 2;
constexpr double kPilPi = 3.14159265358979323846;

double pil_bilinear(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

double pil_bicubic(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double pil_sinc(double x) {
  if (x == 0.0) return 1.0;
  x = x * kPilPi;
  return std::sin(x) / x;
}

double pil_lanczos(double x) {
  if (-3.0 <= x && x < 3.0) return pil_sinc(x) * pil_sinc(x / 3);
  return 0.0;
}

struct PilKernel {
  double (*filter)(double);
  double support;
};

PilKernel pil_kernel(PilFilter filter) {
  switch (filter) {
    case PilFilter::kBilinear:
      return {&pil_bilinear, 1.0};
    case PilFilter::kBicubic:
      return {&pil_bicubic, 2.0};
    case PilFilter::kLanczos:
      return {&pil_lanczos, 3.0};
    case PilFilter::kNearest:
      break;
  }
  throw Error("pil_resize: nearest has no convolution kernel");
}

// The weights of one axis: output position i reads source pixels first[i] .. first[i] + count[i] - 1
// with weights[i * ksize + j].
struct PilWeights {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<double> weights;
};

PilWeights pil_weights(int in_size, int out_size, const PilKernel& kernel) {
  const float in0 = 0.0f, in1 = static_cast<float>(in_size);  // Pillow's box edges are floats
  const double scale = static_cast<double>(in1 - in0) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = kernel.support * filterscale;
  PilWeights w;
  w.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  w.first.resize(out_size);
  w.count.resize(out_size);
  w.weights.assign(static_cast<size_t>(out_size) * w.ksize, 0.0);
  for (int i = 0; i < out_size; ++i) {
    const double center = in0 + (i + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* k = &w.weights[static_cast<size_t>(i) * w.ksize];
    double total = 0.0;
    for (int j = 0; j < xmax; ++j) {
      const double value = kernel.filter((j + xmin - center + 0.5) * ss);
      k[j] = value;
      total += value;
    }
    for (int j = 0; j < xmax; ++j)
      if (total != 0.0) k[j] /= total;
    w.first[i] = xmin;
    w.count[i] = xmax;
  }
  return w;
}

// The weights in Pillow's 8-bit fixed point (rounded half away from zero).
std::vector<int32_t> pil_fixed_weights(const PilWeights& w) {
  std::vector<int32_t> fixed(w.weights.size());
  for (size_t i = 0; i < w.weights.size(); ++i) {
    const double v = w.weights[i];
    fixed[i] = v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPilPrecisionBits))
                     : static_cast<int32_t>(0.5 + v * (1 << kPilPrecisionBits));
  }
  return fixed;
}

inline uint8_t pil_clip8(int32_t sum) {
  const int32_t v = sum >> kPilPrecisionBits;  // arithmetic shift, as Pillow's lookup table index
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// A plain strided 2-D view of one pass's data: pixel (y, x, c) at data[(y * width + x) * channels + c].
template <typename T>
struct PilPlane {
  T* data;
  int height, width, channels;
  T& at(int y, int x, int c) const { return data[(static_cast<size_t>(y) * width + x) * channels + c]; }
};

// Horizontal pass over source rows row0 .. row0 + out.height - 1.
void pil_horizontal_u8(const PilPlane<const uint8_t>& in, const PilPlane<uint8_t>& out, int row0, const PilWeights& w) {
  const std::vector<int32_t> k = pil_fixed_weights(w);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x) {
      const int32_t* kx = &k[static_cast<size_t>(x) * w.ksize];
      for (int c = 0; c < out.channels; ++c) {
        int32_t sum = 1 << (kPilPrecisionBits - 1);
        for (int j = 0; j < w.count[x]; ++j) sum += static_cast<int32_t>(in.at(y + row0, w.first[x] + j, c)) * kx[j];
        out.at(y, x, c) = pil_clip8(sum);
      }
    }
}

void pil_vertical_u8(const PilPlane<const uint8_t>& in, const PilPlane<uint8_t>& out, int row_shift, const PilWeights& w) {
  const std::vector<int32_t> k = pil_fixed_weights(w);
  for (int y = 0; y < out.height; ++y) {
    const int32_t* ky = &k[static_cast<size_t>(y) * w.ksize];
    const int first = w.first[y] - row_shift;
    for (int x = 0; x < out.width; ++x)
      for (int c = 0; c < out.channels; ++c) {
        int32_t sum = 1 << (kPilPrecisionBits - 1);
        for (int j = 0; j < w.count[y]; ++j) sum += static_cast<int32_t>(in.at(first + j, x, c)) * ky[j];
        out.at(y, x, c) = pil_clip8(sum);
      }
  }
}

void pil_horizontal_f(const PilPlane<const float>& in, const PilPlane<float>& out, int row0, const PilWeights& w) {
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x) {
      const double* kx = &w.weights[static_cast<size_t>(x) * w.ksize];
      double sum = 0.0;
      for (int j = 0; j < w.count[x]; ++j) sum += in.at(y + row0, w.first[x] + j, 0) * kx[j];
      out.at(y, x, 0) = static_cast<float>(sum);
    }
}

void pil_vertical_f(const PilPlane<const float>& in, const PilPlane<float>& out, int row_shift, const PilWeights& w) {
  for (int y = 0; y < out.height; ++y) {
    const double* ky = &w.weights[static_cast<size_t>(y) * w.ksize];
    const int first = w.first[y] - row_shift;
    for (int x = 0; x < out.width; ++x) {
      double sum = 0.0;
      for (int j = 0; j < w.count[y]; ++j) sum += in.at(first + j, x, 0) * ky[j];
      out.at(y, x, 0) = static_cast<float>(sum);
    }
  }
}

// Pillow's two-pass resampling for one element type. Pillow 13 runs the horizontal pass first, except
// when the image shrinks vertically by more than twice as many rows as it loses columns: then the
// vertical pass comes first (in_h - out_h > 2 (in_w - out_w), out_h < in_h; found by comparing both
// orders with Pillow 13.0.0 on several hundred random size pairs and filters, no exception; the
// order matters because each pass rounds). The first pass only computes the rows (columns) the
// second reads.
template <typename T, typename Horizontal, typename Vertical>
torch::Tensor pil_two_pass(const torch::Tensor& image, int out_h, int out_w, PilFilter filter, Horizontal horizontal,
                           Vertical vertical) {
  const int in_h = static_cast<int>(image.size(0)), in_w = static_cast<int>(image.size(1));
  const int channels = static_cast<int>(image.size(2));
  const PilKernel kernel = pil_kernel(filter);
  const bool need_horizontal = out_w != in_w, need_vertical = out_h != in_h;
  const bool vertical_first = need_horizontal && need_vertical && out_h < in_h && (in_h - out_h) > 2 * (in_w - out_w);
  const auto plane = [](const torch::Tensor& t) {  // (h, w, C) contiguous
    return PilPlane<T>{t.data_ptr<T>(), static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), static_cast<int>(t.size(2))};
  };
  const auto const_plane = [](const torch::Tensor& t) {
    return PilPlane<const T>{t.data_ptr<T>(), static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), static_cast<int>(t.size(2))};
  };
  torch::Tensor current = image;  // (h, w, C)
  if (vertical_first) {
    const PilWeights wy = pil_weights(in_h, out_h, kernel), wx = pil_weights(in_w, out_w, kernel);
    torch::Tensor temp = torch::empty({out_h, in_w, channels}, image.options());  // (out_h, in_w, C)
    vertical(const_plane(current), plane(temp), 0, wy);
    torch::Tensor result = torch::empty({out_h, out_w, channels}, image.options());  // (out_h, out_w, C)
    horizontal(const_plane(temp), plane(result), 0, wx);
    return result;
  }
  int row_shift = 0;
  PilWeights wy;
  if (need_vertical) wy = pil_weights(in_h, out_h, kernel);
  if (need_horizontal) {
    const PilWeights wx = pil_weights(in_w, out_w, kernel);
    const int row_first = need_vertical ? wy.first[0] : 0;
    const int row_last = need_vertical ? wy.first[out_h - 1] + wy.count[out_h - 1] : in_h;
    torch::Tensor temp = torch::empty({row_last - row_first, out_w, channels}, image.options());  // (rows, out_w, C)
    horizontal(const_plane(current), plane(temp), row_first, wx);
    current = temp;
    row_shift = row_first;
  }
  if (need_vertical) {
    torch::Tensor result = torch::empty({out_h, current.size(1), channels}, image.options());  // (out_h, out_w, C)
    vertical(const_plane(current), plane(result), row_shift, wy);
    current = result;
  }
  return current;
}

// Pillow's nearest resize (its affine scaling): source indices with the position accumulated.
std::vector<int> pil_nearest_indices(int in_size, int out_size) {
  const double step = static_cast<double>(static_cast<float>(in_size) - 0.0f) / out_size;
  double position = 0.0 + step * 0.5;
  std::vector<int> index(out_size);
  for (int i = 0; i < out_size; ++i) {
    const int v = position < 0.0 ? -1 : static_cast<int>(position);
    index[i] = std::min(std::max(v, 0), in_size - 1);  // always in range for a full-image resize
    position += step;
  }
  return index;
}

torch::Tensor pil_nearest(const torch::Tensor& image, int out_h, int out_w) {
  const std::vector<int> ys = pil_nearest_indices(static_cast<int>(image.size(0)), out_h);
  const std::vector<int> xs = pil_nearest_indices(static_cast<int>(image.size(1)), out_w);
  const auto to_tensor = [](const std::vector<int>& v) {
    return torch::tensor(std::vector<int64_t>(v.begin(), v.end()), torch::kInt64);
  };
  return image.index_select(0, to_tensor(ys)).index_select(1, to_tensor(xs)).contiguous();  // (out_h, out_w, C)
}

void pil_check_size(const char* function, int64_t in_h, int64_t in_w, int64_t height, int64_t width) {
  if (in_h < 1 || in_w < 1) throw Error(std::string(function) + ": the image is empty");
  if (height < 1 || width < 1 || height > (1 << 20) || width > (1 << 20))
    throw Error(std::string(function) + ": the output size must be 1..1048576, got " + std::to_string(height) + " x " +
                std::to_string(width));
}

// RGBA -> Pillow's "RGBa" (colour premultiplied by alpha, rounded as its MULDIV255) and back.
void pil_premultiply(torch::Tensor& rgba) {
  uint8_t* p = rgba.data_ptr<uint8_t>();
  const int64_t n = rgba.numel() / 4;
  for (int64_t i = 0; i < n; ++i, p += 4) {
    const uint32_t alpha = p[3];
    for (int c = 0; c < 3; ++c) {
      const uint32_t t = p[c] * alpha + 128;
      p[c] = static_cast<uint8_t>(((t >> 8) + t) >> 8);
    }
  }
}

void pil_unpremultiply(torch::Tensor& rgba) {
  uint8_t* p = rgba.data_ptr<uint8_t>();
  const int64_t n = rgba.numel() / 4;
  for (int64_t i = 0; i < n; ++i, p += 4) {
    const uint32_t alpha = p[3];
    if (alpha == 255 || alpha == 0) continue;
    for (int c = 0; c < 3; ++c) {
      const uint32_t v = (255 * static_cast<uint32_t>(p[c])) / alpha;
      p[c] = static_cast<uint8_t>(v > 255 ? 255 : v);
    }
  }
}

}  // namespace

torch::Tensor pil_resize_uint8(const torch::Tensor& image, int64_t height, int64_t width, PilFilter filter) {
  if (image.dim() != 3 || (image.size(2) != 1 && image.size(2) != 3 && image.size(2) != 4) ||
      image.scalar_type() != torch::kUInt8)
    throw Error("pil_resize_uint8: expected a uint8 image shaped (H, W, 1 | 3 | 4)");
  pil_check_size("pil_resize_uint8", image.size(0), image.size(1), height, width);
  torch::Tensor input = image.to(torch::kCPU).contiguous();  // (H, W, C)
  if (input.size(0) == height && input.size(1) == width) return input.clone();
  if (filter == PilFilter::kNearest) return pil_nearest(input, static_cast<int>(height), static_cast<int>(width));
  const bool rgba = input.size(2) == 4;
  if (rgba) {
    input = input.clone();
    pil_premultiply(input);
  }
  torch::Tensor out = pil_two_pass<uint8_t>(input, static_cast<int>(height), static_cast<int>(width), filter,
                                            &pil_horizontal_u8, &pil_vertical_u8);
  if (rgba) {
    if (out.data_ptr() == input.data_ptr()) out = out.clone();
    pil_unpremultiply(out);
  }
  return out;
}

torch::Tensor pil_resize_float(const torch::Tensor& image, int64_t height, int64_t width, PilFilter filter) {
  if (image.dim() != 2 || image.scalar_type() != torch::kFloat32)
    throw Error("pil_resize_float: expected a float32 image shaped (H, W)");
  pil_check_size("pil_resize_float", image.size(0), image.size(1), height, width);
  const torch::Tensor input = image.to(torch::kCPU).contiguous().unsqueeze(2);  // (H, W, 1)
  if (input.size(0) == height && input.size(1) == width) return image.to(torch::kCPU).contiguous().clone();
  if (filter == PilFilter::kNearest) return pil_nearest(input, static_cast<int>(height), static_cast<int>(width)).squeeze(2);
  return pil_two_pass<float>(input, static_cast<int>(height), static_cast<int>(width), filter, &pil_horizontal_f,
                             &pil_vertical_f)
      .squeeze(2)
      .contiguous();
}

}  // namespace ilf
