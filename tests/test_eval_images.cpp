// The image side of the evaluation metrics without the reference packages (those comparisons are the
// parity checks in tests/metrics/, which need Python): reading PNGs and refusing broken ones by name,
// the clean-fid statistics files and their errors, the folder statistics on the tiny Inception
// stand-in (tests/data/metrics/inception_tiny.pt), LPIPS and SSIM on identical and different images,
// and PIL resize invariants.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "ilf/eval/clean_fid.h"
#include "ilf/eval/lpips.h"
#include "ilf/eval/pil_resize.h"
#include "ilf/io/image.h"
#include "test_helpers.h"
#include "tool_test_support.h"

using namespace ilf;
using ilf::test::data_path;
using ilf::test::error_of;
using ilf::test::scratch_dir;

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// (C, H, W) in [-1, 1] with every uint8 level reachable: (v / 127.5 - 1) for v = 0..255.
torch::Tensor image_from_bytes(const torch::Tensor& u8_chw) { return u8_chw.to(torch::kFloat32) / 127.5 - 1; }

// ---- a minimal .npz writer (stored zip entries) for files our writer would never produce ----------
void put16(std::string& s, uint32_t v) {
  s.push_back(static_cast<char>(v & 0xff));
  s.push_back(static_cast<char>((v >> 8) & 0xff));
}
void put32(std::string& s, uint32_t v) {
  put16(s, v & 0xffff);
  put16(s, v >> 16);
}

std::string npy(const std::string& descr, const std::string& shape, const std::string& data, bool fortran = false) {
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': " + shape + ", }";
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  put16(out, static_cast<uint32_t>(header.size()));
  return out + header + data;
}

std::string doubles(int64_t n, double value) {
  std::string s(static_cast<size_t>(n) * 8, '\0');
  for (int64_t i = 0; i < n; ++i) std::memcpy(&s[static_cast<size_t>(i) * 8], &value, 8);
  return s;
}

void write_stored_zip(const std::string& path, const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string zip, directory;
  for (const auto& [name, data] : entries) {
    const uint32_t crc =
        static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
    const uint32_t offset = static_cast<uint32_t>(zip.size());
    put32(zip, 0x04034b50);
    for (uint32_t v : {20u, 0u, 0u, 0u, 0x21u}) put16(zip, v);
    put32(zip, crc);
    put32(zip, static_cast<uint32_t>(data.size()));
    put32(zip, static_cast<uint32_t>(data.size()));
    put16(zip, static_cast<uint32_t>(name.size()));
    put16(zip, 0);
    zip += name + data;
    put32(directory, 0x02014b50);
    for (uint32_t v : {20u, 20u, 0u, 0u, 0u, 0x21u}) put16(directory, v);
    put32(directory, crc);
    put32(directory, static_cast<uint32_t>(data.size()));
    put32(directory, static_cast<uint32_t>(data.size()));
    put16(directory, static_cast<uint32_t>(name.size()));
    for (int i = 0; i < 4; ++i) put16(directory, 0);
    put32(directory, 0);
    put32(directory, offset);
    directory += name;
  }
  const uint32_t at = static_cast<uint32_t>(zip.size());
  zip += directory;
  put32(zip, 0x06054b50);
  put16(zip, 0);
  put16(zip, 0);
  put16(zip, static_cast<uint32_t>(entries.size()));
  put16(zip, static_cast<uint32_t>(entries.size()));
  put32(zip, static_cast<uint32_t>(directory.size()));
  put32(zip, at);
  put16(zip, 0);
  write_bytes(path, zip);
}

}  // namespace

TEST(EvalImagesPng, ReadPngReturnsWhatWritePngWrote) {
  const std::string dir = scratch_dir("eval_images_png_round_trip");
  torch::manual_seed(0);
  for (const int64_t channels : {1, 3}) {
    const torch::Tensor bytes = torch::randint(0, 256, {channels, 13, 21}, torch::kInt64).to(torch::kUInt8);  // (C, H, W)
    const std::string path = dir + "/image_" + std::to_string(channels) + ".png";
    write_png(path, image_from_bytes(bytes), {{"prompt", "a cat"}});
    const torch::Tensor read = read_png(path);  // (H, W, C)
    ASSERT_EQ(read.sizes(), (std::vector<int64_t>{13, 21, channels}));
    EXPECT_TRUE(torch::equal(read, bytes.permute({1, 2, 0}))) << path;
  }
}

