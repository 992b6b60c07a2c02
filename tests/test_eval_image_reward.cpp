// ImageReward end to end on the Debian build, with no Python: the tiny random model of
// tests/data/metrics/image_reward_tiny/ (made by tests/metrics/make_image_reward_test_data.py with the
// image-reward package) is loaded from its ImageReward.pt / med_config.json / vocab.txt and must give the
// rewards and the WordPiece ids recorded in expected.json, which the package and transformers'
// BertTokenizer (as the package builds it) computed; and broken files must give errors that name the
// file and the tensor. The full parity check against the package is tests/metrics/check_image_reward.py.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "ilf/error.h"
#include "ilf/eval/bert_tokenizer.h"
#include "ilf/eval/image_reward.h"
#include "ilf/io/safetensors.h"
#include "test_helpers.h"

using namespace ilf;

namespace {

std::string ir_tiny(const std::string& name) { return test::data_path("metrics/image_reward_tiny/" + name); }

ImageRewardFiles ir_tiny_files() {
  return {ir_tiny("ImageReward.safetensors"), ir_tiny("vocab.txt"), ir_tiny("med_config.json")};
}

nlohmann::json ir_expected() {
  std::ifstream in(ir_tiny("expected.json"));
  return nlohmann::json::parse(in);
}

// The test pattern of make_image_reward_test_data.py: (3x + 5y + 70c + (x * y) % 17) % 256, uint8 (3, H, W).
torch::Tensor ir_pattern(int64_t width, int64_t height) {
  torch::Tensor image = torch::empty({3, height, width}, torch::kUInt8);
  auto a = image.accessor<uint8_t, 3>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x) a[c][y][x] = static_cast<uint8_t>((3 * x + 5 * y + 70 * c + (x * y) % 17) % 256);
  return image;
}

// ImageReward.safetensors with one change, written to the test's scratch folder.
std::string ir_modified_weights(const std::string& name, const std::function<void(TensorMap&)>& change) {
  TensorMap tensors = read_safetensors(ir_tiny("ImageReward.safetensors")).tensors;
  change(tensors);
  const std::string path = test::scratch_dir("image_reward_" + name) + "/ImageReward.safetensors";
  write_safetensors(path, tensors);
  return path;
}

}  // namespace

TEST(ImageReward, WordPieceIdsEqualTransformersBertTokenizer) {
  // The expected ids were computed by transformers' BertTokenizer (4.46.3, built as image-reward's
  // init_tokenizer builds it, on this vocab.txt) with the package's call: padding="max_length",
  // truncation=True, max_length=35 (make_image_reward_test_data.py).
  const BertTokenizer tokenizer(ir_tiny("vocab.txt"), 35);
  const nlohmann::json expected = ir_expected();
  ASSERT_GE(expected["tokens"].size(), 10u);
  for (const auto& item : expected["tokens"]) {
    const std::string prompt = item["prompt"].get<std::string>();
    const BertTokens tokens = tokenizer.tokenize({prompt});
    const auto ids = item["input_ids"].get<std::vector<int64_t>>();
    const auto mask = item["attention_mask"].get<std::vector<int64_t>>();
    EXPECT_TRUE(torch::equal(tokens.input_ids[0], torch::tensor(ids, torch::kInt64))) << prompt << ": " << tokens.input_ids;
    EXPECT_TRUE(torch::equal(tokens.attention_mask[0], torch::tensor(mask, torch::kInt64))) << prompt;
  }
  // [DEC] and [ENC] follow the vocabulary, as add_special_tokens numbers them.
  EXPECT_EQ(tokenizer.id_of("[DEC]"), tokenizer.vocab_size() - 2);
  EXPECT_EQ(tokenizer.id_of("[ENC]"), tokenizer.vocab_size() - 1);
}

TEST(ImageReward, RewardsEqualThePackageOnImagesOfSeveralSizes) {
  const ImageRewardModelPtr model = load_image_reward(ir_tiny_files(), torch::kCPU);
  const nlohmann::json expected = ir_expected();
  std::vector<double> ours, reference;
  for (const auto& item : expected["scores"]) {
    const torch::Tensor image = ir_pattern(item["width"].get<int64_t>(), item["height"].get<int64_t>()).unsqueeze(0);
    ours.push_back(image_reward_scores(*model, image, {item["prompt"].get<std::string>()}).item<double>());
    reference.push_back(item["reward"].get<double>());
  }
  const double error = test::relative_error(torch::tensor(ours, torch::kFloat64), torch::tensor(reference, torch::kFloat64));
  std::cout << "[ImageReward] rewards of " << ours.size() << " images: max relative error " << error << " to the package\n";
  EXPECT_LE(error, 1e-5) << "ours " << torch::tensor(ours) << " package " << torch::tensor(reference);
  // A batch gives each image's own reward.
  std::vector<torch::Tensor> images;
  std::vector<std::string> prompts;
  for (size_t i = 0; i < 3; ++i) {
    images.push_back(ir_pattern(224, 224));
    prompts.push_back(expected["scores"][i]["prompt"].get<std::string>());
  }
  const torch::Tensor batch = image_reward_scores(*model, torch::stack(images), prompts);
  ASSERT_EQ(batch.sizes(), torch::IntArrayRef({3}));
  EXPECT_EQ(batch.scalar_type(), torch::kFloat64);
  EXPECT_LE(
      test::relative_error(batch, torch::tensor(std::vector<double>(reference.begin(), reference.begin() + 3), torch::kFloat64)),
      1e-5);
}

