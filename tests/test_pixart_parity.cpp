// PixArt parity with the official implementations: PixArt-alpha (pixart_tiny, fixed pos_embed),
// PixArt-alpha MS (pixartms_tiny, micro-conditions, non-square 8x12 latents) and PixArt-Sigma
// (pixart_sigma_tiny, pe_interpolation 2). Every conditioning vector, the pos embedding, every hidden
// state, the final tokens and the output, within max|ours - ref| / max|ref| < 1e-5. Plus the
// behaviour of the caption mask, the null condition and the config checks.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iostream>

#include "ilf/error.h"
#include "ilf/models/pixart.h"
#include "ilf/models/weights.h"
#include "test_helpers.h"

using namespace ilf;

namespace {

constexpr double kPixArtTolerance = 1e-5;

struct PixArtCase {
  std::string name;
  std::shared_ptr<PixArtImpl> model;
  TensorMap io;
};

// `model_json`: what the weights cannot tell (num_heads, variant).
PixArtCase load_pixart_case(const std::string& name, const std::string& model_json) {
  TensorMap weights = read_safetensors(test::data_path(name + ".weights.safetensors")).tensors;
  auto model = as_pixart(make_backbone_for_weights(weights, test::model_spec(model_json, name)));
  EXPECT_TRUE(model);
  load_backbone_weights(*model, std::move(weights), name);
  model->eval();
  return {name, model, read_safetensors(test::data_path(name + ".io.safetensors")).tensors};
}

void expect_parity(const PixArtCase& c, const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref) {
  ASSERT_TRUE(ours.sizes().equals(ref.sizes()))
      << c.name << " " << name << ": shape " << ours.sizes() << " vs reference " << ref.sizes();
  const double err = test::relative_error(ours, ref);
  std::cout << "[parity] " << c.name << " " << name << ": " << err << std::endl;
  EXPECT_LT(err, kPixArtTolerance) << c.name << " " << name;
}

ConditionInputs inputs_of(const PixArtCase& c) {
  ConditionInputs inputs;
  inputs.caption = c.io.at("y");
  inputs.caption_mask = c.io.at("mask");
  if (c.io.count("data_info.img_hw")) {
    inputs.image_hw = c.io.at("data_info.img_hw");
    inputs.aspect_ratio = c.io.at("data_info.aspect_ratio");
  }
  return inputs;
}

// Compares every stage of the forward pass with the reference tensors of the case.
void check_every_stage(const PixArtCase& c) {
  torch::NoGradGuard no_grad;
  const torch::Tensor x = c.io.at("x"), t = c.io.at("timestep");
  const ConditionInputs inputs = inputs_of(c);
  expect_parity(c, "t_emb", c.model->embed_timestep(t), c.io.at("t_emb"));
  if (c.io.count("csize_emb")) {
    const auto [csize, ar] = c.model->embed_micro_conditions(inputs.image_hw, inputs.aspect_ratio, x.size(0));
    expect_parity(c, "csize_emb", csize, c.io.at("csize_emb"));
    expect_parity(c, "ar_emb", ar, c.io.at("ar_emb"));
  }
  const Conditioning cond = c.model->condition(t, inputs);
  expect_parity(c, "t", cond.head, c.io.at("t"));
  expect_parity(c, "t0", cond.block, c.io.at("t0"));
  expect_parity(c, "y_proj_full", cond.caption_tokens.unsqueeze(1), c.io.at("y_proj_full"));
  // The official code packs the valid caption tokens of all images into one sequence.
  const torch::Tensor packed =
      cond.caption_tokens.masked_select(cond.caption_mask.unsqueeze(-1)).view({1, -1, cond.caption_tokens.size(2)});
  expect_parity(c, "y_proj", packed, c.io.at("y_proj"));
  EXPECT_TRUE(torch::equal(cond.caption_mask.sum(1), c.io.at("y_lens")));

  const int64_t p = c.model->config().patch_size;
  expect_parity(c, "pos_embed_used", c.model->positional_embedding(x.size(2) / p, x.size(3) / p), c.io.at("pos_embed_used"));
  expect_parity(c, "x_embed", c.model->x_embedder(x), c.io.at("x_embed"));
  torch::Tensor h = c.model->embed(x);
  expect_parity(c, "hidden.0", h, c.io.at("hidden.0"));
  for (int64_t j = 0; j < c.model->depth(); ++j) {
    h = c.model->block(j, h, cond);
    expect_parity(c, "hidden." + std::to_string(j + 1), h, c.io.at("hidden." + std::to_string(j + 1)));
  }
  expect_parity(c, "final_tokens", c.model->final_tokens(h, cond), c.io.at("final_tokens"));
  const torch::Tensor out = c.model->head(h, cond, x.size(2), x.size(3));
  expect_parity(c, "out", out, c.io.at("out"));
  EXPECT_TRUE(torch::equal(c.model->forward(x, t, inputs), out));
}

void expect_names_are_official_keys(const PixArtCase& c) {
  std::set<std::string> ours, official;
  for (const auto& p : c.model->named_parameters()) ours.insert(p.key());
  for (const auto& b : c.model->named_buffers()) ours.insert(b.key());
  for (const auto& [name, tensor] : read_safetensors(test::data_path(c.name + ".weights.safetensors")).tensors)
    official.insert(name);
  EXPECT_EQ(ours, official) << c.name;
}

}  // namespace

