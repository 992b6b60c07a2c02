// FID as clean-fid 0.1.35 computes it in mode "clean" (see include/ilf/eval/clean_fid.h), so that a
// number this framework reports can stand next to the paper's MJHQ-30K FID and be compared with a
// user's clean-fid statistics files. What clean-fid does, step by step, and where it is done here:
//   - lists a folder recursively (glob "**/*.<ext>", hidden names skipped), sorted by path;
//   - opens each image with PIL and converts it to RGB (grey replicated, alpha dropped, palette
//     expanded): clean_fid_rgb;
//   - resizes each channel separately as a PIL mode "F" image (the uint8 values as float32) to
//     299 x 299 with the bicubic filter, clips to [0, 255]: clean_fid_resize (eval/pil_resize.h);
//   - feeds NCHW float32 in 0..255 to its InceptionV3W wrapper of inception-2015-12-05.pt, which in
//     this mode (resize_inside=False) calls the file's `layers` submodule on (x - 128) / 128 and views
//     the result as (N, 2048); a TorchScript file without `layers` is called as
//     forward(x, return_features=True), the real file's own entry point (which resamples to 299 x 299
//     itself, an identity up to float round-off at that size);
//   - mean and covariance of the features, the Frechet distance: eval/metrics.h (float64 throughout;
//     clean-fid's mean is np.mean of float32 features, float32, a difference of order 1e-7);
//   - reference statistics in .npz files written by np.savez_compressed (mu, sigma): read here with a
//     small zip reader (stored and deflated entries, zip64 sizes) and .npy parser, written as a zip of
//     deflated .npy (v1) entries that numpy loads.
#include "ilf/eval/clean_fid.h"

#include <ATen/Parallel.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "ilf/error.h"
#include "ilf/eval/pil_resize.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/image.h"

namespace ilf {

class CleanFidExtractor {
 public:
  CleanFidExtractor(torch::jit::Module module, const torch::Device& device, std::string path)
      : module_(std::move(module)), device_(device), path_(std::move(path)) {
    use_layers_ = module_.hasattr("layers") && module_.attr("layers").isModule();
    if (!use_layers_ && !module_.find_method("forward"))
      throw Error(path_ + ": the TorchScript module has neither a `layers` submodule nor a forward method");
  }

  // x float32 (N, 3, 299, 299) in [0, 255] -> features (N, D) float32 on the CPU.
  torch::Tensor features(const torch::Tensor& x) {
    torch::NoGradGuard no_grad;
    const torch::Tensor input = x.to(device_, torch::kFloat32);
    torch::Tensor out;
    try {
      if (use_layers_) {
        torch::jit::Module layers = module_.attr("layers").toModule();
        const torch::Tensor normalised = (input - 128) / 128;
        out = layers.forward({normalised}).toTensor();
      } else {
        torch::jit::Method forward = module_.get_method("forward");
        out = forward({input}, {{"return_features", true}}).toTensor();
      }
    } catch (const c10::Error& e) {
      throw Error(path_ + ": the Inception module failed on a batch shaped " + std::to_string(x.size(0)) +
                  " x 3 x 299 x 299: " + e.what_without_backtrace());
    }
    if (out.dim() < 1 || out.size(0) != x.size(0))
      throw Error(path_ + ": the Inception module returned " + std::to_string(out.dim()) + "-d output, not (N, D)");
    return out.reshape({x.size(0), -1}).to(torch::kCPU, torch::kFloat32);  // (N, D)
  }

