// Images: tensors in [-1, 1] to 8-bit pixels, image grids, and PNG files that carry text metadata
// (the generation settings) in tEXt chunks. PNG encoding uses stb_image_write; files are written
// atomically.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace ilf {

// images (N, C, H, W) with C in {1, 3}, values in [-1, 1] -> one (C, rows*H + pad, cols*W + pad) grid
// in [-1, 1], `columns` images per row (0: a near-square grid), separated by `padding` white pixels.
torch::Tensor make_image_grid(const torch::Tensor& images, int64_t columns = 0, int64_t padding = 2);

// The nearest-neighbour enlargement that makes small samples visible: the smallest integer factor k
// with k * min(height, width) >= min_side (1 when the image is that large already).
int64_t enlargement_factor(int64_t height, int64_t width, int64_t min_side = 256);
// image (C, H, W) -> (C, k*H, k*W): every pixel becomes a k x k block of its value (k >= 1).
torch::Tensor enlarge_image(const torch::Tensor& image, int64_t factor);

// images (..., C, H, W) (any shape, any float dtype, any device) in [-1, 1] -> uint8 of the same shape on the
// CPU: clamped to [-1, 1], (x + 1) * 127.5 rounded half to even in float32. The one rounding of pixels:
// write_png stores exactly these values, and the metric images (eval/images.h) are made with it.
torch::Tensor unit_range_to_uint8(const torch::Tensor& images);

// image (C, H, W) in [-1, 1] -> the bytes of an 8-bit PNG with the given tEXt entries (keyword -> text),
// right after IHDR. `what` names the image in errors.
std::string encode_png(const torch::Tensor& image, const std::map<std::string, std::string>& text = {},
                       const std::string& what = "PNG image");

// Writes image (C, H, W) in [-1, 1] as an 8-bit PNG with the given tEXt entries (keyword -> text): the
// bytes of encode_png, written atomically.
void write_png(const std::string& path, const torch::Tensor& image, const std::map<std::string, std::string>& text = {});

// Reads an 8-bit PNG (grey, grey + alpha, RGB or RGBA) into uint8 (H, W, C), C the file's channel count,
// after checking every chunk's CRC. Errors name the file (not a PNG, a CRC mismatch, truncated, 16-bit).
torch::Tensor read_png(const std::string& path);

// The container checks read_png makes before decoding, for readers that decode themselves (data
// preparation): the PNG signature, every chunk within the file with its CRC right, IHDR first with a
// supported bit depth, IDAT present, IEND last. Errors name the file and the chunk.
void check_png_container(const std::string& path, const std::vector<unsigned char>& bytes);

// Reads the tEXt entries of a PNG file (for tests and tools that inspect outputs).
std::map<std::string, std::string> read_png_text(const std::string& path);

}  // namespace ilf