TEST(PixArtParity, AlphaEveryStageMatchesTheOfficialModel) {
  const PixArtCase c = load_pixart_case("pixart_tiny", R"({"num_heads": 4, "variant": "alpha"})");
  expect_names_are_official_keys(c);
  check_every_stage(c);
}

TEST(PixArtParity, AlphaMsNonSquareEveryStageMatchesTheOfficialModel) {
  const PixArtCase c = load_pixart_case("pixartms_tiny", R"({"num_heads": 4})");  // variant and lewei_scale from the weights
  EXPECT_EQ(c.model->config().variant, "alpha_ms");
  EXPECT_EQ(c.model->config().lewei_scale, 2.0);
  expect_names_are_official_keys(c);
  check_every_stage(c);
}

TEST(PixArtParity, SigmaEveryStageMatchesTheOfficialModel) {
  const PixArtCase c = load_pixart_case("pixart_sigma_tiny", R"({"num_heads": 4, "variant": "sigma", "pe_interpolation": 2.0})");
  expect_names_are_official_keys(c);
  check_every_stage(c);
}

TEST(PixArtParity, FreshPosEmbedBuffersEqualTheOfficialOnes) {
  for (const auto& [name, json] : std::vector<std::pair<std::string, std::string>>{
           {"pixart_tiny", R"({"num_heads": 4, "variant": "alpha", "lewei_scale": 1.0})"},
           {"pixartms_tiny", R"({"num_heads": 4, "lewei_scale": 2.0})"},
           {"pixart_sigma_tiny", R"({"num_heads": 4, "variant": "sigma", "pe_interpolation": 2.0})"}}) {
    const TensorMap weights = read_safetensors(test::data_path(name + ".weights.safetensors")).tensors;
    BackbonePtr model = make_backbone_for_weights(weights, test::model_spec(json, name));  // not loaded: pos_embed as computed
    EXPECT_TRUE(torch::equal(as_pixart(model)->pos_embed, weights.at("pos_embed"))) << name;
  }
}

TEST(PixArt, EachImageAttendsOnlyToItsOwnValidCaptionTokens) {
  // Image 1 of the batch with its padded caption gives the same result as image 1 alone with only
  // its valid tokens: the padding and the other image's tokens are invisible to it.
  const PixArtCase c = load_pixart_case("pixart_tiny", R"({"num_heads": 4, "variant": "alpha"})");
  torch::NoGradGuard no_grad;
  const torch::Tensor x = c.io.at("x"), t = c.io.at("timestep");
  const ConditionInputs batched = inputs_of(c);
  const torch::Tensor both = c.model->forward(x, t, batched);
  const int64_t valid = c.io.at("mask")[1].sum().item<int64_t>();  // 3 of 6
  ConditionInputs alone;
  alone.caption = c.io.at("y").narrow(0, 1, 1).narrow(2, 0, valid);
  const torch::Tensor single = c.model->forward(x.narrow(0, 1, 1), t.narrow(0, 1, 1), alone);
  EXPECT_LT(test::relative_error(single, both.narrow(0, 1, 1)), 1e-6);
  // Changing the masked-out tokens changes nothing.
  ConditionInputs noisy = batched;
  noisy.caption = batched.caption.clone();
  noisy.caption.narrow(0, 1, 1).narrow(2, valid, 6 - valid).normal_();
  EXPECT_TRUE(torch::equal(c.model->forward(x, t, noisy).narrow(0, 1, 1), both.narrow(0, 1, 1)));
}

TEST(PixArt, CaptionWithoutValidTokensGivesZeroCrossAttention) {
  const PixArtCase c = load_pixart_case("pixart_tiny", R"({"num_heads": 4, "variant": "alpha"})");
  torch::NoGradGuard no_grad;
  auto attn = std::dynamic_pointer_cast<PixArtBlockImpl>(c.model->block_module(0))->cross_attn;
  const torch::Tensor x = torch::randn({2, 5, 64}), context = torch::randn({2, 6, 64});
  const torch::Tensor mask = torch::tensor({{1, 1, 0, 0, 0, 0}, {0, 0, 0, 0, 0, 0}}).to(torch::kBool);
  const torch::Tensor out = attn->forward(x, context, mask);
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  // Zero attention output: only the projection bias remains.
  EXPECT_TRUE(torch::allclose(out[1], attn->proj->bias.expand({5, 64})));
}