TEST(ImageReward, BrokenFilesGiveErrorsNamingTheFileAndTheTensor) {
  ImageRewardFiles files = ir_tiny_files();
  files.weights = ir_tiny("no_such_ImageReward.pt");
  std::string message = test::error_of([&] { load_image_reward(files, torch::kCPU); });
  EXPECT_NE(message.find("no_such_ImageReward.pt"), std::string::npos) << message;

  const std::string missing_key = "blip.text_encoder.encoder.layer.0.crossattention.self.key.weight";
  files.weights = ir_modified_weights("missing", [&](TensorMap& t) { t.erase(missing_key); });
  message = test::error_of([&] { load_image_reward(files, torch::kCPU); });
  EXPECT_NE(message.find(files.weights), std::string::npos) << message;
  EXPECT_NE(message.find(missing_key), std::string::npos) << message;

  const std::string bad_key = "blip.visual_encoder.blocks.0.attn.qkv.weight";
  files.weights = ir_modified_weights("shape", [&](TensorMap& t) { t[bad_key] = torch::zeros({5, 64}); });
  message = test::error_of([&] { load_image_reward(files, torch::kCPU); });
  EXPECT_NE(message.find(files.weights), std::string::npos) << message;
  EXPECT_NE(message.find(bad_key), std::string::npos) << message;
  EXPECT_NE(message.find("[5, 64]"), std::string::npos) << message;

  // The start of a torch.save zip whose data.pkl opens with an OrderedDict (the package's ImageReward.pt):
  // refused at once, naming the converter.
  files.weights = test::scratch_dir("image_reward_ordered_dict") + "/ImageReward.pt";
  std::ofstream(files.weights, std::ios::binary) << std::string("PK\x03\x04", 4) << std::string(60, ' ')
                                                 << "\x80\x02"
                                                    "ccollections\nOrderedDict\nq\x00)Rq\x01";
  message = test::error_of([&] { load_image_reward(files, torch::kCPU); });
  EXPECT_NE(message.find(files.weights), std::string::npos) << message;
  EXPECT_NE(message.find("OrderedDict"), std::string::npos) << message;
  EXPECT_NE(message.find("scripts/convert_image_reward.py"), std::string::npos) << message;

  files = ir_tiny_files();
  files.vocab = ir_tiny("med_config.json");  // no [CLS] in it
  message = test::error_of([&] { load_image_reward(files, torch::kCPU); });
  EXPECT_NE(message.find("med_config.json"), std::string::npos) << message;
  EXPECT_NE(message.find("[PAD]"), std::string::npos) << message;

  files = ir_tiny_files();
  files.med_config = "";  // the package's bert-base configuration does not fit the tiny weights
  message = test::error_of([&] { load_image_reward(files, torch::kCPU); });
  EXPECT_NE(message.find("ImageReward.safetensors"), std::string::npos) << message;
  EXPECT_NE(message.find("word_embeddings"), std::string::npos) << message;
}

TEST(ImageReward, ATorchSaveFileOfAPlainDictLoadsLikeTheSafetensors) {
  // torch::pickle_save writes what torch.save writes for a dict of tensors; pickle_load reads it back.
  // (The package's own ImageReward.pt is an OrderedDict, which LibTorch cannot read:
  // tests/metrics/check_image_reward.py checks that the error names scripts/convert_image_reward.py.)
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& [name, tensor] : read_safetensors(ir_tiny("ImageReward.safetensors")).tensors) dict.insert(name, tensor);
  const std::vector<char> bytes = torch::pickle_save(dict);
  ImageRewardFiles files = ir_tiny_files();
  files.weights = test::scratch_dir("image_reward_pickle") + "/ImageReward.pt";
  std::ofstream(files.weights, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  const torch::Tensor image = ir_pattern(224, 224).unsqueeze(0);
  const torch::Tensor a = image_reward_scores(*load_image_reward(files, torch::kCPU), image, {"a photo of a cat"});
  const torch::Tensor b = image_reward_scores(*load_image_reward(ir_tiny_files(), torch::kCPU), image, {"a photo of a cat"});
  EXPECT_TRUE(torch::equal(a, b)) << a << " " << b;
}

TEST(ImageReward, PreprocessingCropsTheCentreOfA224Image) {
  // A 224 x 224 image is not resized: the pixels are (x / 255 - mean) / std.
  const torch::Tensor image = ir_pattern(224, 224);
  const torch::Tensor pixels = image_reward_pixels(image.unsqueeze(0));
  ASSERT_EQ(pixels.sizes(), torch::IntArrayRef({1, 3, 224, 224}));
  const torch::Tensor mean =
      torch::tensor({0.48145466, 0.4578275, 0.40821073}, torch::kFloat64).to(torch::kFloat32).view({3, 1, 1});
  const torch::Tensor std =
      torch::tensor({0.26862954, 0.26130258, 0.27577711}, torch::kFloat64).to(torch::kFloat32).view({3, 1, 1});
  EXPECT_TRUE(torch::equal(pixels[0], (image.to(torch::kFloat32).div(255) - mean) / std));
  EXPECT_NE(test::error_of([] {
              image_reward_pixels(torch::zeros({1, 4, 8, 8}, torch::kUInt8));
            }).find("(N, 3, H, W)"),
            std::string::npos);
}