 private:
  torch::jit::Module module_;
  torch::Device device_;
  std::string path_;
  bool use_layers_ = false;
};

namespace {

constexpr int64_t kCleanFidSize = 299;

// uint8 (H, W, C) as read_png returns it -> uint8 (3, H, W), as PIL's convert("RGB") would give.
torch::Tensor clean_fid_rgb(const torch::Tensor& image, const std::string& path) {
  const int64_t c = image.size(2);
  torch::Tensor rgb;
  if (c == 1 || c == 2) {
    rgb = image.select(2, 0).unsqueeze(0).expand({3, image.size(0), image.size(1)});  // grey (+ alpha dropped)
  } else if (c == 3 || c == 4) {
    rgb = image.slice(2, 0, 3).permute({2, 0, 1});  // alpha dropped, not composited (PIL's convert)
  } else {
    throw Error(path + ": unexpected channel count " + std::to_string(c));
  }
  return rgb.contiguous();  // (3, H, W)
}

// The extensions clean-fid's folder listing takes (cleanfid.utils.EXTENSIONS); only PNG is read here.
bool clean_fid_is_png(const std::string& extension) { return extension == ".png" || extension == ".PNG"; }

bool clean_fid_is_other_image(const std::string& extension) {
  static const std::set<std::string> kOthers = {".bmp",  ".jpg",  ".jpeg", ".pgm",  ".ppm", ".tif",
                                                ".tiff", ".webp", ".npy",  ".JPEG", ".JPG"};
  return kOthers.count(extension) > 0;
}

// ---- .npz (zip of .npy) reading and writing ---------------------------------------------------------

uint32_t npz_u16(const unsigned char* p) { return uint32_t{p[0]} | (uint32_t{p[1]} << 8); }
uint32_t npz_u32(const unsigned char* p) { return npz_u16(p) | (npz_u16(p + 2) << 16); }
uint64_t npz_u64(const unsigned char* p) { return uint64_t{npz_u32(p)} | (uint64_t{npz_u32(p + 4)} << 32); }

void npz_put16(std::string& out, uint32_t v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
}
void npz_put32(std::string& out, uint32_t v) {
  npz_put16(out, v & 0xffff);
  npz_put16(out, v >> 16);
}

struct NpzEntry {
  std::string name;
  uint32_t method = 0, crc = 0;
  uint64_t compressed = 0, uncompressed = 0, offset = 0;
};

std::vector<unsigned char> npz_read_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    if (!std::filesystem::exists(path, ec)) throw Error(path + ": statistics file not found");
    throw Error(path + ": not a regular file");
  }
  require_regular_file(path, "FID statistics");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the statistics file");
  return std::vector<unsigned char>((std::istreambuf_iterator<char>(in)), {});
}

