// PNG output with text metadata and image grids, and PNG input for the evaluation metrics (see
// include/ilf/io/image.h). Reading checks the container itself (signature, every chunk's length and
// CRC, IHDR's bit depth) before stb_image decodes the pixels: stb skips CRCs, and a metric computed on
// a silently corrupt image is wrong without anyone knowing.
#include "ilf/io/image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <fstream>
#include <vector>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb_image_write.h>
// This file compiles outside the unity batches (CMakeLists.txt): pipelines/data_preparation.cpp holds
// its own static copy of stb_image.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"  // the static copy's entry points this file does not call
#include <stb_image.h>
#pragma GCC diagnostic pop

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"

namespace ilf {
namespace {

void put_u32_be(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

uint32_t get_u32_be(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// One PNG chunk: length, type, data, CRC over type + data.
std::string png_chunk(const std::string& type, const std::string& data) {
  std::string chunk;
  put_u32_be(chunk, static_cast<uint32_t>(data.size()));
  std::string body = type + data;
  chunk += body;
  put_u32_be(chunk, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
  return chunk;
}

// The whole content of a regular file. A directory, FIFO, device or socket is refused by name, and the
// open never blocks (O_NONBLOCK: a FIFO without a writer would otherwise wait forever).
std::vector<unsigned char> png_read_regular_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    const bool directory = S_ISDIR(info.st_mode), fifo = S_ISFIFO(info.st_mode);
    ::close(fd);
    throw Error(path + ": not a regular file (" + (directory ? "a directory" : fifo ? "a FIFO" : "a device or socket") + ")");
  }
  std::vector<unsigned char> bytes(static_cast<size_t>(info.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string reason = n < 0 ? std::strerror(errno) : "the file shrank while being read";
      ::close(fd);
      throw Error(path + ": read error (" + reason + ")");
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return bytes;
}

}  // namespace

// Walks the chunks: every length within the file, every CRC right, IHDR first and 8-bit (or a
// palette / grey depth below 8, which stb expands), IDAT present, IEND at the end.
void check_png_container(const std::string& path, const std::vector<unsigned char>& bytes) {
  static const unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kSignature, 8) != 0) throw Error(path + ": not a PNG file");
  size_t pos = 8;
  bool seen_idat = false;
  for (int index = 0;; ++index) {
    if (pos + 8 > bytes.size()) throw Error(path + ": truncated PNG (no IEND chunk)");
    const uint32_t length = get_u32_be(&bytes[pos]);
    std::string type(reinterpret_cast<const char*>(&bytes[pos + 4]), 4);
    for (char& c : type)
      if (!std::isalpha(static_cast<unsigned char>(c))) c = '?';
    if (length > 0x7fffffffu || bytes.size() - pos - 8 < uint64_t{length} + 4)
      throw Error(path + ": truncated PNG (chunk " + type + " at byte " + std::to_string(pos) + " runs past the end)");
    const uint32_t stored = get_u32_be(&bytes[pos + 8 + length]);
    const uint32_t computed = static_cast<uint32_t>(crc32(0, &bytes[pos + 4], static_cast<uInt>(length + 4)));
    if (stored != computed) throw Error(path + ": CRC mismatch in PNG chunk " + type + " at byte " + std::to_string(pos));
    if (index == 0) {
      if (type != "IHDR" || length != 13) throw Error(path + ": corrupt PNG (the first chunk is not IHDR)");
      const int depth = bytes[pos + 8 + 8], colour = bytes[pos + 8 + 9];
      if (depth == 16) throw Error(path + ": 16-bit PNG is not supported (8-bit grey, grey + alpha, RGB, RGBA or palette)");
      const bool low_depth_ok = (colour == 0 || colour == 3) && (depth == 1 || depth == 2 || depth == 4);
      if (depth != 8 && !low_depth_ok)
        throw Error(path + ": unsupported PNG bit depth " + std::to_string(depth) + " for colour type " + std::to_string(colour));
    }
    if (type == "IDAT") seen_idat = true;
    pos += 12 + static_cast<size_t>(length);
    if (type == "IEND") break;
  }
  if (!seen_idat) throw Error(path + ": corrupt PNG (no IDAT chunk)");
}

torch::Tensor read_png(const std::string& path) {
  const std::vector<unsigned char> bytes = png_read_regular_file(path);
  check_png_container(path, bytes);
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) throw Error(path + ": PNG file too large");
  int width = 0, height = 0, channels = 0;
  unsigned char* pixels = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width, &height, &channels, 0);
  if (!pixels) throw Error(path + ": cannot decode PNG (" + stbi_failure_reason() + ")");
  torch::Tensor image;
  try {
    image = torch::from_blob(pixels, {height, width, channels}, torch::kUInt8).clone();  // (H, W, C)
  } catch (...) {
    stbi_image_free(pixels);
    throw;
  }
  stbi_image_free(pixels);
  return image;
}