TEST(EvalImagesPng, FlippedByteGivesACrcErrorNamingTheFileAndChunk) {
  const std::string dir = scratch_dir("eval_images_png_crc");
  const std::string path = dir + "/flipped.png";
  write_png(path, torch::zeros({3, 8, 8}));
  std::string bytes = read_bytes(path);
  const size_t idat = bytes.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  bytes[idat + 6] = static_cast<char>(bytes[idat + 6] ^ 0x01);  // a byte of the compressed data
  write_bytes(path, bytes);
  const std::string message = error_of([&] { read_png(path); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("CRC mismatch in PNG chunk IDAT"), std::string::npos) << message;
}

TEST(EvalImagesPng, TruncatedSixteenBitAndNonPngFilesAreRefusedByName) {
  const std::string dir = scratch_dir("eval_images_png_bad");
  const std::string good = dir + "/good.png";
  write_png(good, torch::zeros({3, 8, 8}));
  const std::string bytes = read_bytes(good);
  const std::string truncated = dir + "/truncated.png";
  write_bytes(truncated, bytes.substr(0, bytes.size() - 20));
  std::string message = error_of([&] { read_png(truncated); });
  EXPECT_NE(message.find(truncated + ": truncated PNG"), std::string::npos) << message;

  const std::string text = dir + "/text.png";
  write_bytes(text, "hello, not an image");
  message = error_of([&] { read_png(text); });
  EXPECT_NE(message.find(text + ": not a PNG file"), std::string::npos) << message;

  // the same file with IHDR's bit depth set to 16 (and its CRC recomputed)
  std::string deep = bytes;
  deep[8 + 8 + 8] = 16;
  const uint32_t crc = static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(&deep[12]), 17));
  for (int i = 0; i < 4; ++i) deep[29 + i] = static_cast<char>((crc >> (24 - 8 * i)) & 0xff);
  const std::string sixteen = dir + "/sixteen.png";
  write_bytes(sixteen, deep);
  message = error_of([&] { read_png(sixteen); });
  EXPECT_NE(message.find(sixteen + ": 16-bit PNG is not supported"), std::string::npos) << message;
}

TEST(EvalImagesPng, DirectoryAndFifoAreRefusedWithoutBlocking) {
  const std::string dir = scratch_dir("eval_images_png_special");
  const std::string folder = dir + "/folder.png";
  std::filesystem::create_directories(folder);
  std::string message = error_of([&] { read_png(folder); });
  EXPECT_NE(message.find(folder + ": not a regular file (a directory)"), std::string::npos) << message;
  const std::string fifo = dir + "/pipe.png";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  message = error_of([&] { read_png(fifo); });  // would block forever on open() without O_NONBLOCK
  EXPECT_NE(message.find(fifo + ": not a regular file (a FIFO)"), std::string::npos) << message;
  message = error_of([&] { read_png(dir + "/missing.png"); });
  EXPECT_NE(message.find(dir + "/missing.png: cannot open"), std::string::npos) << message;
}

TEST(EvalImagesFidStatistics, WrittenFileReadsBackExactly) {
  const std::string dir = scratch_dir("eval_images_npz_round_trip");
  FeatureStatistics s;
  s.mean = torch::randn({5}, torch::kFloat64);
  const torch::Tensor m = torch::randn({5, 5}, torch::kFloat64);
  s.covariance = m.matmul(m.t());
  write_fid_statistics(dir + "/stats.npz", s);
  const FeatureStatistics r = read_fid_statistics(dir + "/stats.npz");
  EXPECT_TRUE(torch::equal(r.mean, s.mean));
  EXPECT_TRUE(torch::equal(r.covariance, s.covariance));
}