// The central directory of a zip file (zip64 sizes and offsets where the 32-bit fields overflow).
std::vector<NpzEntry> npz_directory(const std::string& path, const std::vector<unsigned char>& b) {
  const size_t n = b.size();
  if (n < 22) throw Error(path + ": not a .npz file (too short for a zip archive)");
  size_t eocd = std::string::npos;
  for (size_t i = n - 22 + 1; i-- > 0 && n - i <= 22 + 65535;) {
    if (npz_u32(&b[i]) == 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd == std::string::npos) throw Error(path + ": not a .npz file (no zip end-of-directory record)");
  uint64_t count = npz_u16(&b[eocd + 10]);
  uint64_t dir_size = npz_u32(&b[eocd + 12]), dir_offset = npz_u32(&b[eocd + 16]);
  if ((count == 0xffff || dir_size == 0xffffffff || dir_offset == 0xffffffff) && eocd >= 20 &&
      npz_u32(&b[eocd - 20]) == 0x07064b50) {  // zip64 locator -> zip64 end of directory
    const uint64_t z64 = npz_u64(&b[eocd - 20 + 8]);
    if (z64 + 56 > n || npz_u32(&b[z64]) != 0x06064b50) throw Error(path + ": corrupt zip64 directory");
    count = npz_u64(&b[z64 + 32]);
    dir_size = npz_u64(&b[z64 + 40]);
    dir_offset = npz_u64(&b[z64 + 48]);
  }
  if (dir_offset > n || dir_size > n - dir_offset) throw Error(path + ": corrupt zip directory (truncated file?)");
  std::vector<NpzEntry> entries;
  size_t p = dir_offset;
  for (uint64_t i = 0; i < count; ++i) {
    if (p + 46 > n || npz_u32(&b[p]) != 0x02014b50) throw Error(path + ": corrupt zip directory entry");
    NpzEntry e;
    e.method = npz_u16(&b[p + 10]);
    e.crc = npz_u32(&b[p + 16]);
    e.compressed = npz_u32(&b[p + 20]);
    e.uncompressed = npz_u32(&b[p + 24]);
    const size_t name_len = npz_u16(&b[p + 28]), extra_len = npz_u16(&b[p + 30]), comment_len = npz_u16(&b[p + 32]);
    e.offset = npz_u32(&b[p + 42]);
    if (p + 46 + name_len + extra_len + comment_len > n) throw Error(path + ": corrupt zip directory entry");
    e.name.assign(reinterpret_cast<const char*>(&b[p + 46]), name_len);
    // zip64 extended information: the fields that were 0xffffffff, in this order
    for (size_t q = p + 46 + name_len; q + 4 <= p + 46 + name_len + extra_len;) {
      const uint32_t id = npz_u16(&b[q]), size = npz_u16(&b[q + 2]);
      if (q + 4 + size > p + 46 + name_len + extra_len) break;
      if (id == 0x0001) {
        size_t r = q + 4;
        const size_t end = q + 4 + size;
        if (e.uncompressed == 0xffffffff && r + 8 <= end) e.uncompressed = npz_u64(&b[r]), r += 8;
        if (e.compressed == 0xffffffff && r + 8 <= end) e.compressed = npz_u64(&b[r]), r += 8;
        if (e.offset == 0xffffffff && r + 8 <= end) e.offset = npz_u64(&b[r]), r += 8;
      }
      q += 4 + size;
    }
    entries.push_back(e);
    p += 46 + name_len + extra_len + comment_len;
  }
  return entries;
}

// The uncompressed bytes of one entry, its CRC checked.
std::string npz_entry_bytes(const std::string& path, const std::vector<unsigned char>& b, const NpzEntry& e) {
  const std::string where = path + ": array " + e.name;
  if (e.offset + 30 > b.size() || npz_u32(&b[e.offset]) != 0x04034b50) throw Error(where + ": corrupt zip entry header");
  const uint64_t data = e.offset + 30 + npz_u16(&b[e.offset + 26]) + npz_u16(&b[e.offset + 28]);
  if (data > b.size() || e.compressed > b.size() - data) throw Error(where + ": truncated zip entry");
  if (e.uncompressed > (uint64_t{1} << 36)) throw Error(where + ": entry too large");
  std::string out;
  if (e.method == 0) {
    if (e.compressed != e.uncompressed) throw Error(where + ": stored entry with inconsistent sizes");
    out.assign(reinterpret_cast<const char*>(&b[data]), e.compressed);
  } else if (e.method == 8) {
    out.resize(e.uncompressed);
    z_stream z{};
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK) throw Error(where + ": zlib initialisation failed");
    z.next_in = const_cast<Bytef*>(&b[data]);
    z.avail_in = static_cast<uInt>(std::min<uint64_t>(e.compressed, 0xffffffffu));
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(std::min<uint64_t>(e.uncompressed, 0xffffffffu));
    const int rc = inflate(&z, Z_FINISH);
    const uint64_t produced = z.total_out;
    inflateEnd(&z);
    if (rc != Z_STREAM_END || produced != e.uncompressed) throw Error(where + ": corrupt deflate data");
  } else {
    throw Error(where + ": unsupported zip compression method " + std::to_string(e.method));
  }
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t done = 0; done < out.size();) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(out.size() - done, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(out.data() + done), chunk);
    done += chunk;
  }
  if (static_cast<uint32_t>(crc) != e.crc) throw Error(where + ": CRC mismatch");
  return out;
}

// The value text of `key` in a .npy header dict ("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }").
std::string npy_header_value(const std::string& header, const std::string& key, const std::string& where) {
  const std::string quoted = "'" + key + "'";
  size_t p = header.find(quoted);
  if (p == std::string::npos) throw Error(where + ": .npy header without '" + key + "'");
  p = header.find(':', p + quoted.size());
  if (p == std::string::npos) throw Error(where + ": malformed .npy header");
  ++p;
  while (p < header.size() && header[p] == ' ') ++p;
  size_t end = p;
  if (p < header.size() && (header[p] == '(' || header[p] == '\'')) {
    const char close = header[p] == '(' ? ')' : '\'';
    end = header.find(close, p + 1);
    if (end == std::string::npos) throw Error(where + ": malformed .npy header");
    ++end;
  } else {
    while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
  }
  return header.substr(p, end - p);
}

