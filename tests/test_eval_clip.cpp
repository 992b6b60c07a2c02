// CLIP score / CLIP-IQA and the CLIP tokenizer on the committed tiny CLIP folder
// (tests/data/metrics/clip_tiny, made by tests/metrics/make_clip_test_data.py): what must hold without
// Python: shapes, the documented score ranges, 77-token truncation, tokens as transformers gives them, and
// errors that name the file. Parity with the reference packages is tests/metrics/check_clip.py.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>

#include "ilf/error.h"
#include "ilf/eval/clip.h"
#include "ilf/eval/clip_tokenizer.h"
#include "ilf/io/safetensors.h"
#include "test_helpers.h"

namespace {

namespace fs = std::filesystem;

std::string clip_tiny() { return ilf::test::data_path("metrics/clip_tiny"); }

std::vector<int64_t> row(const torch::Tensor& t) {
  auto c = t.contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

std::string copy_of_clip_tiny(const std::string& name) {
  const std::string dir = ilf::test::scratch_dir(name);
  for (const auto& entry : fs::directory_iterator(clip_tiny()))
    fs::copy_file(entry.path(), dir + "/" + entry.path().filename().string());
  return dir;
}

TEST(EvalClip, TokensEqualTransformersOnTheTinyVocabulary) {
  auto model = ilf::load_clip_model(clip_tiny(), torch::kCPU);
  // Expected ids printed by tests/metrics/make_clip_test_data.py: transformers 5.24's CLIPTokenizer
  // loaded from this folder (bos 1512, eos 1513).
  const std::vector<std::pair<std::string, std::vector<int64_t>>> cases = {
      {"a photo of a cat", {1512, 320, 1125, 539, 320, 66, 536, 1513}},
      {"It's a DOG's life!", {1512, 585, 568, 320, 639, 326, 568, 970, 256, 1513}},
      {"numbers 123 and 4.5", {1512, 1156, 758, 612, 272, 273, 274, 537, 275, 269, 276, 1513}},
      {"  whitespace\t\truns  ", {1512, 573, 529, 68, 588, 804, 81, 569, 338, 1513}},
      {"\xc3\x85ngstr\xc3\xb6m caf\xc3\xa9",
       {1512, 127, 98, 77, 70, 807, 127, 114, 332, 66, 702, 127, 358, 1513}},  // "Ångström café"
  };
  for (const auto& [prompt, ids] : cases) EXPECT_EQ(row(ilf::clip_tokens(*model, {prompt})), ids) << prompt;
  // a batch is padded with <|endoftext|> to its longest prompt
  const auto batch = ilf::clip_tokens(*model, {"a cat", "a photo of a cat"});
  ASSERT_EQ(batch.sizes(), (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(batch[0][batch.size(1) - 1].item<int64_t>(), 1513);
}

TEST(EvalClip, TokensFromTheGzEqualOpenClip) {
  // tests/data/metrics/clip_tiny_bpe.txt.gz: open_clip's format, CLIP's first 1,000 merges and a repeated
  // filler merge (tests/metrics/make_clip_test_data.py). Expected ids printed by that script: open_clip
  // 3.3's SimpleTokenizer(bpe_path=that file).encode(prompt) and its tokenize() of the long prompt.
  const auto tokenizer = ilf::ClipTokenizer::from_bpe_gz(ilf::test::data_path("metrics/clip_tiny_bpe.txt.gz"));
  EXPECT_EQ(tokenizer.vocab_size(), 49408 - 47893);  // the 47,894 filler merges give one token, at its last id
  EXPECT_EQ(tokenizer.bos_id(), 49406);
  EXPECT_EQ(tokenizer.eos_id(), 49407);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> cases = {
      {"a photo of a cat", {320, 1125, 539, 320, 66, 536}},
      {"It's a DOG's life!", {585, 568, 320, 639, 326, 568, 970, 256}},
      {"numbers 123 and 4.5", {1156, 758, 612, 272, 273, 274, 537, 275, 269, 276}},
      {"  whitespace\t\truns  ", {573, 529, 68, 588, 804, 81, 569, 338}},
      {"\xc3\x85ngstr\xc3\xb6m caf\xc3\xa9", {127, 98, 77, 70, 807, 127, 114, 332, 66, 702, 127, 358}},  // "Ångström café"
  };
  for (const auto& [prompt, ids] : cases) EXPECT_EQ(tokenizer.encode(prompt), ids) << prompt;
  std::string prompt;
  for (int i = 0; i < 6; ++i) prompt += "a highly detailed photograph of a majestic lion ";
  const auto tokens = tokenizer.encode_open_clip({prompt, "a cat"});
  ASSERT_EQ(tokens.sizes(), (std::vector<int64_t>{2, 77}));
  EXPECT_EQ(row(tokens[0].slice(0, 74)), (std::vector<int64_t>{322, 554, 49407}));
  EXPECT_EQ(tokens[0][0].item<int64_t>(), 49406);
  // "a cat": the word ids of "a photo of a cat" above (BPE works word by word), then eot and 0 padding
  EXPECT_EQ(row(tokens[1].slice(0, 0, 6)), (std::vector<int64_t>{49406, 320, 66, 536, 49407, 0}));
}

TEST(EvalClip, LongPromptsAreCutTo77TokensWithoutTheEndToken) {
  auto model = ilf::load_clip_model(clip_tiny(), torch::kCPU);
  std::string prompt;
  for (int i = 0; i < 6; ++i) prompt += "a highly detailed photograph of a majestic lion ";  // 116 tokens here (transformers)
  const auto tokens = ilf::clip_tokens(*model, {prompt, "a cat"});
  ASSERT_EQ(tokens.sizes(), (std::vector<int64_t>{2, 77}));
  EXPECT_EQ(tokens[0][0].item<int64_t>(), 1512);
  EXPECT_FALSE((tokens[0] == 1513).any().item<bool>());  // torchmetrics cuts the processor's output
  EXPECT_EQ(static_cast<int64_t>(ilf::clip_tokenizer(*model).encode(prompt).size()), 114);
  const auto embeddings = ilf::clip_text_embeddings(*model, {prompt});
  EXPECT_EQ(embeddings.sizes(), (std::vector<int64_t>{1, 8}));
  EXPECT_TRUE(torch::isfinite(embeddings).all().item<bool>());
}

TEST(EvalClip, ShapesAndScoreRanges) {
  auto model = ilf::load_clip_model(clip_tiny(), torch::kCPU);
  torch::manual_seed(0);
  const auto images = torch::randint(0, 256, {3, 3, 40, 50}, torch::kUInt8);
  const std::vector<std::string> prompts = {"a cat", "a dog on a sofa", "red"};
  const auto image_embeddings = ilf::clip_image_embeddings(*model, images);
  EXPECT_EQ(image_embeddings.sizes(), (std::vector<int64_t>{3, 8}));
  EXPECT_EQ(ilf::clip_pixel_values(*model, images).sizes(), (std::vector<int64_t>{3, 3, 32, 32}));
  EXPECT_EQ(ilf::clip_text_embeddings(*model, prompts).sizes(), (std::vector<int64_t>{3, 8}));
  const auto raw = ilf::clip_scores_unclamped(*model, images, prompts);
  const auto scores = ilf::clip_scores(*model, images, prompts);
  ASSERT_EQ(scores.sizes(), (std::vector<int64_t>{3}));
  EXPECT_EQ(scores.scalar_type(), torch::kFloat64);
  EXPECT_TRUE(((raw >= -100.0001) & (raw <= 100.0001)).all().item<bool>()) << raw;
  EXPECT_TRUE(torch::equal(scores, raw.clamp_min(0)));
  const auto iqa = ilf::clip_iqa_scores(*model, images);
  ASSERT_EQ(iqa.sizes(), (std::vector<int64_t>{3, 4}));
  EXPECT_TRUE(((iqa >= 0) & (iqa <= 1)).all().item<bool>()) << iqa;
  // an image scored alone scores as in the batch
  EXPECT_NEAR(ilf::clip_scores_unclamped(*model, images.slice(0, 1, 2), {prompts[1]}).item<double>(), raw[1].item<double>(),
              1e-4);
  EXPECT_THROW(ilf::clip_scores(*model, images, {"one prompt"}), ilf::Error);
  const auto none = torch::zeros({0, 3, 40, 50}, torch::kUInt8);
  EXPECT_EQ(ilf::clip_scores(*model, none, {}).sizes(), (std::vector<int64_t>{0}));
  EXPECT_EQ(ilf::clip_iqa_scores(*model, none).sizes(), (std::vector<int64_t>{0, 4}));
  EXPECT_THROW(ilf::clip_image_embeddings(*model, images.to(torch::kFloat32)), ilf::Error);
}

TEST(EvalClip, ResizeKeepsAnUnchangedAxisAndHitsTheSize) {
  torch::manual_seed(1);
  const auto image = torch::randint(0, 256, {3, 32, 45}, torch::kUInt8);
  EXPECT_TRUE(torch::equal(ilf::clip_resize_bicubic_uint8(image, 32, 45), image));
  EXPECT_EQ(ilf::clip_resize_bicubic_uint8(image, 32, 20).sizes(), (std::vector<int64_t>{3, 32, 20}));
  EXPECT_EQ(ilf::clip_resize_bicubic_uint8(image, 70, 45).sizes(), (std::vector<int64_t>{3, 70, 45}));
  // a constant image stays (about) constant: the 16-bit weights of each output sum to 1 within rounding
  const auto flat = torch::full({3, 17, 23}, 200, torch::kUInt8);
  const auto resized = ilf::clip_resize_bicubic_uint8(flat, 32, 41).to(torch::kInt32);
  EXPECT_LE((resized - 200).abs().max().item<int>(), 1);
}

TEST(EvalClip, MissingOrMisshapedFilesAreNamed) {
  {
    const std::string dir = copy_of_clip_tiny("clip_missing_weights");
    fs::remove(dir + "/model.safetensors");
    const std::string e = ilf::test::error_of([&] { ilf::load_clip_model(dir, torch::kCPU); });
    EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
    EXPECT_NE(e.find(dir), std::string::npos) << e;
  }
  {
    const std::string dir = copy_of_clip_tiny("clip_missing_vocab");
    fs::remove(dir + "/vocab.json");
    const std::string e = ilf::test::error_of([&] { ilf::load_clip_model(dir, torch::kCPU); });
    EXPECT_NE(e.find("vocab.json"), std::string::npos) << e;
  }
  {
    const std::string dir = copy_of_clip_tiny("clip_wrong_shape");
    auto tensors = ilf::read_safetensors(dir + "/model.safetensors").tensors;
    tensors["text_projection.weight"] = torch::zeros({8, 15});
    ilf::write_safetensors(dir + "/model.safetensors", tensors);
    const std::string e = ilf::test::error_of([&] { ilf::load_clip_model(dir, torch::kCPU); });
    EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
    EXPECT_NE(e.find("text_projection.weight"), std::string::npos) << e;
  }
  {
    const std::string dir = copy_of_clip_tiny("clip_missing_key");
    auto tensors = ilf::read_safetensors(dir + "/model.safetensors").tensors;
    tensors.erase("vision_model.post_layernorm.bias");
    ilf::write_safetensors(dir + "/model.safetensors", tensors);
    const std::string e = ilf::test::error_of([&] { ilf::load_clip_model(dir, torch::kCPU); });
    EXPECT_NE(e.find("vision_model.post_layernorm.bias"), std::string::npos) << e;
  }
  const std::string e = ilf::test::error_of([] { ilf::ClipTokenizer::from_bpe_gz("/nonexistent/bpe_simple_vocab_16e6.txt.gz"); });
  EXPECT_NE(e.find("bpe_simple_vocab_16e6.txt.gz"), std::string::npos) << e;
}

}  // namespace