TEST(EvalImagesFidStatistics, BadFilesAreRefusedNamingTheFileAndArray) {
  const std::string dir = scratch_dir("eval_images_npz_bad");
  const std::string mu = npy("<f8", "(4,)", doubles(4, 1.0));
  struct Case {
    std::string name;
    std::vector<std::pair<std::string, std::string>> entries;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"wrong_shape",
       {{"mu.npy", mu}, {"sigma.npy", npy("<f8", "(4, 3)", doubles(12, 0.5))}},
       "array sigma has shape [4, 3], expected (4, 4)"},
      {"vector_sigma", {{"mu.npy", mu}, {"sigma.npy", npy("<f8", "(16,)", doubles(16, 0.5))}}, "array sigma has shape [16]"},
      {"matrix_mu",
       {{"mu.npy", npy("<f8", "(2, 2)", doubles(4, 1.0))}, {"sigma.npy", npy("<f8", "(4, 4)", doubles(16, 0.5))}},
       "array mu has shape [2, 2], expected (D,)"},
      {"missing_sigma", {{"mu.npy", mu}}, "no array 'sigma'"},
      {"integer_mu",
       {{"mu.npy", npy("<i8", "(4,)", doubles(4, 1.0))}, {"sigma.npy", npy("<f8", "(4, 4)", doubles(16, 0.5))}},
       "array mu: dtype '<i8'"},
      {"fortran_sigma",
       {{"mu.npy", mu}, {"sigma.npy", npy("<f8", "(4, 4)", doubles(16, 0.5), true)}},
       "array sigma: Fortran-ordered"},
      {"short_data", {{"mu.npy", mu}, {"sigma.npy", npy("<f8", "(4, 4)", doubles(15, 0.5))}}, "array sigma: 120 data bytes"},
  };
  for (const Case& c : cases) {
    const std::string path = dir + "/" + c.name + ".npz";
    write_stored_zip(path, c.entries);
    const std::string message = error_of([&] { read_fid_statistics(path); });
    EXPECT_NE(message.find(path + ": "), std::string::npos) << c.name << ": " << message;
    EXPECT_NE(message.find(c.expected), std::string::npos) << c.name << ": " << message;
  }
  // a good stored file reads (the same writer, so the cases above fail for the reason named)
  write_stored_zip(dir + "/good.npz", {{"mu.npy", mu}, {"sigma.npy", npy("<f8", "(4, 4)", doubles(16, 0.5))}});
  EXPECT_EQ(read_fid_statistics(dir + "/good.npz").covariance.sizes(), (std::vector<int64_t>{4, 4}));
  const std::string text = dir + "/text.npz";
  write_bytes(text, "not a zip file at all, just some text of some length");
  EXPECT_NE(error_of([&] { read_fid_statistics(text); }).find(text + ": not a .npz file"), std::string::npos);
}

TEST(EvalImagesCleanFid, FolderStatisticsWithTheTinyInceptionAndFolderErrors) {
  const std::string dir = scratch_dir("eval_images_clean_fid");
  const CleanFidExtractorPtr extractor = load_clean_fid_extractor(data_path("metrics/inception_tiny.pt"), torch::kCPU);
  torch::manual_seed(1);
  const std::string folder = dir + "/images";
  std::filesystem::create_directories(folder + "/sub");
  for (int i = 0; i < 4; ++i)
    write_png(folder + (i == 2 ? "/sub" : "") + "/img" + std::to_string(i) + ".png", torch::rand({3, 40 + i, 50}) * 2 - 1);
  std::vector<std::string> files;
  const torch::Tensor features = clean_fid_folder_features(*extractor, folder, 3, &files);  // (4, 2048)
  ASSERT_EQ(features.sizes(), (std::vector<int64_t>{4, 2048}));
  EXPECT_TRUE(torch::isfinite(features).all().item<bool>());
  EXPECT_EQ(files.back(), folder + "/sub/img2.png");  // sorted by path, as clean-fid's sorted(glob)
  // batch size does not change the features beyond float round-off
  EXPECT_LT(test::relative_error(clean_fid_folder_features(*extractor, folder, 1), features), 1e-5);
  const FeatureStatistics s = clean_fid_folder_statistics(*extractor, folder, 2);
  EXPECT_EQ(s.covariance.sizes(), (std::vector<int64_t>{2048, 2048}));
  const std::string stats = dir + "/stats.npz";
  write_fid_statistics(stats, s);
  const FeatureStatistics back = read_fid_statistics(stats);
  EXPECT_TRUE(torch::equal(back.mean, s.mean) && torch::equal(back.covariance, s.covariance));

  write_bytes(folder + "/broken.png", "\x89PNG\r\n\x1a\n garbage");
  std::string message = error_of([&] { clean_fid_folder_statistics(*extractor, folder, 2); });
  EXPECT_NE(message.find(folder + "/broken.png"), std::string::npos) << message;
  std::filesystem::remove(folder + "/broken.png");
  write_bytes(folder + "/photo.jpg", "jpeg");
  message = error_of([&] { clean_fid_folder_statistics(*extractor, folder, 2); });
  EXPECT_NE(message.find(folder + "/photo.jpg: clean-fid would include this image"), std::string::npos) << message;
  std::filesystem::create_directories(dir + "/empty");
  message = error_of([&] { clean_fid_folder_statistics(*extractor, dir + "/empty", 2); });
  EXPECT_NE(message.find(dir + "/empty: no .png images"), std::string::npos) << message;
  message = error_of([&] { load_clean_fid_extractor(dir + "/none.pt", torch::kCPU); });
  EXPECT_NE(message.find(dir + "/none.pt"), std::string::npos) << message;
}

