// Text-to-image (PixArt-alpha / PixArt-Sigma): the T5 tokenizer against spm_encode, the text encoder's
// cache and preprocessing, the VAE scaling, aspect-ratio bins and resize-and-crop, model folders, the
// null caption per family, guidance and seed properties, and ilf_sample --prompt end to end (prompt ->
// PNG whose metadata and block forwards match --plan). Test data: tests/data/t2i/
// (tests/data/make_t2i_test_data.py: a tiny SentencePiece model trained by spm_train, a tiny random
// TorchScript text encoder and VAE, and model folders over the reference tiny PixArt backbones).
// About 600 lines: every part of the text-to-image path reads the same tiny model folders built at the
// top, so its tests stay together.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "ilf/error.h"
#include "ilf/io/image.h"
#include "ilf/pipelines/model_folder.h"
#include "ilf/models/pixart.h"
#include "ilf/pipelines/loading.h"
#include "ilf/models/vae.h"
#include "ilf/sampling/guidance.h"
#include "ilf/sampling/solvers.h"
#include "ilf/pipelines/text_to_image.h"
#include "ilf/text/t5_tokenizer.h"
#include "ilf/text/text_encoder.h"
#include "test_helpers.h"
#include "tool_test_support.h"

using namespace ilf;
namespace fs = std::filesystem;

namespace {

std::string t2i_path(const std::string& name) { return test::data_path("t2i/" + name); }

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// Loads a tiny model folder with extra run-config settings (e.g. the sampling method).
struct TinyModel {
  TextToImageModel model;
};
TinyModel load_tiny(const std::string& folder, Json config = Json::object()) {
  const LoadedRunConfig loaded = load_tool_config(std::move(config), "test config", t2i_path(folder));
  TinyModel t;
  t.model = load_text_to_image_model(loaded.config, torch::kCPU, &*loaded.folder);
  return t;
}

// Runs ilf_sample with `args`; returns its exit code; stdout + stderr go to `log`.
int run_ilf_sample(const std::string& args, const std::string& log) {
  const std::string command =
      "cd " + std::string(ILF_SOURCE_DIR) + " && " + std::string(ILF_BINARY_DIR) + "/ilf_sample " + args + " > " + log + " 2>&1";
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// (width, height) from a PNG's signature and IHDR chunk; (0, 0) when the file is not a PNG.
std::pair<uint32_t, uint32_t> png_size(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char header[24] = {};
  in.read(reinterpret_cast<char*>(header), 24);
  const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (!in || std::memcmp(header, signature, 8) != 0 || std::memcmp(header + 12, "IHDR", 4) != 0) return {0, 0};
  auto be32 = [&](int o) {
    return (uint32_t(header[o]) << 24) | (uint32_t(header[o + 1]) << 16) | (uint32_t(header[o + 2]) << 8) | header[o + 3];
  };
  return {be32(16), be32(20)};
}

}  // namespace

// ---- Tokenizer --------------------------------------------------------------------------------

TEST(T5Tokenizer, MatchesSpmEncodeIds) {
  const T5Tokenizer tokenizer(t2i_path("tiny_spm.model"), 120);
  const std::vector<std::string> sentences = read_lines(t2i_path("sentences.txt"));
  const std::vector<std::string> expected = read_lines(t2i_path("spm_expected_ids.txt"));
  ASSERT_EQ(sentences.size(), expected.size());
  ASSERT_GE(sentences.size(), 6u);
  for (size_t i = 0; i < sentences.size(); ++i) {
    std::vector<int64_t> ids;
    std::istringstream line(expected[i]);
    for (int64_t id; line >> id;) ids.push_back(id);
    EXPECT_EQ(tokenizer.encode(sentences[i]), ids) << "sentence " << i << ": \"" << sentences[i] << "\"";
  }
  EXPECT_EQ(tokenizer.eos_id(), 1);
  EXPECT_EQ(tokenizer.pad_id(), 0);
}

TEST(T5Tokenizer, TruncatesPadsAndMasksLikeHuggingFaceT5) {
  const int64_t L = 6;
  const T5Tokenizer tokenizer(t2i_path("tiny_spm.model"), L);
  const std::vector<std::string> texts = {"a corgi wearing a red scarf on a long walk", "a cat", ""};
  const TokenizedBatch batch = tokenizer.tokenize(texts);
  ASSERT_TRUE(batch.input_ids.sizes().equals({3, L}));
  ASSERT_TRUE(batch.attention_mask.sizes().equals({3, L}));
  for (size_t b = 0; b < texts.size(); ++b) {
    std::vector<int64_t> expected = tokenizer.encode(texts[b]);  // pieces + </s>
    if (static_cast<int64_t>(expected.size()) > L) {
      expected.resize(L);
      expected.back() = tokenizer.eos_id();
    }
    const auto n = static_cast<int64_t>(expected.size());
    for (int64_t k = 0; k < L; ++k) {
      EXPECT_EQ(batch.input_ids[b][k].item<int64_t>(), k < n ? expected[k] : tokenizer.pad_id()) << b << "," << k;
      EXPECT_EQ(batch.attention_mask[b][k].item<int64_t>(), k < n ? 1 : 0) << b << "," << k;
    }
  }
  EXPECT_GT(static_cast<int64_t>(tokenizer.encode(texts[0]).size()), L);  // the first one was cut
  EXPECT_EQ(batch.attention_mask[2].sum().item<int64_t>(), 1);            // "" is </s> alone
}

TEST(T5Tokenizer, NormalizesWhitespaceAsSentencePieceDoes) {
  const T5Tokenizer tokenizer(t2i_path("tiny_spm.model"), 8);
  EXPECT_EQ(tokenizer.normalize("  an   astronaut  "),
            "\xe2\x96\x81"
            "an"
            "\xe2\x96\x81"
            "astronaut");
  EXPECT_EQ(tokenizer.normalize("   "), "");
}

TEST(T5Tokenizer, UnreadableModelsAreReportedWithTheirPath) {
  try {
    T5Tokenizer("/nonexistent/spiece.model", 8);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/spiece.model"), std::string::npos) << e.what();
  }
  const std::string junk = test::scratch_dir("t5_tokenizer_junk") + "/junk.model";
  write_text(junk, "this is not a sentencepiece model");
  try {
    T5Tokenizer(junk, 8);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(junk), std::string::npos) << e.what();
  }
}