TEST(PixArt, AlphaNullConditionIsTheYEmbeddingBufferWithAFullMask) {
  const PixArtCase c = load_pixart_case("pixart_tiny", R"({"num_heads": 4, "variant": "alpha"})");
  const ConditionInputs like = inputs_of(c);
  const ConditionInputs null = c.model->null_condition(like);
  EXPECT_TRUE(null.caption.sizes().equals(like.caption.sizes()));
  const torch::Tensor buffer =
      read_safetensors(test::data_path("pixart_tiny.weights.safetensors")).tensors.at("y_embedder.y_embedding");
  EXPECT_TRUE(torch::equal(null.caption[0][0], buffer));
  EXPECT_TRUE(torch::equal(null.caption[1][0], buffer));
  EXPECT_TRUE(torch::equal(null.caption_mask, torch::ones({2, 6}, torch::kInt64)));
  // Without a mask in `like`, a fully valid null caption needs none either.
  ConditionInputs unmasked = like;
  unmasked.caption_mask = torch::Tensor();
  EXPECT_FALSE(c.model->null_condition(unmasked).caption_mask.defined());
}

TEST(PixArt, SigmaNullConditionNeedsASuppliedNullCaption) {
  const PixArtCase c = load_pixart_case("pixart_sigma_tiny", R"({"num_heads": 4, "variant": "sigma", "pe_interpolation": 2.0})");
  const ConditionInputs like = inputs_of(c);  // (2, 1, 10, 32)
  try {
    c.model->null_condition(like);
    ADD_FAILURE() << "sigma produced a null condition without a null caption";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("set_null_caption"), std::string::npos) << e.what();
  }
  // A 4-token null caption with 1 valid token, padded to the batch's 10 tokens.
  const torch::Tensor null_caption = torch::randn({4, 32});
  c.model->set_null_caption(null_caption, torch::tensor({1, 0, 0, 0}));
  const ConditionInputs null = c.model->null_condition(like);
  EXPECT_TRUE(null.caption.sizes().equals(like.caption.sizes()));
  EXPECT_TRUE(torch::equal(null.caption[1][0].narrow(0, 0, 4), null_caption));
  EXPECT_TRUE(torch::equal(null.caption[1][0].narrow(0, 4, 6), torch::zeros({6, 32})));
  EXPECT_TRUE(torch::equal(null.caption_mask[0], torch::tensor({1, 0, 0, 0, 0, 0, 0, 0, 0, 0})));
  // The padded null caption behaves like the unpadded one.
  torch::NoGradGuard no_grad;
  const torch::Tensor x = c.io.at("x").narrow(0, 0, 1), t = c.io.at("timestep").narrow(0, 0, 1);
  ConditionInputs padded;
  padded.caption = null.caption.narrow(0, 0, 1);
  padded.caption_mask = null.caption_mask.narrow(0, 0, 1);
  ConditionInputs short_caption;
  short_caption.caption = null_caption.narrow(0, 0, 1).unsqueeze(0);
  EXPECT_LT(test::relative_error(c.model->forward(x, t, padded), c.model->forward(x, t, short_caption)), 1e-6);
  EXPECT_THROW(c.model->set_null_caption(torch::randn({4, 31})), Error);
}

TEST(PixArt, AlphaMsRequiresItsMicroConditions) {
  const PixArtCase c = load_pixart_case("pixartms_tiny", R"({"num_heads": 4})");
  ConditionInputs inputs = inputs_of(c);
  inputs.image_hw = torch::Tensor();
  EXPECT_THROW(c.model->condition(c.io.at("timestep"), inputs), Error);
  // One row of micro-conditions is broadcast over the batch, as the official SizeEmbedder does.
  torch::NoGradGuard no_grad;
  ConditionInputs one_row = inputs_of(c);
  one_row.image_hw = one_row.image_hw.narrow(0, 0, 1);
  one_row.aspect_ratio = one_row.aspect_ratio.narrow(0, 0, 1);
  EXPECT_LT(test::relative_error(c.model->condition(c.io.at("timestep"), one_row).head, c.io.at("t")), kPixArtTolerance);
}

TEST(PixArt, AlphaRejectsOtherSizesAndSigmaAcceptsThem) {
  const PixArtCase alpha = load_pixart_case("pixart_tiny", R"({"num_heads": 4, "variant": "alpha"})");
  EXPECT_THROW(alpha.model->embed(torch::zeros({1, 4, 8, 12})), Error);
  EXPECT_THROW(alpha.model->embed(torch::zeros({1, 4, 8, 7})), Error);
  const PixArtCase sigma =
      load_pixart_case("pixart_sigma_tiny", R"({"num_heads": 4, "variant": "sigma", "pe_interpolation": 2.0})");
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(sigma.model->embed(torch::zeros({1, 4, 6, 10})).sizes().equals({1, 15, 64}));
}