torch::Tensor make_image_grid(const torch::Tensor& images, int64_t columns, int64_t padding) {
  TORCH_CHECK(images.dim() == 4, "make_image_grid expects (N, C, H, W)");
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  if (columns <= 0) columns = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(n))));
  const int64_t rows = (n + columns - 1) / columns;
  torch::Tensor grid = torch::full({c, rows * (h + padding) + padding, columns * (w + padding) + padding}, 1.0f);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / columns, col = i % columns;
    grid.slice(1, padding + r * (h + padding), padding + r * (h + padding) + h)
        .slice(2, padding + col * (w + padding), padding + col * (w + padding) + w)
        .copy_(images[i].to(torch::kFloat32));
  }
  return grid;
}

int64_t enlargement_factor(int64_t height, int64_t width, int64_t min_side) {
  const int64_t shorter = std::min(height, width);
  if (shorter <= 0 || shorter >= min_side) return 1;
  return (min_side + shorter - 1) / shorter;
}

torch::Tensor enlarge_image(const torch::Tensor& image, int64_t factor) {
  TORCH_CHECK(image.dim() == 3, "enlarge_image expects (C, H, W)");
  TORCH_CHECK(factor >= 1, "enlarge_image: the factor must be >= 1");
  if (factor == 1) return image;
  return image.repeat_interleave(factor, 1).repeat_interleave(factor, 2);  // (C, k*H, k*W)
}

torch::Tensor unit_range_to_uint8(const torch::Tensor& images) {
  return ((images.detach().to(torch::kCPU, torch::kFloat32).clamp(-1, 1) + 1) * 127.5).round().to(torch::kUInt8);
}

std::string encode_png(const torch::Tensor& image, const std::map<std::string, std::string>& text, const std::string& what) {
  if (image.dim() != 3 || (image.size(0) != 1 && image.size(0) != 3))
    throw Error(what + ": can only write images shaped (1 or 3, H, W)");
  // (C, H, W) in [-1, 1] -> (H, W, C) uint8
  const torch::Tensor pixels = unit_range_to_uint8(image).permute({1, 2, 0}).contiguous();
  const int width = static_cast<int>(pixels.size(1)), height = static_cast<int>(pixels.size(0));
  const int channels = static_cast<int>(pixels.size(2));
  int length = 0;
  unsigned char* encoded = stbi_write_png_to_mem(pixels.data_ptr<uint8_t>(), width * channels, width, height, channels, &length);
  if (!encoded) throw Error(what + ": PNG encoding failed");
  std::string png(reinterpret_cast<char*>(encoded), static_cast<size_t>(length));
  STBIW_FREE(encoded);
  // Insert tEXt chunks right after IHDR (8-byte signature + 25-byte IHDR chunk).
  std::string chunks;
  for (const auto& [key, value] : text) {
    if (key.empty() || key.size() > 79) throw Error(what + ": PNG text keyword must be 1..79 characters");
    chunks += png_chunk("tEXt", key + std::string(1, '\0') + value);
  }
  png.insert(33, chunks);
  return png;
}

void write_png(const std::string& path, const torch::Tensor& image, const std::map<std::string, std::string>& text) {
  const std::string png = encode_png(image, text, path);
  write_file_atomically(path, [&](std::ostream& out) { out.write(png.data(), static_cast<std::streamsize>(png.size())); });
}

std::map<std::string, std::string> read_png_text(const std::string& path) {
  require_regular_file(path, "PNG file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open PNG file");
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), {});
  static const unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kSignature, 8) != 0) throw Error(path + ": not a PNG file");
  std::map<std::string, std::string> text;
  size_t pos = 8;
  while (pos + 12 <= bytes.size()) {
    const uint32_t len = get_u32_be(&bytes[pos]);
    const std::string type(reinterpret_cast<const char*>(&bytes[pos + 4]), 4);
    if (pos + 12 + len > bytes.size()) throw Error(path + ": truncated PNG chunk " + type);
    if (type == "tEXt") {
      const std::string data(reinterpret_cast<const char*>(&bytes[pos + 8]), len);
      const auto zero = data.find('\0');
      if (zero != std::string::npos) text[data.substr(0, zero)] = data.substr(zero + 1);
    }
    if (type == "IEND") break;
    pos += 12 + len;
  }
  return text;
}

}  // namespace ilf