TEST(T5Tokenizer, ReportsThePromptsWhoseIdsDifferFromARecordedTokenizer) {
  const T5Tokenizer tokenizer(t2i_path("tiny_spm.model"), 120);
  EXPECT_TRUE(tokenizer.mismatches(t2i_path("tokenizer_check.json")).empty());
  Json check = load_json_file(t2i_path("tokenizer_check.json"));
  check["input_ids"][1][0] = 7;  // another tokenizer's ids for the second prompt
  const std::string path = test::scratch_dir("t5_tokenizer_check") + "/check.json";
  write_text(path, check.dump());
  EXPECT_EQ(tokenizer.mismatches(path), (std::vector<std::string>{check["prompts"][1].get<std::string>()}));
  // Truncation follows max_length: with 5 tokens, the long prompt's first 4 pieces and </s>.
  check = {{"max_length", 5}, {"prompts", {"a very long caption about a cat sitting on a window sill"}}};
  std::vector<int64_t> ids = tokenizer.encode(check["prompts"][0]);
  ids.resize(5);
  ids.back() = tokenizer.eos_id();
  check["input_ids"] = {ids};
  write_text(path, check.dump());
  EXPECT_TRUE(tokenizer.mismatches(path).empty());
}

// ---- Text encoder -------------------------------------------------------------------------------

TEST(TextEncoder, CachesRepeatedPromptsAndMatchesAFreshEncoding) {
  TextEncoderOptions options;
  options.max_length = 10;
  TextEncoder encoder(t2i_path("text_encoder.pt"), t2i_path("tiny_spm.model"), options, torch::kCPU);
  const CaptionEmbeddings first = encoder.encode({"a corgi", "a cat", "a corgi"});
  ASSERT_TRUE(first.features.sizes().equals({3, 10, 32}));
  EXPECT_EQ(encoder.encoded_prompts(), 2);  // "a corgi" once
  EXPECT_TRUE(torch::equal(first.features[0], first.features[2]));
  const CaptionEmbeddings again = encoder.encode({"a cat"});
  EXPECT_EQ(encoder.encoded_prompts(), 2);  // from the cache
  EXPECT_TRUE(torch::equal(again.features[0], first.features[1]));
  EXPECT_TRUE(torch::equal(again.mask[0], first.mask[1]));

  options.cache_capacity = 0;  // the same prompt encoded alone, without a cache
  TextEncoder fresh(t2i_path("text_encoder.pt"), t2i_path("tiny_spm.model"), options, torch::kCPU);
  EXPECT_LT(test::relative_error(fresh.encode({"a cat"}).features[0], first.features[1]), 1e-6);
  fresh.encode({"a cat"});
  EXPECT_EQ(fresh.encoded_prompts(), 2);
}

TEST(TextEncoder, StripsAndLowerCasesPromptsLikeTheDiffusersPipelines) {
  TextEncoderOptions options;
  options.max_length = 10;
  TextEncoder encoder(t2i_path("text_encoder.pt"), t2i_path("tiny_spm.model"), options, torch::kCPU);
  EXPECT_EQ(encoder.preprocess("  A Corgi\t"), "a corgi");
  const CaptionEmbeddings e = encoder.encode({"  A Corgi ", "a corgi"});
  EXPECT_TRUE(torch::equal(e.features[0], e.features[1]));
  EXPECT_EQ(encoder.encoded_prompts(), 1);
  options.lowercase = false;
  TextEncoder raw(t2i_path("text_encoder.pt"), t2i_path("tiny_spm.model"), options, torch::kCPU);
  EXPECT_EQ(raw.preprocess("  A Corgi "), "  A Corgi ");
}

TEST(TorchScriptVae, ScalesLatentsByTheFamilyFactorBothWays) {
  TorchScriptVae vae(t2i_path("vae_decoder.pt"), t2i_path("vae_encoder.pt"), 0.13025, torch::kCPU);
  torch::jit::script::Module decoder = torch::jit::load(t2i_path("vae_decoder.pt"));
  torch::jit::script::Module encoder = torch::jit::load(t2i_path("vae_encoder.pt"));
  torch::manual_seed(0);
  const torch::Tensor z = torch::randn({2, 4, 3, 5});
  const torch::Tensor images = vae.decode(z);
  ASSERT_TRUE(images.sizes().equals({2, 3, 24, 40}));
  EXPECT_TRUE(torch::allclose(images, decoder.forward({z / 0.13025}).toTensor().clamp(-1, 1)));
  const torch::Tensor x = torch::rand({1, 3, 16, 32}) * 2 - 1;
  EXPECT_TRUE(torch::allclose(vae.encode(x), encoder.forward({x}).toTensor() * 0.13025));
  TorchScriptVae decoder_only(t2i_path("vae_decoder.pt"), "", 0.18215, torch::kCPU);
  EXPECT_FALSE(decoder_only.has_encoder());
  EXPECT_THROW(decoder_only.encode(x), Error);
  EXPECT_THROW(TorchScriptVae("/nonexistent/vae.pt", "", 0.18215, torch::kCPU), Error);
}

// ---- Sizes --------------------------------------------------------------------------------------

TEST(AspectRatioBins, NearestBinAndTheScaledTables) {
  const auto& bins1024 = aspect_ratio_bins(1024);
  const auto& bins512 = aspect_ratio_bins(512);
  const auto& bins256 = aspect_ratio_bins(256);
  ASSERT_EQ(bins1024.size(), bins512.size());
  ASSERT_EQ(bins1024.size(), bins256.size());
  for (size_t i = 0; i < bins1024.size(); ++i) {
    EXPECT_EQ(bins512[i].height * 2, bins1024[i].height);
    EXPECT_EQ(bins256[i].width * 4, bins1024[i].width);
    EXPECT_EQ(bins256[i].height % 16, 0);
  }
  EXPECT_TRUE(aspect_ratio_bins(64).empty());
  EXPECT_FALSE(aspect_ratio_bins(2048).empty());
  EXPECT_EQ(nearest_aspect_ratio_bin(1024, 1024, bins1024), (ImageSize{1024, 1024}));
  EXPECT_EQ(nearest_aspect_ratio_bin(512, 512, bins512), (ImageSize{512, 512}));
  // height / width = 0.5647: the 0.57 bin of diffusers' ASPECT_RATIO_1024_BIN is [768, 1344].
  EXPECT_EQ(nearest_aspect_ratio_bin(768, 1360, bins1024), (ImageSize{768, 1344}));
  EXPECT_EQ(nearest_aspect_ratio_bin(2000, 100, bins1024), (ImageSize{2048, 512}));  // beyond the last bin
}