TEST(EvalImagesFidelity, LpipsOfIdenticalImagesIsZeroAndSsimIsOne) {
  const LpipsModelPtr lpips = load_lpips(data_path("metrics/lpips_alex_tiny.safetensors"), torch::kCPU);
  torch::manual_seed(2);
  const torch::Tensor a = torch::randint(0, 256, {2, 3, 64, 64}, torch::kInt64).to(torch::kUInt8);  // (N, 3, H, W)
  const torch::Tensor b =
      (a.to(torch::kInt64) + torch::randint(-30, 31, a.sizes(), torch::kInt64)).clamp(0, 255).to(torch::kUInt8);
  const torch::Tensor same = lpips_distances(*lpips, a, a);
  const torch::Tensor different = lpips_distances(*lpips, a, b);
  ASSERT_EQ(same.sizes(), (std::vector<int64_t>{2}));
  EXPECT_EQ(same.abs().max().item<double>(), 0.0);
  EXPECT_GT(different.min().item<double>(), 0.0);
  const torch::Tensor ssim_same = ssim_per_image(a, a), ssim_different = ssim_per_image(a, b);
  EXPECT_LT((ssim_same - 1).abs().max().item<double>(), 1e-6);
  EXPECT_LT(ssim_different.max().item<double>(), 0.99);
  EXPECT_NE(error_of([&] { ssim_per_image(a, b.slice(2, 0, 32)); }).find("ssim_per_image"), std::string::npos);
  const std::string message = error_of([&] { load_lpips(data_path("metrics/inception_tiny.pt"), torch::kCPU); });
  EXPECT_NE(message.find("inception_tiny.pt"), std::string::npos) << message;
}

TEST(EvalImagesPilResize, ConstantImagesStayConstantAndSameSizeIsACopy) {
  for (const PilFilter filter : {PilFilter::kNearest, PilFilter::kBilinear, PilFilter::kBicubic, PilFilter::kLanczos}) {
    const torch::Tensor grey = torch::full({17, 23, 3}, 77, torch::kUInt8);
    EXPECT_TRUE(torch::equal(pil_resize_uint8(grey, 40, 9, filter), torch::full({40, 9, 3}, 77, torch::kUInt8)));
    const torch::Tensor f = torch::full({17, 23}, 12.5f);
    EXPECT_LT((pil_resize_float(f, 5, 31, filter) - 12.5f).abs().max().item<float>(), 1e-4f);
    const torch::Tensor random = torch::randint(0, 256, {6, 7, 4}, torch::kInt64).to(torch::kUInt8);
    EXPECT_TRUE(torch::equal(pil_resize_uint8(random, 6, 7, filter), random));
  }
  EXPECT_NE(error_of([] {
              pil_resize_uint8(torch::zeros({4, 4, 2}, torch::kUInt8), 2, 2, PilFilter::kBicubic);
            }).find("pil_resize_uint8"),
            std::string::npos);
}

TEST(EvalImagesCleanFid, FidStatsToolWritesTheStatisticsOrNothing) {
  const std::string dir = scratch_dir("eval_images_fid_stats_tool");
  const std::string images = dir + "/images", out = dir + "/stats.npz", log = dir + "/log.txt";
  std::filesystem::create_directories(images);
  torch::manual_seed(3);
  for (int i = 0; i < 3; ++i) write_png(images + "/" + std::to_string(i) + ".png", torch::rand({3, 32, 24}) * 2 - 1);
  const std::string inception = data_path("metrics/inception_tiny.pt");
  ASSERT_EQ(
      test::run_tool("ilf_fid_stats", "--images " + images + " --inception " + inception + " --out " + out + " --batch 2", log),
      0)
      << test::read_file(log);
  const FeatureStatistics s = read_fid_statistics(out);
  EXPECT_EQ(s.mean.sizes(), (std::vector<int64_t>{2048}));
  // a corrupt PNG: exit 1, the file named, no statistics file left behind
  std::filesystem::remove(out);
  write_bytes(images + "/3.png", "\x89PNG\r\n\x1a\n truncated");
  EXPECT_EQ(test::run_tool("ilf_fid_stats", "--images " + images + " --inception " + inception + " --out " + out, log), 1);
  EXPECT_NE(test::read_file(log).find(images + "/3.png"), std::string::npos) << test::read_file(log);
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_EQ(test::run_tool("ilf_fid_stats", "--images " + images + " --out " + out, log), 2) << test::read_file(log);
}