// One .npy array -> float64 tensor of its shape. Little-endian float64 / float32, C order only.
torch::Tensor npy_parse(const std::string& bytes, const std::string& where) {
  if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0) throw Error(where + ": not a .npy array");
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  const int major = u[6];
  size_t header_len = 0, start = 0;
  if (major == 1) {
    header_len = npz_u16(u + 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw Error(where + ": truncated .npy header");
    header_len = npz_u32(u + 8);
    start = 12;
  } else {
    throw Error(where + ": unsupported .npy format version " + std::to_string(major));
  }
  if (start + header_len > bytes.size()) throw Error(where + ": truncated .npy header");
  const std::string header = bytes.substr(start, header_len);
  const std::string descr = npy_header_value(header, "descr", where);
  const std::string fortran = npy_header_value(header, "fortran_order", where);
  const std::string shape_text = npy_header_value(header, "shape", where);
  if (fortran != "False") throw Error(where + ": Fortran-ordered array (fortran_order " + fortran + "); expected C order");
  torch::ScalarType dtype;
  size_t item = 0;
  if (descr == "'<f8'") {
    dtype = torch::kFloat64;
    item = 8;
  } else if (descr == "'<f4'") {
    dtype = torch::kFloat32;
    item = 4;
  } else {
    throw Error(where + ": dtype " + descr + " (expected little-endian float64 '<f8' or float32 '<f4')");
  }
  if (shape_text.size() < 2 || shape_text.front() != '(' || shape_text.back() != ')')
    throw Error(where + ": malformed shape " + shape_text);
  std::vector<int64_t> shape;
  std::stringstream dims(shape_text.substr(1, shape_text.size() - 2));
  std::string dim;
  while (std::getline(dims, dim, ',')) {
    dim.erase(std::remove(dim.begin(), dim.end(), ' '), dim.end());
    if (dim.empty()) continue;
    if (dim.size() > 12 || dim.find_first_not_of("0123456789") != std::string::npos)
      throw Error(where + ": malformed shape " + shape_text);
    shape.push_back(std::stoll(dim));
  }
  uint64_t count = 1;
  for (const int64_t d : shape) count *= static_cast<uint64_t>(d);
  const size_t data = start + header_len;
  if (bytes.size() - data != count * item)
    throw Error(where + ": " + std::to_string(bytes.size() - data) + " data bytes for shape " + shape_text + " (expected " +
                std::to_string(count * item) + ")");
  torch::Tensor t = torch::empty(shape, dtype);
  if (count) std::memcpy(t.data_ptr(), bytes.data() + data, count * item);
  return t.to(torch::kFloat64);
}

// A .npy (format 1.0) of a float64 C-order tensor, its header padded to 64 bytes as numpy writes it.
std::string npy_bytes(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU, torch::kFloat64).contiguous();
  std::string shape = "(";
  for (int64_t i = 0; i < c.dim(); ++i) shape += std::to_string(c.size(i)) + (c.dim() == 1 ? "," : (i + 1 < c.dim() ? ", " : ""));
  shape += ")";
  std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  npz_put16(out, static_cast<uint32_t>(header.size()));
  out += header;
  out.append(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()) * 8);
  return out;
}

std::string npz_deflate(const std::string& data, const std::string& where) {
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw Error(where + ": zlib initialisation failed");
  std::string out(deflateBound(&z, static_cast<uLong>(data.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) throw Error(where + ": deflate failed");
  return out;
}

}  // namespace

CleanFidExtractorPtr load_clean_fid_extractor(const std::string& path, const torch::Device& device) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw Error(path + ": Inception TorchScript file not found (or not a regular file)");
  torch::jit::Module module;
  try {
    require_regular_file(path, "Inception TorchScript file");
    module = torch::jit::load(path, device);
  } catch (const c10::Error& e) {
    throw Error(path + ": not a loadable TorchScript file: " + e.what_without_backtrace());
  }
  module.eval();
  return std::make_shared<CleanFidExtractor>(std::move(module), device, path);
}