TEST(PixArtConfig, RefusesKvCompressionAndMisplacedOptions) {
  auto message = [](const std::string& json) {
    try {
      make_backbone(test::model_spec(json, "run.json"));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(message(R"({"family": "pixart", "variant": "sigma", "kv_compress": true})").find("model.kv_compress"),
            std::string::npos);
  EXPECT_NE(message(R"({"family": "pixart", "variant": "alpha", "qk_norm": true})").find("model.qk_norm"), std::string::npos);
  EXPECT_NE(message(R"({"family": "pixart", "variant": "alpha", "pe_interpolation": 2})").find("model.pe_interpolation"),
            std::string::npos);
  EXPECT_NE(message(R"({"family": "pixart", "variant": "sigma", "lewei_scale": 2})").find("model.lewei_scale"),
            std::string::npos);
  EXPECT_NE(message(R"({"family": "pixart", "variant": "beta"})").find("model.variant"), std::string::npos);
  EXPECT_NE(
      message(R"({"family": "pixart", "variant": "alpha_ms", "hidden_size": 64, "num_heads": 4})").find("model.hidden_size"),
      std::string::npos);
  EXPECT_EQ(
      message(R"({"family": "pixart", "variant": "sigma", "qk_norm": true, "hidden_size": 64, "num_heads": 4, "depth": 1})"), "");
}

TEST(PixArt, SigmaQkNormAddsTheOfficialKeys) {
  PixArtConfig config;
  config.variant = "sigma";
  config.hidden_size = 64;
  config.num_heads = 4;
  config.depth = 1;
  config.qk_norm = true;
  PixArtImpl model(config);
  const auto params = model.named_parameters();
  for (const std::string key :
       {"blocks.0.attn.q_norm.weight", "blocks.0.attn.q_norm.bias", "blocks.0.attn.k_norm.weight", "blocks.0.attn.k_norm.bias"})
    EXPECT_NE(params.find(key), nullptr) << key;
  torch::NoGradGuard no_grad;
  ConditionInputs inputs;
  inputs.caption = torch::randn({1, 3, 4096});
  EXPECT_TRUE(torch::isfinite(model.forward(torch::randn({1, 4, 8, 8}), torch::tensor({10.0}), inputs)).all().item<bool>());
}

// The pos embedding for non-square grids and scales that are not powers of 2, against numpy run
// the way the official code runs it (float32 grid; the alpha scale is a 1-tuple, so that division
// happens in float64; sigma's is a float, so it stays in float32). Needs python3 with numpy.
TEST(PixArt, PosEmbedMatchesNumpyForOtherGridsAndScales) {
  std::string python;
  for (const std::string candidate : {"/usr/bin/python3", "python3"})
    if (python.empty() && std::system((candidate + " -c \"import numpy\" > /dev/null 2>&1").c_str()) == 0) python = candidate;
  if (python.empty()) GTEST_SKIP() << "no python3 with numpy";
  const std::string dir = test::scratch_dir("pos_embed_numpy");
  const std::string program = R"(
import numpy as np, sys
def embed(dim, rows, cols, base, scale):
    r = np.arange(rows, dtype=np.float32) / (rows / base) / scale
    c = np.arange(cols, dtype=np.float32) / (cols / base) / scale
    cc, rr = np.meshgrid(c, r)
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    def half(pos):
        a = np.einsum('m,d->md', pos.reshape(-1), omega)
        return np.concatenate([np.sin(a), np.cos(a)], axis=1)
    return np.concatenate([half(cc), half(rr)], axis=1).astype(np.float32)
out = sys.argv[1]
embed(96, 5, 7, 4, (1.5,)).tofile(out + '/alpha.bin')
embed(96, 5, 7, 4, 0.7).tofile(out + '/sigma.bin')
)";
  std::ofstream(dir + "/embed.py") << program;
  ASSERT_EQ(std::system((python + " " + dir + "/embed.py " + dir).c_str()), 0);
  auto load = [&](const std::string& name) {
    std::ifstream in(dir + "/" + name, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.size(), 35u * 96u * 4u);
    return torch::from_blob(bytes.data(), {35, 96}, torch::kFloat32).clone();
  };
  EXPECT_TRUE(torch::equal(sincos_pos_embed_2d(96, 5, 7, 4, 1.5, GridScaleDivision::kFloat64), load("alpha.bin")));
  EXPECT_TRUE(torch::equal(sincos_pos_embed_2d(96, 5, 7, 4, 0.7, GridScaleDivision::kFloat32), load("sigma.bin")));
}