TEST(ResizeAndCrop, CoversTheTargetThenCropsTheCentre) {
  const torch::Tensor images = torch::arange(2 * 3 * 4 * 8, torch::kFloat32).view({2, 3, 4, 8});
  EXPECT_TRUE(torch::equal(resize_and_crop(images, 4, 8), images));
  // Scale max(4/4, 4/8) = 1: no resize, the middle 4 columns.
  EXPECT_TRUE(torch::equal(resize_and_crop(images, 4, 4), images.slice(3, 2, 6)));
  // A constant image stays constant through the resize; the size is the target's.
  const torch::Tensor flat = torch::full({1, 3, 2, 2}, 0.25f);
  const torch::Tensor out = resize_and_crop(flat, 4, 6);
  ASSERT_TRUE(out.sizes().equals({1, 3, 4, 6}));
  EXPECT_LT((out - 0.25f).abs().max().item<float>(), 1e-6f);
}

// ---- Model folders ------------------------------------------------------------------------------

TEST(ModelFolder, ReadsTheTinyFoldersAndCompletesARunConfig) {
  const ModelFolder m = read_model_folder(t2i_path("pixart_sigma_tiny"));
  EXPECT_EQ(m.family, "pixart_sigma");
  EXPECT_EQ(m.resolution, 64);
  EXPECT_DOUBLE_EQ(m.latent_scale, 0.13025);
  EXPECT_EQ(m.max_caption_length, 10);
  EXPECT_TRUE(fs::exists(m.backbone));
  EXPECT_TRUE(m.feedback.empty());

  Json config = {{"model", {{"folder", t2i_path("pixart_sigma_tiny")}}}, {"weights", "mine.safetensors"}};
  ASSERT_TRUE(apply_model_folder(config, "run.json"));
  EXPECT_EQ(config["weights"], "mine.safetensors");  // the config's file wins
  EXPECT_FALSE(config["model"].contains("folder"));
  EXPECT_EQ(config["model"]["variant"], "sigma");
  EXPECT_EQ(config["model"]["model_max_length"], 10);
  EXPECT_EQ(config["text"]["max_length"], 10);
  EXPECT_EQ(config["text"]["tokenizer"], m.tokenizer);
  EXPECT_EQ(config["vae"]["scale_factor"], 0.13025);

  Json none = Json::object();
  EXPECT_FALSE(apply_model_folder(none, "run.json"));
}