torch::Tensor clean_fid_resize(const torch::Tensor& images) {
  if (images.dim() != 4 || images.size(1) != 3 || images.scalar_type() != torch::kUInt8)
    throw Error("clean_fid_resize: expected uint8 images shaped (N, 3, H, W)");
  const torch::Tensor cpu = images.to(torch::kCPU);
  torch::Tensor out = torch::empty({images.size(0), 3, kCleanFidSize, kCleanFidSize}, torch::kFloat32);  // (N, 3, 299, 299)
  // one (image, channel) plane per task: the resize is the CPU cost of FID on large images
  at::parallel_for(0, images.size(0) * 3, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t i = k / 3, c = k % 3;
      out[i][c].copy_(
          pil_resize_float(cpu[i][c].to(torch::kFloat32), kCleanFidSize, kCleanFidSize, PilFilter::kBicubic).clamp(0, 255));
    }
  });
  return out;
}

torch::Tensor clean_fid_features(CleanFidExtractor& extractor, const torch::Tensor& images) {
  return extractor.features(clean_fid_resize(images));
}

std::vector<std::string> clean_fid_list_images(const std::string& folder) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw Error(folder + ": not a folder");
  std::vector<std::string> files;
  fs::recursive_directory_iterator it(folder, fs::directory_options::follow_directory_symlink, ec), end;
  if (ec) throw Error(folder + ": cannot list the folder (" + ec.message() + ")");
  for (; it != end; it.increment(ec)) {
    if (ec) throw Error(folder + ": cannot list the folder (" + ec.message() + ")");
    const fs::path& p = it->path();
    const std::string name = p.filename().string();
    if (!name.empty() && name[0] == '.') {  // glob skips hidden names, files and folders
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    const std::string extension = p.extension().string();
    if (clean_fid_is_png(extension)) {
      files.push_back(p.string());
    } else if (clean_fid_is_other_image(extension) && !it->is_directory(ec)) {
      throw Error(p.string() + ": clean-fid would include this image, but only PNG images are read here");
    }
  }
  if (ec) throw Error(folder + ": cannot list the folder (" + ec.message() + ")");
  std::sort(files.begin(), files.end());
  if (files.empty()) throw Error(folder + ": no .png images in the folder");
  return files;
}

torch::Tensor clean_fid_folder_features(CleanFidExtractor& extractor, const std::string& folder, int64_t batch_size,
                                        std::vector<std::string>* files_out) {
  if (batch_size < 1) throw Error("clean_fid_folder_features: the batch size must be >= 1");
  const std::vector<std::string> files = clean_fid_list_images(folder);
  std::vector<torch::Tensor> features;
  for (size_t first = 0; first < files.size(); first += static_cast<size_t>(batch_size)) {
    const size_t last = std::min(files.size(), first + static_cast<size_t>(batch_size));
    std::vector<torch::Tensor> resized(last - first);
    // images read and resized in parallel (a corrupt file's error is rethrown here, naming it)
    at::parallel_for(0, static_cast<int64_t>(last - first), 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const std::string& file = files[first + static_cast<size_t>(k)];
        resized[static_cast<size_t>(k)] = clean_fid_resize(clean_fid_rgb(read_png(file), file).unsqueeze(0));  // (1, 3, 299, 299)
      }
    });
    features.push_back(extractor.features(torch::cat(resized, 0)));
  }
  if (files_out) *files_out = files;
  return torch::cat(features, 0);  // (N, D)
}

FeatureStatistics clean_fid_folder_statistics(CleanFidExtractor& extractor, const std::string& folder, int64_t batch_size) {
  const torch::Tensor features = clean_fid_folder_features(extractor, folder, batch_size, nullptr);
  if (features.size(0) < 2)
    throw Error(folder + ": FID statistics need at least 2 images, found " + std::to_string(features.size(0)));
  return feature_statistics(features);
}

