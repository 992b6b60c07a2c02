// Training data: Fashion-MNIST idx reading and padding, safetensors shards (content, epoch order,
// validation), and the DataLoader's batch layout over ranks, micro-batches and read-ahead.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <torch/torch.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>

#include "ilf/error.h"
#include "ilf/io/image.h"
#include "ilf/pipelines/data_preparation.h"
#include "ilf/training/datasets.h"
#include "test_helpers.h"
#include "tool_test_support.h"
#include "training_test_support.h"

namespace ilf {
namespace {

namespace fs = std::filesystem;

const char* kFashionFolder = "/usr/share/datasets/fashion-mnist";

// Shards whose latents hold the sample's global index everywhere: (N, 2, 2, 2), labels = index % 10.
std::shared_ptr<ShardDataset> indexed_shards(const std::string& folder, const std::vector<int64_t>& sizes) {
  int64_t start = 0;
  for (size_t k = 0; k < sizes.size(); ++k) {
    const torch::Tensor index = torch::arange(start, start + sizes[k], torch::kFloat32);
    ConditionInputs condition;
    condition.class_labels = torch::arange(start, start + sizes[k], torch::kLong).remainder(10);
    write_shard(folder + "/part-" + std::to_string(k) + ".safetensors",
                index.view({-1, 1, 1, 1}).expand({sizes[k], 2, 2, 2}).contiguous().to(torch::kFloat16), condition);
    start += sizes[k];
  }
  return std::make_shared<ShardDataset>(folder, /*cache_shards=*/2);
}

TEST(Datasets, FashionMnistIsPaddedTo32WithMinusOneAndScaledToUnitRange) {
  if (!std::filesystem::exists(std::string(kFashionFolder) + "/t10k-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  FashionMnistDataset data(kFashionFolder, "test");
  ASSERT_EQ(data.size(), 10000);
  const torch::Tensor raw = read_idx_file(std::string(kFashionFolder) + "/t10k-images-idx3-ubyte.gz");  // (N, 28, 28)
  const TrainingBatch batch = data.load({0, 9999, 17});
  ASSERT_EQ(batch.x0.sizes(), (std::vector<int64_t>{3, 1, 32, 32}));
  EXPECT_LE(batch.x0.max().item<float>(), 1.0f);
  EXPECT_GE(batch.x0.min().item<float>(), -1.0f);
  // The border is background (-1); the centre is the image scaled from [0, 255].
  const torch::Tensor centre = batch.x0.slice(2, 2, 30).slice(3, 2, 30);  // (3, 1, 28, 28)
  EXPECT_TRUE(torch::all(batch.x0.slice(2, 0, 2) == -1).item<bool>());
  EXPECT_TRUE(torch::all(batch.x0.slice(3, 30, 32) == -1).item<bool>());
  const torch::Tensor expected = raw.index_select(0, torch::tensor({0, 9999, 17})).to(torch::kFloat32) / 127.5 - 1.0;
  EXPECT_TRUE(torch::allclose(centre.squeeze(1), expected));
  EXPECT_EQ(batch.condition.class_labels.sizes(), (std::vector<int64_t>{3}));
  EXPECT_GE(batch.condition.class_labels.min().item<int64_t>(), 0);
  EXPECT_LT(batch.condition.class_labels.max().item<int64_t>(), 10);
}

TEST(Datasets, IdxReaderRejectsAFileWithoutTheIdxMagic) {
  const std::string dir = test::scratch_dir("datasets_idx");
  std::ofstream(dir + "/bad.idx") << "this is not an idx file";
  try {
    read_idx_file(dir + "/bad.idx");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.idx"), std::string::npos);
  }
}

TEST(Datasets, ShardsReturnTheRequestedSamplesAcrossShardBoundaries) {
  const std::string dir = test::scratch_dir("datasets_shards");
  auto data = indexed_shards(dir, {5, 3, 7});
  EXPECT_EQ(data->size(), 15);
  EXPECT_EQ(data->num_shards(), 3);
  EXPECT_EQ(data->sample_shape(), (std::vector<int64_t>{2, 2, 2}));
  const std::vector<int64_t> want = {14, 0, 6, 5, 4, 8, 1, 9, 13, 7};  // touches every shard, more than cache_shards
  const TrainingBatch batch = data->load(want);
  ASSERT_EQ(batch.x0.scalar_type(), torch::kFloat32);
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(torch::all(batch.x0[i] == static_cast<float>(want[i])).item<bool>()) << "sample " << want[i];
    EXPECT_EQ(batch.condition.class_labels[i].item<int64_t>(), want[i] % 10);
  }
}

TEST(Datasets, ShardEpochOrderIsASeededPermutationThatChangesEachEpoch) {
  const std::string dir = test::scratch_dir("datasets_order");
  auto data = indexed_shards(dir, {5, 3, 7});
  const auto a = data->epoch_order(3, 0), b = data->epoch_order(3, 0), c = data->epoch_order(3, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(std::set<int64_t>(a.begin(), a.end()).size(), 15u);
  EXPECT_EQ(*std::min_element(a.begin(), a.end()), 0);
  EXPECT_EQ(*std::max_element(a.begin(), a.end()), 14);
  // Samples of one shard stay together (sequential reading).
  auto shard_of = [](int64_t i) { return i < 5 ? 0 : i < 8 ? 1 : 2; };
  int changes = 0;
  for (size_t i = 1; i < a.size(); ++i) changes += shard_of(a[i]) != shard_of(a[i - 1]);
  EXPECT_EQ(changes, 2);
}

TEST(Datasets, CaptionShardsCarryCaptionsAndMasks) {
  const std::string dir = test::scratch_dir("datasets_captions");
  ConditionInputs condition;
  condition.caption = torch::randn({4, 6, 8});
  condition.caption_mask = torch::tensor({{1, 1, 0, 0, 0, 0}, {1, 1, 1, 1, 1, 1}, {1, 0, 0, 0, 0, 0}, {1, 1, 1, 0, 0, 0}});
  write_shard(dir + "/a.safetensors", torch::randn({4, 4, 2, 2}), condition);
  ShardDataset data(dir);
  EXPECT_TRUE(data.has_captions());
  const TrainingBatch batch = data.load({2, 0});
  EXPECT_TRUE(torch::equal(batch.condition.caption[0], condition.caption[2]));
  EXPECT_TRUE(torch::equal(batch.condition.caption_mask[1], condition.caption_mask[0]));
  EXPECT_FALSE(batch.condition.class_labels.defined());
}

TEST(Datasets, ShardsWithDifferentSampleShapesAreRejectedNamingTheFile) {
  const std::string dir = test::scratch_dir("datasets_mismatch");
  ConditionInputs condition;
  condition.class_labels = torch::zeros({2}, torch::kLong);
  write_shard(dir + "/a.safetensors", torch::zeros({2, 4, 2, 2}), condition);
  write_shard(dir + "/b.safetensors", torch::zeros({2, 4, 3, 3}), condition);
  try {
    ShardDataset data(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("b.safetensors"), std::string::npos) << e.what();
  }
}

// The samples (and sample ids) of global step `step` in the order of positions p = (micro * W + rank) * B + i.
std::vector<int64_t> global_step_samples(DatasetPtr data, int64_t B, int64_t W, int64_t A, int64_t step,
                                         std::vector<int64_t>* ids = nullptr) {
  std::vector<int64_t> all;
  for (int64_t micro = 0; micro < A; ++micro) {
    for (int64_t rank = 0; rank < W; ++rank) {
      DataLoaderOptions o;
      o.seed = 5, o.batch_size = B, o.grad_accum = A, o.rank = rank, o.world_size = W, o.read_ahead = 0;
      DataLoader loader(data, o);
      std::vector<int64_t> sample_ids;
      const auto idx = loader.indices(step, micro, &sample_ids);
      all.insert(all.end(), idx.begin(), idx.end());
      if (ids) ids->insert(ids->end(), sample_ids.begin(), sample_ids.end());
    }
  }
  return all;
}

TEST(Datasets, OneRankWithBatch2BTwoRanksWithBAndAccumulationSeeTheSameSamples) {
  const std::string dir = test::scratch_dir("datasets_layout");
  auto data = indexed_shards(dir, {10, 10, 10});
  for (int64_t step : {0, 2, 3, 7}) {  // 3 steps per epoch: also crosses epochs
    std::vector<int64_t> ids1, ids2, ids3;
    const auto one = global_step_samples(data, 8, 1, 1, step, &ids1);
    const auto two = global_step_samples(data, 4, 2, 1, step, &ids2);
    const auto accum = global_step_samples(data, 4, 1, 2, step, &ids3);
    EXPECT_EQ(one, two);
    EXPECT_EQ(one, accum);
    EXPECT_EQ(ids1, ids2);
    EXPECT_EQ(ids1, ids3);
    EXPECT_EQ(ids1.front(), step * 8);
  }
  // An epoch visits distinct samples.
  std::set<int64_t> epoch;
  for (int64_t step = 0; step < 3; ++step)
    for (auto i : global_step_samples(data, 4, 2, 1, step)) epoch.insert(i);
  EXPECT_EQ(epoch.size(), 24u);
}

TEST(Datasets, ReadAheadServesTheSameBatchesAsDirectLoading) {
  const std::string dir = test::scratch_dir("datasets_read_ahead");
  auto data = indexed_shards(dir, {9, 9});
  DataLoaderOptions o;
  o.seed = 1, o.batch_size = 3, o.grad_accum = 2, o.read_ahead = 3;
  DataLoader ahead(data, o);
  o.read_ahead = 0;
  DataLoader direct(data, o);
  // In order, then a jump (as after resuming), then in order again.
  const std::vector<std::pair<int64_t, int64_t>> requests = {{0, 0}, {0, 1}, {1, 0}, {1, 1}, {5, 1}, {6, 0}, {6, 1}};
  for (auto [step, micro] : requests) {
    const TrainingBatch a = ahead.next(step, micro), b = direct.next(step, micro);
    EXPECT_EQ(a.indices, b.indices);
    EXPECT_EQ(a.sample_ids, b.sample_ids);
    EXPECT_TRUE(torch::equal(a.x0, b.x0));
  }
}

TEST(Datasets, ADataSetSmallerThanOneGlobalBatchIsAnError) {
  const std::string dir = test::scratch_dir("datasets_small");
  auto data = indexed_shards(dir, {5});
  DataLoaderOptions o;
  o.batch_size = 4, o.world_size = 2;
  try {
    DataLoader loader(data, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("global batch (8"), std::string::npos) << e.what();
  }
}

TEST(Datasets, PrepareDataBuildsLabelledLatentShardsFromAnImageFolder) {
  // Constant-colour images of several sizes in two class folders; the stand-in encoder averages 8x8
  // blocks, so every latent value is the colour in [-1, 1] times the latent scale.
  const std::string root = test::scratch_dir("datasets_prepare");
  const std::map<std::string, std::vector<std::pair<int, std::vector<int64_t>>>> classes = {
      {"boots", {{40, {40, 24}}, {200, {24, 24}}}}, {"coats", {{90, {30, 50}}, {10, {16, 17}}, {255, {64, 32}}}}};
  std::map<int, int64_t> label_of_pixel;
  int64_t label = 0;
  for (const auto& [name, images] : classes) {
    std::filesystem::create_directories(root + "/images/" + name);
    for (const auto& [pixel, hw] : images) {
      write_png(root + "/images/" + name + "/" + std::to_string(pixel) + ".png",
                torch::full({3, hw[0], hw[1]}, pixel / 127.5 - 1.0));
      label_of_pixel[pixel] = label;
    }
    ++label;
  }
  const auto child =
      test::spawn_process({std::string(ILF_BINARY_DIR) + "/ilf_prepare_data", "--images", root + "/images",
                           "--labels-from-folders", "--vae-encoder", test::data_path("tiny_vae_encoder.pt"), "--resolution", "16",
                           "--latent-scale", "0.5", "--shard-size", "2", "--dtype", "f32", "--out", root + "/shards"},
                          {}, root + "/prepare.log");
  ASSERT_EQ(test::wait_process(child), 0) << test::read_text(root + "/prepare.log");

  ShardDataset data(root + "/shards");
  EXPECT_EQ(data.size(), 5);
  EXPECT_EQ(data.num_shards(), 3);
  EXPECT_EQ(data.sample_shape(), (std::vector<int64_t>{4, 2, 2}));
  const TrainingBatch batch = data.load({0, 1, 2, 3, 4});
  std::set<int> seen;
  for (int64_t i = 0; i < 5; ++i) {
    const float value = batch.x0[i][0][0][0].item<float>();
    const int pixel = static_cast<int>(std::lround((value / 0.5 + 1.0) * 127.5));
    ASSERT_TRUE(label_of_pixel.count(pixel)) << "latent " << value;
    seen.insert(pixel);
    EXPECT_TRUE(torch::allclose(batch.x0[i], torch::full({4, 2, 2}, (pixel / 127.5 - 1.0) * 0.5), 0, 1e-6));
    EXPECT_EQ(batch.condition.class_labels[i].item<int64_t>(), label_of_pixel.at(pixel));
  }
  EXPECT_EQ(seen.size(), 5u);
  EXPECT_TRUE(std::filesystem::exists(root + "/shards/classes.json"));
}

TEST(HardeningOverflow, PrepareDataWithAHugeShardSizeWritesOneShardOfEveryImage) {
  // (n + shard_size - 1) / shard_size overflowed at 2^63-1: "1 shard" was logged and none written.
  const std::string root = test::scratch_dir("hardening_prepare_shard_size");
  for (const auto& [name, pixel] : std::vector<std::pair<std::string, int>>{{"a", 10}, {"b", 200}, {"b", 90}}) {
    std::filesystem::create_directories(root + "/images/" + name);
    write_png(root + "/images/" + name + "/" + std::to_string(pixel) + ".png", torch::full({3, 16, 16}, pixel / 127.5 - 1.0));
  }
  const std::vector<std::string> common = {std::string(ILF_BINARY_DIR) + "/ilf_prepare_data",
                                           "--images",
                                           root + "/images",
                                           "--labels-from-folders",
                                           "--vae-encoder",
                                           test::data_path("tiny_vae_encoder.pt"),
                                           "--resolution",
                                           "16",
                                           "--dtype",
                                           "f32",
                                           "--out",
                                           root + "/shards"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = common;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  // A batch beyond what can run is a usage error naming --batch; nothing is written.
  const auto refused = test::spawn_process(with({"--batch", "9223372036854775807"}), {}, root + "/refused.log");
  EXPECT_EQ(test::wait_process(refused), 2) << test::read_text(root + "/refused.log");
  EXPECT_NE(test::read_text(root + "/refused.log").find("--batch"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(root + "/shards"));

  const auto child = test::spawn_process(with({"--shard-size", "9223372036854775807"}), {}, root + "/prepare.log");
  ASSERT_EQ(test::wait_process(child), 0) << test::read_text(root + "/prepare.log");
  EXPECT_NE(test::read_text(root + "/prepare.log").find("1 shard of up to 3"), std::string::npos)
      << test::read_text(root + "/prepare.log");
  ShardDataset data(root + "/shards");
  EXPECT_EQ(data.num_shards(), 1);
  EXPECT_EQ(data.size(), 3);
}

// ---------------------------------------------------------------------------------------------
// Bad idx files: sizes bounded by the header before allocation, a gzip stream needs its trailer.

// Found by fuzzing (tests/fuzz/corpus/idx/regression-*): a LibTorch error without the file escaped.
TEST(HardeningFuzzFindings, AnIdxZeroDimensionBeforeHugeOnesIsRefusedNotAStrideOverflow) {
  // 6 dimensions: 0, then five of about 2^32: no data, but strides beyond int64 (a LibTorch error).
  const std::string path = test::scratch_dir("fuzz_idx") + "/zero-dim.idx";
  const unsigned char bytes[] = {0,    0,    8,    6,    0,    0,    0,    0, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                                 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbd, 0, 0,    8,    3,    0,    0,    0xff};
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes), sizeof bytes);
  const std::string message = test::any_error_of([&] { read_idx_file(path); });
  EXPECT_NE(message.find(path + ": the idx header declares more than the limit"), std::string::npos) << message;
}

// An idx file of `declared` dims holding `bytes` data bytes, gzip-compressed (optionally without the trailer).
std::string write_idx(const std::string& path, const std::vector<uint32_t>& declared, size_t bytes, bool trailer = true) {
  std::string raw = {0, 0, 8, static_cast<char>(declared.size())};
  for (uint32_t d : declared)
    for (int s = 24; s >= 0; s -= 8) raw.push_back(static_cast<char>((d >> s) & 0xff));
  raw += std::string(bytes, '\x07');
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, raw.data(), static_cast<unsigned>(raw.size()));
  gzclose(f);
  if (!trailer) std::filesystem::resize_file(path, std::filesystem::file_size(path) - 8);
  return path;
}

TEST(HardeningLimits, IdxDataIsBoundedByItsHeaderAndGzipNeedsItsTrailer) {
  const std::string dir = test::scratch_dir("hardening_idx");
  EXPECT_EQ(read_idx_file(write_idx(dir + "/ok.gz", {3, 4}, 12)).sizes().vec(), (std::vector<int64_t>{3, 4}));
  // More data than declared (a bomb inflates far beyond its header): refused after the declared bytes.
  const std::string more = test::any_error_of([&] { read_idx_file(write_idx(dir + "/more.gz", {3, 4}, 1 << 20)); });
  EXPECT_NE(more.find("more.gz"), std::string::npos) << more;
  EXPECT_NE(more.find("more than 12"), std::string::npos) << more;
  // Declared dimensions beyond the limit: refused before allocating.
  const std::string huge = test::any_error_of([&] { read_idx_file(write_idx(dir + "/huge.gz", {60000, 60000, 28}, 16)); });
  EXPECT_NE(huge.find("limit"), std::string::npos) << huge;
  // A gzip stream without its 8-byte trailer.
  const std::string cut = test::any_error_of([&] { read_idx_file(write_idx(dir + "/cut.gz", {3, 4}, 12, /*trailer=*/false)); });
  EXPECT_NE(cut.find("cut.gz"), std::string::npos) << cut;
  EXPECT_NE(cut.find("trailer"), std::string::npos) << cut;
}

// ---------------------------------------------------------------------------------------------
// Round 2: ilf_prepare_data's inputs (caption files, PNG integrity, image sizes).

// Runs ilf_prepare_data on `images` with labels from folders (or captions); returns the exit status, the log in `log`.
int prepare(const std::string& images, const std::string& out, const std::string& log, const std::string& extra = "") {
  return test::run_tool_with_timeout("ilf_prepare_data",
                                     "--images " + images + " --vae-encoder " + test::data_path("tiny_vae_encoder.pt") +
                                         " --resolution 16 --dtype f32 --out " + out + " " + extra,
                                     log, 120);
}

TEST(HardeningInputs, PrepareDataRefusesACaptionFileThatIsAFolderOrAFifo) {
  const std::string root = test::scratch_dir("hardening_prepare_caption");
  fs::create_directories(root + "/images");
  write_png(root + "/images/a.png", torch::zeros({3, 16, 16}));
  fs::create_directories(root + "/images/a.txt");  // was read as an empty caption
  const std::string captions = "--captions --text-encoder " + test::data_path("t2i/text_encoder.pt") + " --tokenizer " +
                               test::data_path("t2i/tiny_spm.model") + " --max-tokens 6";
  EXPECT_EQ(prepare(root + "/images", root + "/shards", root + "/log.txt", captions), 1) << test::read_file(root + "/log.txt");
  std::string log = test::read_file(root + "/log.txt");
  EXPECT_NE(log.find(root + "/images/a.txt"), std::string::npos) << log;
  EXPECT_NE(log.find("directory"), std::string::npos) << log;
  fs::remove(root + "/images/a.txt");
  ASSERT_EQ(::mkfifo((root + "/images/a.txt").c_str(), 0644), 0);  // blocked forever
  EXPECT_EQ(prepare(root + "/images", root + "/shards", root + "/log.txt", captions), 1) << test::read_file(root + "/log.txt");
  log = test::read_file(root + "/log.txt");
  EXPECT_NE(log.find("fifo"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(root + "/shards/shard-000000.safetensors"));
}

TEST(HardeningInputs, PrepareDataChecksPngCrcsAndRefusesACorruptImageNamingIt) {
  const std::string root = test::scratch_dir("hardening_prepare_png_crc");
  fs::create_directories(root + "/images/c0");
  write_png(root + "/images/c0/a.png", torch::rand({3, 16, 16}) * 2 - 1);
  EXPECT_EQ(prepare(root + "/images", root + "/good", root + "/log.txt", "--labels-from-folders"), 0)
      << test::read_file(root + "/log.txt");
  std::string bytes = test::read_file(root + "/images/c0/a.png");
  const size_t idat = bytes.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  bytes[idat + 10] ^= 0x01;  // inside the compressed pixels; stb_image decoded it without a word
  std::ofstream(root + "/images/c0/a.png", std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_EQ(prepare(root + "/images", root + "/bad", root + "/log.txt", "--labels-from-folders"), 1)
      << test::read_file(root + "/log.txt");
  const std::string log = test::read_file(root + "/log.txt");
  EXPECT_NE(log.find(root + "/images/c0/a.png"), std::string::npos) << log;
  EXPECT_NE(log.find("CRC"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(root + "/bad/shard-000000.safetensors"));
}

TEST(HardeningLimits, PrepareDataRefusesAnImageWhoseSizeExceedsTheLimitBeforeDecodingIt) {
  // A PNG of 1 x 1,000,000 pixels (1 KB) took 2.6 GB: the resize to 16 x 16,000,000 is checked from the header.
  const std::string root = test::scratch_dir("hardening_prepare_huge_image");
  fs::create_directories(root + "/images/c0");
  write_png(root + "/images/c0/strip.png", torch::zeros({1, 1, 1000000}));
  ASSERT_LT(fs::file_size(root + "/images/c0/strip.png"), 20000u);
  EXPECT_EQ(prepare(root + "/images", root + "/shards", root + "/log.txt", "--labels-from-folders"), 1)
      << test::read_file(root + "/log.txt");
  std::string log = test::read_file(root + "/log.txt");
  EXPECT_NE(log.find(root + "/images/c0/strip.png"), std::string::npos) << log;
  EXPECT_NE(log.find("--max-image-pixels"), std::string::npos) << log;
  // The limit is a flag: a small image above a small limit is refused, below it accepted.
  fs::remove(root + "/images/c0/strip.png");
  write_png(root + "/images/c0/small.png", torch::zeros({3, 20, 20}));
  EXPECT_EQ(prepare(root + "/images", root + "/s1", root + "/log.txt", "--labels-from-folders --max-image-pixels 300"), 1)
      << test::read_file(root + "/log.txt");
  EXPECT_EQ(prepare(root + "/images", root + "/s2", root + "/log.txt", "--labels-from-folders --max-image-pixels 400"), 0)
      << test::read_file(root + "/log.txt");
}

// The check before every shard ilf_prepare_data writes. End to end it is no longer reached: the VAE
// refuses its own non-finite latents and --latent-scale has a range, so the values are handed to it.
TEST(HardeningNonFinite, APreparedShardWithNaNOrInfLatentsOrCaptionsIsRefusedNamingItAndNotWritten) {
  const std::string dir = test::scratch_dir("hardening_nonfinite_shard");
  const std::string path = dir + "/shard-000003.safetensors";
  const std::map<std::string, std::string> metadata = {{"resolution", "16"}};
  ConditionInputs labels;
  labels.class_labels = torch::tensor({0, 1}, torch::kLong);
  const torch::Tensor finite = torch::zeros({2, 4, 2, 2}, torch::kFloat16);
  torch::Tensor nan = finite.clone();
  nan[1][2][0][1] = std::numeric_limits<float>::quiet_NaN();
  const torch::Tensor f16_overflow = torch::full({2, 4, 2, 2}, 70000.0f).to(torch::kFloat16);  // inf in the stored dtype
  ConditionInputs captions;
  captions.caption = torch::zeros({2, 3, 8}, torch::kFloat16);
  captions.caption[0][1][5] = std::numeric_limits<float>::infinity();
  captions.caption_mask = torch::ones({2, 3}, torch::kLong);
  struct Case {
    torch::Tensor latents;
    ConditionInputs condition;
    std::string what;
  };
  for (const Case& c : std::vector<Case>{{nan, labels, ": latents of images 6 .. 7: holds 1 NaN or Inf value of 32"},
                                         {f16_overflow, labels, ": latents of images 6 .. 7: holds 32 NaN or Inf values of 32"},
                                         {finite, captions, ": caption features: holds 1 NaN or Inf value of 48"}}) {
    const std::string message =
        test::error_of([&] { write_prepared_shard(path, c.latents, c.condition, metadata, 6, "images/a/6.png"); });
    EXPECT_NE(message.find(path + c.what), std::string::npos) << message;
    EXPECT_NE(message.find("nothing written"), std::string::npos) << message;
    if (c.condition.class_labels.defined()) {
      EXPECT_NE(message.find("first image images/a/6.png"), std::string::npos) << message;
    }
    EXPECT_FALSE(fs::exists(path)) << message;
  }
  EXPECT_TRUE(fs::is_empty(dir));  // no partial file or temporary either
  // The same call with finite values writes the shard that the training reads.
  write_prepared_shard(path, finite, labels, metadata, 6, "images/a/6.png");
  ShardDataset data(dir);
  EXPECT_EQ(data.size(), 2);
}

}  // namespace
}  // namespace ilf