TEST(ModelFolder, AContradictingRunConfigIsRefusedNamingBoth) {
  Json config = {{"model", {{"depth", 28}}}};
  try {
    apply_model_folder(config, "run.json", t2i_path("pixart_alpha_tiny"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("run.json"), std::string::npos) << what;
    EXPECT_NE(what.find("model.depth"), std::string::npos) << what;
    EXPECT_NE(what.find("model.json"), std::string::npos) << what;
  }
  Json scale = {{"vae", {{"scale_factor", 0.13025}}}};
  EXPECT_THROW(apply_model_folder(scale, "run.json", t2i_path("pixart_alpha_tiny")), Error);
}

TEST(ModelFolder, EveryProblemIsReportedAtOnceBeforeLoading) {
  const std::string dir = test::scratch_dir("model_folder_broken");
  Json manifest = load_json_file(t2i_path("pixart_alpha_tiny/model.json"));
  manifest["backbone"] = t2i_path("../pixart_tiny.weights.safetensors");
  manifest["text_encoder"] = t2i_path("text_encoder.pt");
  manifest["vae_decoder"] = t2i_path("vae_decoder.pt");
  manifest["vae_encoder"] = t2i_path("vae_encoder.pt");
  manifest["tokenizer"] = "spiece.model";  // not there
  manifest["latent_scale"] = 0.13025;      // Sigma's
  manifest["model"]["variant"] = "sigma";  // not an alpha variant
  manifest["vae_decodr"] = "typo.pt";
  write_text(dir + "/model.json", manifest.dump(2));
  try {
    read_model_folder(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(dir + "/model.json"), std::string::npos) << what;
    EXPECT_NE(what.find("spiece.model"), std::string::npos) << what;
    EXPECT_NE(what.find("latent_scale"), std::string::npos) << what;
    EXPECT_NE(what.find("model.variant"), std::string::npos) << what;
    EXPECT_NE(what.find("vae_decodr"), std::string::npos) << what;
  }
  EXPECT_THROW(read_model_folder(dir + "/nowhere"), Error);
}

// ---- Loading and the null caption ---------------------------------------------------------------

TEST(TextToImage, LoaderChecksCaptionLengthFilesAndFeedback) {
  try {
    load_tiny("pixart_alpha_tiny", {{"text", {{"max_length", 7}}}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_caption_length"), std::string::npos) << e.what();
  }
  try {
    load_tiny("pixart_alpha_tiny", {{"sampling", {{"method", "ilf"}}}, {"ilf", {{"loop_begin", 1}, {"loop_end", 2}}}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("feedback"), std::string::npos) << e.what();
  }
  // A folder traced for CUDA does not load for CPU sampling.
  const std::string dir = test::scratch_dir("t2i_traced_for_cuda");
  Json manifest = load_json_file(t2i_path("pixart_sigma_tiny/model.json"));
  for (const char* key : {"backbone", "text_encoder", "tokenizer", "tokenizer_check", "vae_decoder", "vae_encoder"})
    manifest[key] = (fs::path(t2i_path("pixart_sigma_tiny")) / manifest[key].get<std::string>()).lexically_normal().string();
  manifest["device"] = "cuda";
  write_text(dir + "/model.json", manifest.dump(2));
  try {
    const LoadedRunConfig loaded = load_tool_config(Json::object(), "test config", dir);
    load_text_to_image_model(loaded.config, torch::kCPU, &*loaded.folder);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("traced for cuda"), std::string::npos) << e.what();
  }
  try {
    load_tiny("pixart_alpha_tiny", {{"vae", {{"decoder", "/nonexistent/vae_decoder.pt"}}}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/vae_decoder.pt"), std::string::npos) << e.what();
  }
}

TEST(TextToImage, NullCaptionFollowsTheFamily) {
  TinyModel alpha = load_tiny("pixart_alpha_tiny");
  ASSERT_TRUE(alpha.model.uses_y_embedding_null_caption());
  const ImageSize size{64, 64};
  const ConditionInputs cond = caption_conditions(alpha.model, {"a corgi wearing a red scarf", "a cat"}, size);
  // alpha: y_embedding with each image's own caption mask.
  const ConditionInputs null = null_caption_conditions(alpha.model, cond, std::nullopt);
  const torch::Tensor y = as_pixart(alpha.model.backbone)->y_embedder->y_embedding;  // (L, C)
  EXPECT_TRUE(torch::equal(null.caption[0], y));
  EXPECT_TRUE(torch::equal(null.caption[1], y));
  EXPECT_TRUE(torch::equal(null.caption_mask, cond.caption_mask));
  // An explicit negative prompt: its T5 encoding, with its own mask (diffusers).
  const ConditionInputs negative = null_caption_conditions(alpha.model, cond, std::string("blurry"));
  const CaptionEmbeddings blurry = alpha.model.text_encoder->encode({"blurry"});
  EXPECT_TRUE(torch::equal(negative.caption[1], blurry.features[0]));
  EXPECT_TRUE(torch::equal(negative.caption_mask[1], blurry.mask[0]));

  // sigma: the encoding of the empty prompt ("" -> </s> alone).
  TinyModel sigma = load_tiny("pixart_sigma_tiny");
  EXPECT_FALSE(sigma.model.uses_y_embedding_null_caption());
  const ConditionInputs sigma_cond = caption_conditions(sigma.model, {"a corgi", "a cat"}, size);
  const ConditionInputs sigma_null = null_caption_conditions(sigma.model, sigma_cond, std::nullopt);
  const CaptionEmbeddings empty = sigma.model.text_encoder->encode({""});
  EXPECT_TRUE(torch::equal(sigma_null.caption[0], empty.features[0]));
  EXPECT_EQ(sigma_null.caption_mask[1].sum().item<int64_t>(), 1);
}

TEST(TextToImage, DiffusersLayoutWeightsGuideWithTheEmptyPromptAsDiffusersDoes) {
  // The exporter's layout: the diffusers transformer has no y_embedding, so PixArt-alpha's null caption is
  // the encoding of "" -- the same images as the official weights with --negative-prompt "".
  TinyModel diffusers = load_tiny("pixart_alpha_diffusers_tiny", {{"sampling", {{"steps", 4}}}});
  TinyModel official = load_tiny("pixart_alpha_tiny", {{"sampling", {{"steps", 4}}}});
  EXPECT_FALSE(diffusers.model.uses_y_embedding_null_caption());
  TextToImageRequest request;
  request.prompts = {"a corgi wearing a red scarf", "a cat"};
  request.seeds = {5, 6};
  const TextToImageResult a = generate(diffusers.model, request);
  request.negative_prompt = "";
  const TextToImageResult b = generate(official.model, request);
  EXPECT_LT(test::relative_error(a.images, b.images), 1e-5);
}

TEST(TextToImage, GuidanceAtScaleOneEqualsTheUnguidedForward) {
  for (const std::string folder : {"pixart_alpha_tiny", "pixart_sigma_tiny", "pixart_alpha_ms_tiny"}) {
    TinyModel t = load_tiny(folder);
    const ImageSize size = generation_size(t.model, {0, 0}, true);
    const ConditionInputs cond = caption_conditions(t.model, {"a corgi wearing a red scarf", "a cat"}, size);
    const ConditionInputs null = null_caption_conditions(t.model, cond, std::nullopt);
    torch::manual_seed(3);
    const torch::Tensor x = torch::randn({2, 4, size.height / 8, size.width / 8});
    const torch::Tensor t_in = torch::tensor({999.0f, 421.0f});
    torch::NoGradGuard no_grad;
    const torch::Tensor batched =
        t.model.backbone->forward(torch::cat({x, x}), torch::cat({t_in, t_in}), concat_conditions(cond, null));
    const torch::Tensor guided = classifier_free_guidance(batched, 1.0, 4).slice(0, 0, 2).slice(1, 0, 4);
    const torch::Tensor plain = t.model.backbone->forward(x, t_in, cond).slice(1, 0, 4);
    EXPECT_LT(test::relative_error(guided, plain), 1e-5) << folder;
    // And the null caption matters at other scales.
    EXPECT_GT(test::relative_error(classifier_free_guidance(batched, 4.5, 4).slice(0, 0, 2).slice(1, 0, 4), plain), 1e-3)
        << folder;
  }
}

// ---- Generation ---------------------------------------------------------------------------------

TEST(TextToImage, SamePromptAndSeedGiveTheSameImageInAnyBatch) {
  TinyModel t = load_tiny("pixart_sigma_tiny", {{"sampling", {{"steps", 6}}}});
  TextToImageRequest request;
  request.prompts = {"a corgi wearing a red scarf"};
  request.seeds = {7};
  const TextToImageResult a = generate(t.model, request);
  const TextToImageResult b = generate(t.model, request);
  ASSERT_TRUE(a.images.sizes().equals({1, 3, 64, 64}));
  EXPECT_TRUE(torch::equal(a.images, b.images));
  EXPECT_GE(a.images.min().item<float>(), -1.0f);
  EXPECT_LE(a.images.max().item<float>(), 1.0f);
  EXPECT_EQ(a.sampling.block_forwards, 6 * 3);

  request.seeds = {8};
  EXPECT_FALSE(torch::equal(generate(t.model, request).images, a.images));
  // An image does not depend on the batch it is sampled in.
  request.prompts = {"a cat", "a corgi wearing a red scarf"};
  request.seeds = {1, 7};
  const TextToImageResult batch = generate(t.model, request);
  EXPECT_LT(test::relative_error(batch.images[1], a.images[0]), 1e-5);
}

TEST(TextToImage, IlfWithZeroFeedbackScalesReproducesTheBaseline) {
  const std::string dir = test::scratch_dir("t2i_ilf_zero");
  TinyModel base = load_tiny("pixart_alpha_tiny", {{"sampling", {{"steps", 5}}}});
  FeedbackModule(*base.model.backbone, FeedbackOptions{1, 2, FeedbackInit::kRandom})->save(dir + "/feedback.safetensors");
  TinyModel ilf = load_tiny("pixart_alpha_tiny", {{"sampling", {{"steps", 5}, {"method", "ilf"}}},
                                                  {"ilf",
                                                   {{"loop_begin", 1},
                                                    {"loop_end", 2},
                                                    {"t_post", "none"},
                                                    {"init", "random"},
                                                    {"feedback_weights", dir + "/feedback.safetensors"}}}});
  TextToImageRequest request;
  request.prompts = {"a corgi"};
  request.seeds = {3};
  const TextToImageResult plain = generate(base.model, request);
  const TextToImageResult fed = generate(ilf.model, request);
  EXPECT_LT(test::relative_error(fed.images, plain.images), 1e-5);
  EXPECT_EQ(fed.sampling.block_forwards, 5 * (4 + 2 + 1));  // N + m + 1 on every step
  EXPECT_EQ(fed.sampling.block_forwards, fed.sampling.plan.total_block_forwards);
}

TEST(TextToImage, SizesAndMicroConditions) {
  TinyModel alpha = load_tiny("pixart_alpha_tiny");
  EXPECT_EQ(generation_size(alpha.model, {0, 0}, true), (ImageSize{64, 64}));
  EXPECT_THROW(generation_size(alpha.model, {64, 96}, true), Error);  // fixed positional embedding
  TinyModel ms = load_tiny("pixart_alpha_ms_tiny");
  const ImageSize size = generation_size(ms.model, {64, 96}, true);  // no bins at 64 px: as asked
  EXPECT_EQ(size, (ImageSize{64, 96}));
  EXPECT_THROW(generation_size(ms.model, {64, 72}, true), Error);  // not a multiple of 16
  const ConditionInputs cond = caption_conditions(ms.model, {"a corgi"}, size);
  EXPECT_TRUE(torch::equal(cond.image_hw, torch::tensor({{64.0f, 96.0f}})));
  EXPECT_NEAR(cond.aspect_ratio.item<float>(), 64.0 / 96.0, 1e-7);
  TextToImageRequest request;
  request.prompts = {"a corgi"};
  request.seeds = {0};
  request.height = 64;
  request.width = 96;
  ms.model.options.steps = 2;
  EXPECT_TRUE(generate(ms.model, request).images.sizes().equals({1, 3, 64, 96}));
}

// ---- ilf_sample --prompt end to end -------------------------------------------------------------

TEST(IlfSampleTextToImage, PromptToPngWithItsSettingsAndThePlannedBlockForwards) {
  const std::string dir = test::scratch_dir("ilf_sample_prompt");
  // A feedback module for the tiny alpha backbone (random F, zero scales), and an ILF run config.
  TinyModel base = load_tiny("pixart_alpha_tiny");
  FeedbackModule(*base.model.backbone, FeedbackOptions{1, 2, FeedbackInit::kRandom})->save(dir + "/feedback.safetensors");
  const Json config = {{"model", {{"folder", t2i_path("pixart_alpha_tiny")}}},
                       {"sampling", {{"method", "ilf"}, {"steps", 10}}},
                       {"ilf",
                        {{"loop_begin", 1},
                         {"loop_end", 2},
                         {"init", "random"},
                         {"t_post", "anneal"},
                         {"feedback_steps", {{"mode", "outer"}, {"count", 2}}},
                         {"feedback_weights", dir + "/feedback.safetensors"}}}};
  write_text(dir + "/run.json", config.dump(2));
  const std::string png = dir + "/corgi.png";
  // --no-enlarge: the PNG has the sampled size (the default enlarges a 64 x 64 image 4 times).
  const std::string common = "--config " + dir + "/run.json --prompt \"a corgi wearing a red scarf\" --seed 11 --no-enlarge";
  ASSERT_EQ(run_ilf_sample(common + " --out " + png, dir + "/log.txt"), 0) << read_text(dir + "/log.txt");
  ASSERT_EQ(run_ilf_sample(common + " --plan", dir + "/plan.json"), 0) << read_text(dir + "/plan.json");

  EXPECT_EQ(png_size(png), (std::pair<uint32_t, uint32_t>{64, 64}));
  const auto text = read_png_text(png);
  ASSERT_TRUE(text.count("ilf"));
  const Json settings = Json::parse(text.at("ilf"));
  EXPECT_EQ(settings["prompt"], "a corgi wearing a red scarf");
  EXPECT_EQ(settings["seed"], 11);
  EXPECT_EQ(settings["steps"], 10);
  EXPECT_EQ(settings["guidance_scale"], 4.5);  // the PixArt default
  EXPECT_EQ(settings["method"], "ilf");
  EXPECT_EQ(settings["solver"], "dpmpp2m");
  EXPECT_EQ(settings["null_caption"], "y_embedding");
  const Json plan = Json::parse(read_text(dir + "/plan.json"));
  EXPECT_EQ(settings["block_forwards"], plan["total_block_forwards"]);
  EXPECT_EQ(plan["total_block_forwards"], 4 * 10 + (2 + 1) * 4);  // feedback on the first 2 and last 2 steps
  EXPECT_NE(read_text(dir + "/log.txt").find("block forwards"), std::string::npos);

  // The same prompt and seed again: the same image file content.
  ASSERT_EQ(run_ilf_sample(common + " --out " + dir + "/again.png", dir + "/log2.txt"), 0) << read_text(dir + "/log2.txt");
  EXPECT_EQ(read_text(png), read_text(dir + "/again.png"));
}

TEST(IlfSampleTextToImage, PromptsFileWritesOnePngPerLine) {
  const std::string dir = test::scratch_dir("ilf_sample_prompts_file");
  write_text(dir + "/prompts.txt", "a corgi wearing a red scarf\n\nan astronaut riding a horse\r\na bowl of soup\n");
  ASSERT_EQ(run_ilf_sample("--model-folder " + t2i_path("pixart_sigma_tiny") + " --prompts-file " + dir +
                               "/prompts.txt --batch 2 --steps 4 --negative-prompt blurry --out " + dir + "/samples",
                           dir + "/log.txt"),
            0)
      << read_text(dir + "/log.txt");
  const std::vector<std::string> prompts = {"a corgi wearing a red scarf", "an astronaut riding a horse", "a bowl of soup"};
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string png = dir + "/samples/0000" + std::to_string(i) + ".png";
    // Sampled at 64 x 64 and written enlarged 4 times (the smallest factor reaching 256 px).
    ASSERT_EQ(png_size(png), (std::pair<uint32_t, uint32_t>{256, 256})) << png;
    const Json settings = Json::parse(read_png_text(png).at("ilf"));
    EXPECT_EQ(settings["enlarged"], 4);
    EXPECT_EQ(settings["prompt"], prompts[i]);
    EXPECT_EQ(settings["seed"], i);
    EXPECT_EQ(settings["negative_prompt"], "blurry");
    EXPECT_EQ(settings["block_forwards"], 4 * 3);
  }
  EXPECT_FALSE(fs::exists(dir + "/samples/00003.png"));
}

TEST(IlfSampleTextToImage, ABrokenModelFolderFailsBeforeSamplingAndWritesNothing) {
  const std::string dir = test::scratch_dir("ilf_sample_broken_folder");
  Json manifest = load_json_file(t2i_path("pixart_sigma_tiny/model.json"));
  manifest["backbone"] = t2i_path("../pixart_sigma_tiny.weights.safetensors");
  manifest["text_encoder"] = t2i_path("text_encoder.pt");
  manifest["vae_decoder"] = t2i_path("vae_decoder.pt");
  manifest.erase("vae_encoder");
  manifest["tokenizer"] = "missing_spiece.model";
  write_text(dir + "/model.json", manifest.dump(2));
  EXPECT_EQ(run_ilf_sample("--model-folder " + dir + " --prompt corgi --out " + dir + "/x.png", dir + "/log.txt"), 1);
  const std::string log = read_text(dir + "/log.txt");
  EXPECT_NE(log.find("model.json"), std::string::npos) << log;
  EXPECT_NE(log.find("missing_spiece.model"), std::string::npos) << log;
  EXPECT_EQ(log.find("sampling: step"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dir + "/x.png"));
}

TEST(IlfSampleTextToImage, ShippedConfigsPlanThePapersBlockForwards) {
  // A stand-in 28-block model folder: --plan reads only model.json (the files need only exist).
  const std::string dir = test::scratch_dir("ilf_sample_shipped_configs");
  for (const char* f : {"backbone.safetensors", "text_encoder.pt", "spiece.model", "vae_decoder.pt"})
    write_text(dir + "/" + f, "");
  for (const std::string name : {"pixart_alpha_512", "pixart_alpha_1024", "pixart_sigma_512", "pixart_sigma_1024"}) {
    const bool sigma = name.find("sigma") != std::string::npos;
    const bool large = name.find("1024") != std::string::npos;
    const Json manifest = {
        {"family", sigma ? "pixart_sigma" : "pixart_alpha"},
        {"resolution", large ? 1024 : 512},
        {"latent_scale", sigma ? 0.13025 : 0.18215},
        {"max_caption_length", sigma ? 300 : 120},
        {"model",
         {{"variant", sigma ? "sigma" : (large ? "alpha_ms" : "alpha")}, {"depth", 28}, {"input_size", large ? 128 : 64}}},
        {"backbone", "backbone.safetensors"},
        {"text_encoder", "text_encoder.pt"},
        {"tokenizer", "spiece.model"},
        {"vae_decoder", "vae_decoder.pt"}};
    write_text(dir + "/model.json", manifest.dump(2));
    const std::string config = std::string(ILF_SOURCE_DIR) + "/configs/" + name + ".json";
    ASSERT_TRUE(fs::exists(config)) << config;
    const std::string log = dir + "/" + name + ".json";
    ASSERT_EQ(run_ilf_sample("--config " + config + " --model-folder " + dir + " --prompt x --plan", log), 0) << read_text(log);
    EXPECT_EQ(Json::parse(read_text(log))["total_block_forwards"], 332) << name;  // paper: ILF, 10 steps
    if (name != "pixart_sigma_1024") continue;  // the method switches once (each run starts a process)
    ASSERT_EQ(
        run_ilf_sample("--config " + config + " --model-folder " + dir + " --prompt x --plan --method baseline --steps 20", log),
        0)
        << read_text(log);
    EXPECT_EQ(Json::parse(read_text(log))["total_block_forwards"], 560) << name;  // paper: baseline, 20 steps
    ASSERT_EQ(
        run_ilf_sample("--config " + config + " --model-folder " + dir + " --prompt x --plan --method cache --steps 20", log), 0)
        << read_text(log);
    EXPECT_EQ(Json::parse(read_text(log))["total_block_forwards"], 326) << name;  // paper: caching, 20 steps
  }
}

// ---- Round 2 hardening: model-folder checksums, non-regular inputs, prompt line length ---------

TEST(ModelFolder, TheShippedFoldersRecordChecksumsAndTheirFilesMatch) {
  std::vector<std::string> folders = {std::string(ILF_SOURCE_DIR) + "/models/fashion_mnist_t2i"};
  for (const char* name : {"pixart_alpha_tiny", "pixart_alpha_ms_tiny", "pixart_alpha_diffusers_tiny", "pixart_sigma_tiny"})
    folders.push_back(t2i_path(name));
  for (const std::string& folder : folders) {
    const ModelFolder m = read_model_folder(folder);
    EXPECT_EQ(m.checksums.size(), m.files.size()) << folder << ": every file entry has its checksum";
    EXPECT_NO_THROW(verify_model_folder_files(m)) << folder;
  }
}

TEST(ModelFolder, AFileThatDoesNotMatchItsRecordedChecksumIsRefusedNamingIt) {
  // 16 flipped bytes in text_encoder.pt gave a different image at exit 0 (LibTorch's zip reader did not notice).
  const std::string dir = test::scratch_dir("model_folder_checksum_mismatch");
  for (const char* f : {"text_encoder.pt", "tiny_spm.model", "vae_decoder.pt", "vae_encoder.pt"})
    fs::copy_file(t2i_path(f), dir + "/" + f, fs::copy_options::overwrite_existing);
  fs::copy_file(t2i_path("../pixart_tiny.weights.safetensors"), dir + "/backbone.safetensors",
                fs::copy_options::overwrite_existing);
  Json manifest = load_json_file(t2i_path("pixart_alpha_tiny/model.json"));
  manifest["backbone"] = "backbone.safetensors";
  manifest["text_encoder"] = "text_encoder.pt";
  manifest["tokenizer"] = "tiny_spm.model";
  manifest["vae_decoder"] = "vae_decoder.pt";
  manifest["vae_encoder"] = "vae_encoder.pt";
  write_text(dir + "/model.json", manifest.dump(2));
  EXPECT_NO_THROW(verify_model_folder_files(read_model_folder(dir)));  // the copies match (checked once per process)

  const std::string bad = test::scratch_dir("model_folder_checksum_mismatch_flipped");
  for (const auto& entry : fs::directory_iterator(dir)) fs::copy_file(entry.path(), bad + "/" + entry.path().filename().string());
  std::string bytes = read_text(bad + "/text_encoder.pt");
  for (size_t i = 0; i < 16; ++i) bytes[bytes.size() / 2 + i] ^= 0x5a;
  std::ofstream(bad + "/text_encoder.pt", std::ios::binary | std::ios::trunc) << bytes;
  const std::string message = test::error_of([&] { verify_model_folder_files(read_model_folder(bad)); });
  EXPECT_NE(message.find(bad + "/text_encoder.pt"), std::string::npos) << message;
  EXPECT_NE(message.find("checksum"), std::string::npos) << message;
  // Through the loader, before anything is sampled.
  const std::string load = test::error_of([&] {
    const LoadedRunConfig loaded = load_tool_config(Json::object(), "test config", bad);
    load_text_to_image_model(loaded.config, torch::kCPU, &*loaded.folder);
  });
  EXPECT_NE(load.find("text_encoder.pt"), std::string::npos) << load;
  // A malformed checksum entry is a model.json problem.
  manifest["checksums"]["vae_decoder"] = "md5:1234";
  write_text(bad + "/model.json", manifest.dump(2));
  EXPECT_NE(test::error_of([&] { read_model_folder(bad); }).find("checksums.vae_decoder"), std::string::npos);
}

TEST(HardeningInputs, AFifoOrFolderAsModelJsonPromptsFileOrTextEncoderFailsNamingItInsteadOfHanging) {
  const std::string dir = test::scratch_dir("hardening_t2i_fifo");
  const std::string folder = std::string(ILF_SOURCE_DIR) + "/models/fashion_mnist_t2i";
  const std::string config = std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist_t2i.json";
  // model.json a fifo.
  fs::create_directories(dir + "/fifo_manifest");
  ASSERT_EQ(::mkfifo((dir + "/fifo_manifest/model.json").c_str(), 0644), 0);
  // text_encoder.pt a fifo in an otherwise good folder (entries as absolute paths).
  fs::create_directories(dir + "/fifo_encoder");
  Json manifest = load_json_file(folder + "/model.json");
  for (const char* key : {"backbone", "feedback", "tokenizer", "tokenizer_check", "vae_decoder", "vae_encoder"})
    manifest[key] = folder + "/" + manifest[key].get<std::string>();
  manifest.erase("checksums");
  manifest["text_encoder"] = dir + "/fifo_encoder/text_encoder.pt";
  ASSERT_EQ(::mkfifo((dir + "/fifo_encoder/text_encoder.pt").c_str(), 0644), 0);
  write_text(dir + "/fifo_encoder/model.json", manifest.dump(2));
  ASSERT_EQ(::mkfifo((dir + "/prompts.fifo").c_str(), 0644), 0);
  fs::create_directories(dir + "/prompts.folder");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--config " + config + " --model-folder " + dir + "/fifo_manifest --prompt x --out " + dir + "/a.png",
       dir + "/fifo_manifest/model.json"},
      {"--config " + config + " --model-folder " + dir + "/fifo_encoder --prompt x --out " + dir + "/b.png",
       dir + "/fifo_encoder/text_encoder.pt"},
      {"--config " + config + " --model-folder " + folder + " --prompts-file " + dir + "/prompts.fifo --out " + dir + "/c",
       dir + "/prompts.fifo"},
      {"--config " + config + " --model-folder " + folder + " --prompts-file " + dir + "/prompts.folder --out " + dir + "/d",
       dir + "/prompts.folder"},
  };
  for (const auto& [args, named] : cases) {
    const std::string log = dir + "/log.txt";
    EXPECT_EQ(test::run_tool_with_timeout("ilf_sample", args, log, 60), 1) << args << "\n" << read_text(log);  // 124: hung
    const std::string text = read_text(log);
    EXPECT_NE(text.find(named), std::string::npos) << text;
    EXPECT_EQ(text.find("underflow"), std::string::npos) << text;
  }
  EXPECT_FALSE(fs::exists(dir + "/a.png"));
  EXPECT_FALSE(fs::exists(dir + "/b.png"));
}

TEST(HardeningLimits, APromptsFileLineAboveTheLimitIsRefusedNamingTheLine) {
  const std::string dir = test::scratch_dir("hardening_prompt_line");
  write_text(dir + "/ok.txt", "a shoe\n" + std::string(kMaxPromptLineBytes, 'x') + "\n");
  EXPECT_EQ(read_prompts_file(dir + "/ok.txt").size(), 2u);  // exactly the limit is fine
  write_text(dir + "/long.txt", "a shoe\n\n" + std::string(kMaxPromptLineBytes + 1, 'x') + "\n");
  const std::string message = test::error_of([&] { read_prompts_file(dir + "/long.txt"); });
  EXPECT_NE(message.find(dir + "/long.txt"), std::string::npos) << message;
  EXPECT_NE(message.find("line 3"), std::string::npos) << message;
  EXPECT_LT(message.size(), 1000u);  // the line is not echoed
}

// ---- Issue 33: hardening of the text-to-image surfaces -----------------------------------------

TEST(HardeningRanges, AModelFolderLatentScaleOutsideItsRangeIsRefusedNamingTheKey) {
  // A folder with its own VAE ("vae_downsampling") sets any latent scale: 1e-300 gave black images, 1e30 garbage.
  const std::string dir = test::scratch_dir("hardening_folder_latent_scale");
  for (const double scale : {1e-300, 1e30, 0.0}) {
    Json manifest = load_json_file(t2i_path("pixart_sigma_tiny/model.json"));
    for (const char* key : {"text_encoder", "vae_decoder", "vae_encoder", "tokenizer", "tokenizer_check"})
      manifest[key] = t2i_path(manifest[key].get<std::string>().substr(3));
    manifest["backbone"] = t2i_path("../pixart_sigma_tiny.weights.safetensors");
    manifest["vae_downsampling"] = 8;
    manifest["latent_scale"] = scale;
    write_text(dir + "/model.json", manifest.dump(2));
    const std::string what = test::error_of([&] { read_model_folder(dir); });
    EXPECT_NE(what.find("\"latent_scale\" must be a number from 1e-4 to 1e4"), std::string::npos) << scale << ": " << what;
    if (scale == 1e-300) {  // the same folder with a real scale is read
      manifest["latent_scale"] = 0.13025;
      write_text(dir + "/model.json", manifest.dump(2));
      EXPECT_EQ(test::error_of([&] { read_model_folder(dir); }), "");
    }
  }
}

TEST(HardeningNonFinite, SamplingStopsAtTheStepWhoseLatentsBecomeNonFinite) {
  TinyModel t = load_tiny("pixart_sigma_tiny", {{"sampling", {{"steps", 4}}}});
  {
    torch::NoGradGuard no_grad;
    t.model.backbone->parameters().back().fill_(std::numeric_limits<float>::quiet_NaN());  // bypasses the load check
  }
  TextToImageRequest request;
  request.prompts = {"a corgi"};
  request.seeds = {1};
  const std::string what = test::error_of([&] { generate(t.model, request); });
  EXPECT_NE(what.find("NaN or Inf at step 1/4"), std::string::npos) << what;
}

TEST(HardeningNonFinite, ATorchScriptModuleWithANaNWeightIsRefusedAtLoadNamingFileAndTensor) {
  const std::string dir = test::scratch_dir("hardening_nonfinite_torchscript");
  torch::jit::script::Module decoder = torch::jit::load(t2i_path("vae_decoder.pt"));
  const auto first = *decoder.named_parameters().begin();
  {
    torch::NoGradGuard no_grad;
    first.value.view(-1)[0].fill_(std::numeric_limits<float>::infinity());
  }
  decoder.save(dir + "/vae_decoder.pt");
  const std::string what = test::error_of([&] { TorchScriptVae(dir + "/vae_decoder.pt", "", 0.13025, torch::kCPU); });
  EXPECT_NE(what.find(dir + "/vae_decoder.pt"), std::string::npos) << what;
  EXPECT_NE(what.find("\"" + first.name + "\""), std::string::npos) << what;
  EXPECT_NE(what.find("NaN or Inf"), std::string::npos) << what;
}

TEST(HardeningMessages, AWrongVaeFileIsOneLineNamingTheFileAndWhatWasExpected) {
  // The encoder given as the decoder: TorchScript's 2 KB traceback used to reach the user.
  TorchScriptVae vae(t2i_path("vae_encoder.pt"), "", 0.13025, torch::kCPU);
  const std::string what = test::error_of([&] { vae.decode(torch::zeros({1, 4, 8, 8})); });
  EXPECT_NE(what.find(t2i_path("vae_encoder.pt")), std::string::npos) << what;
  EXPECT_NE(what.find("expected a TorchScript VAE decoder"), std::string::npos) << what;
  EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  EXPECT_EQ(what.find("Traceback"), std::string::npos) << what;
  EXPECT_LT(what.size(), 600u) << what;
}

TEST(HardeningMessages, InvalidUtf8InAPromptOrPromptsFileIsFoundBeforeSamplingAndNamed) {
  const std::string dir = test::scratch_dir("hardening_prompt_utf8");
  write_text(dir + "/prompts.txt", "a corgi\nan \xff\xfe astronaut\n");
  const std::string what = test::error_of([&] { read_prompts_file(dir + "/prompts.txt"); });
  EXPECT_NE(what.find(dir + "/prompts.txt: line 2 is not valid UTF-8"), std::string::npos) << what;
  // ilf_sample: exit 1 naming the flag or the line, no json type_error 316, no PNG, no sampling.
  for (const std::string source : {"--prompt \"$(printf 'a \\377 corgi')\" --out " + dir + "/x.png",
                                   "--prompts-file " + dir + "/prompts.txt --out " + dir + "/samples"}) {
    const int code = run_ilf_sample("--model-folder " + t2i_path("pixart_sigma_tiny") + " --steps 2 " + source, dir + "/log.txt");
    const std::string log = read_text(dir + "/log.txt");
    EXPECT_EQ(code, 1) << log;
    EXPECT_NE(log.find("not valid UTF-8"), std::string::npos) << log;
    EXPECT_EQ(log.find("316"), std::string::npos) << log;
    EXPECT_EQ(log.find("step 1/"), std::string::npos) << log;  // no progress line: it stopped before sampling
    EXPECT_FALSE(fs::exists(dir + "/x.png"));
    EXPECT_FALSE(fs::exists(dir + "/samples/00000.png"));
  }
}

TEST(HardeningOverflow, AHugeBatchWithAPromptsFileIsRefusedOrRunsEveryPrompt) {
  const std::string dir = test::scratch_dir("hardening_prompts_batch");
  write_text(dir + "/prompts.txt", "a corgi\nan astronaut\n");
  // Beyond the limit: a usage error naming --batch (it logged success and wrote nothing).
  EXPECT_EQ(run_ilf_sample("--model-folder " + t2i_path("pixart_sigma_tiny") + " --prompts-file " + dir +
                               "/prompts.txt --batch 9223372036854775807 --out " + dir + "/samples",
                           dir + "/log.txt"),
            2)
      << read_text(dir + "/log.txt");
  EXPECT_NE(read_text(dir + "/log.txt").find("--batch"), std::string::npos);
  // At the limit: one run of both prompts (the run count overflowed to 0 before).
  ASSERT_EQ(run_ilf_sample("--model-folder " + t2i_path("pixart_sigma_tiny") + " --prompts-file " + dir +
                               "/prompts.txt --steps 2 --batch 1000000 --out " + dir + "/samples",
                           dir + "/log.txt"),
            0)
      << read_text(dir + "/log.txt");
  EXPECT_TRUE(fs::exists(dir + "/samples/00000.png"));
  EXPECT_TRUE(fs::exists(dir + "/samples/00001.png"));
  EXPECT_NE(read_text(dir + "/log.txt").find("2 images"), std::string::npos) << read_text(dir + "/log.txt");
}