FeatureStatistics read_fid_statistics(const std::string& path) {
  const std::vector<unsigned char> bytes = npz_read_file(path);
  const std::vector<NpzEntry> entries = npz_directory(path, bytes);
  const auto array = [&](const std::string& name) {
    for (const NpzEntry& e : entries)
      if (e.name == name + ".npy") return npy_parse(npz_entry_bytes(path, bytes, e), path + ": array " + name);
    std::string names;
    for (const NpzEntry& e : entries) names += (names.empty() ? "" : ", ") + e.name;
    throw Error(path + ": no array '" + name + "' in the statistics file (it holds: " + (names.empty() ? "nothing" : names) +
                ")");
  };
  FeatureStatistics s;
  s.mean = array("mu");
  s.covariance = array("sigma");
  if (s.mean.dim() != 1 || s.mean.size(0) < 1)
    throw Error(path + ": array mu has shape " + c10::str(s.mean.sizes()) + ", expected (D,)");
  const int64_t d = s.mean.size(0);
  if (s.covariance.dim() != 2 || s.covariance.size(0) != d || s.covariance.size(1) != d)
    throw Error(path + ": array sigma has shape " + c10::str(s.covariance.sizes()) + ", expected (" + std::to_string(d) + ", " +
                std::to_string(d) + ") for mu of shape (" + std::to_string(d) + ",)");
  if (!torch::isfinite(s.mean).all().item<bool>()) throw Error(path + ": array mu holds NaN or infinite values");
  if (!torch::isfinite(s.covariance).all().item<bool>()) throw Error(path + ": array sigma holds NaN or infinite values");
  return s;
}

void write_fid_statistics(const std::string& path, const FeatureStatistics& statistics) {
  if (!statistics.mean.defined() || statistics.mean.dim() != 1 || !statistics.covariance.defined() ||
      statistics.covariance.dim() != 2 || statistics.covariance.size(0) != statistics.mean.size(0) ||
      statistics.covariance.size(1) != statistics.mean.size(0))
    throw Error(path + ": statistics to write must be mu (D,) and sigma (D, D)");
  std::string zip, directory;
  int entries = 0;
  for (const auto& [name, tensor] : {std::pair<std::string, torch::Tensor>{"mu.npy", statistics.mean},
                                     std::pair<std::string, torch::Tensor>{"sigma.npy", statistics.covariance}}) {
    const std::string raw = npy_bytes(tensor);
    const std::string packed = npz_deflate(raw, path);
    if (raw.size() >= 0xffffffffu || zip.size() >= 0xffffffffu)
      throw Error(path + ": statistics too large for a zip without zip64");
    const uint32_t crc =
        static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(raw.data()), static_cast<uInt>(raw.size())));
    const uint32_t offset = static_cast<uint32_t>(zip.size());
    // local file header: version 20, no flags, deflate, DOS time 0 / date 1980-01-01
    npz_put32(zip, 0x04034b50);
    npz_put16(zip, 20);
    npz_put16(zip, 0);
    npz_put16(zip, 8);
    npz_put16(zip, 0);
    npz_put16(zip, 0x21);
    npz_put32(zip, crc);
    npz_put32(zip, static_cast<uint32_t>(packed.size()));
    npz_put32(zip, static_cast<uint32_t>(raw.size()));
    npz_put16(zip, static_cast<uint32_t>(name.size()));
    npz_put16(zip, 0);
    zip += name;
    zip += packed;
    // central directory entry
    npz_put32(directory, 0x02014b50);
    npz_put16(directory, 20);
    npz_put16(directory, 20);
    npz_put16(directory, 0);
    npz_put16(directory, 8);
    npz_put16(directory, 0);
    npz_put16(directory, 0x21);
    npz_put32(directory, crc);
    npz_put32(directory, static_cast<uint32_t>(packed.size()));
    npz_put32(directory, static_cast<uint32_t>(raw.size()));
    npz_put16(directory, static_cast<uint32_t>(name.size()));
    npz_put16(directory, 0);
    npz_put16(directory, 0);
    npz_put16(directory, 0);
    npz_put16(directory, 0);
    npz_put32(directory, 0);
    npz_put32(directory, offset);
    directory += name;
    ++entries;
  }
  const uint32_t directory_offset = static_cast<uint32_t>(zip.size());
  zip += directory;
  npz_put32(zip, 0x06054b50);
  npz_put16(zip, 0);
  npz_put16(zip, 0);
  npz_put16(zip, static_cast<uint32_t>(entries));
  npz_put16(zip, static_cast<uint32_t>(entries));
  npz_put32(zip, static_cast<uint32_t>(directory.size()));
  npz_put32(zip, directory_offset);
  npz_put16(zip, 0);
  write_file_atomically(path, [&](std::ostream& out) { out.write(zip.data(), static_cast<std::streamsize>(zip.size())); });
}

}  // namespace ilf
