// DiT parity with the official implementation (reference case dit_tiny): conditioning vectors, every
// hidden state, the final tokens, the output, and the classifier-free-guided outputs (official
// 3-channel slicing and the all-channel variant), each within max|ours - ref| / max|ref| < 1e-5.
#include <gtest/gtest.h>

#include <iostream>

#include "ilf/error.h"
#include "ilf/models/dit.h"
#include "ilf/models/weights.h"
#include "ilf/sampling/guidance.h"
#include "test_helpers.h"

using namespace ilf;

namespace {

constexpr double kDiTTolerance = 1e-5;

struct DiTCase {
  std::shared_ptr<DiTImpl> model;
  TensorMap io;
};

// The reference model: architecture from the weights, num_heads from the case's constructor.
DiTCase load_dit_case() {
  TensorMap weights = read_safetensors(test::data_path("dit_tiny.weights.safetensors")).tensors;
  auto model = as_dit(make_backbone_for_weights(weights, test::model_spec(R"({"num_heads": 4})", "test")));
  EXPECT_TRUE(model);
  load_backbone_weights(*model, std::move(weights), "dit_tiny.weights.safetensors");
  model->eval();
  return {model, read_safetensors(test::data_path("dit_tiny.io.safetensors")).tensors};
}

void expect_parity(const std::string& name, const torch::Tensor& ours, const torch::Tensor& ref) {
  ASSERT_TRUE(ours.sizes().equals(ref.sizes())) << name << ": shape " << ours.sizes() << " vs reference " << ref.sizes();
  const double err = test::relative_error(ours, ref);
  std::cout << "[parity] dit_tiny " << name << ": " << err << std::endl;
  EXPECT_LT(err, kDiTTolerance) << name;
}

}  // namespace

TEST(DiTParity, ParameterNamesAreTheOfficialKeys) {
  const TensorMap weights = read_safetensors(test::data_path("dit_tiny.weights.safetensors")).tensors;
  DiTConfig config = infer_dit_config(weights);
  config.num_heads = 4;
  DiTImpl model(config);
  std::set<std::string> ours, official;
  for (const auto& p : model.named_parameters()) ours.insert(p.key());
  for (const auto& b : model.named_buffers()) ours.insert(b.key());
  for (const auto& [name, tensor] : weights) official.insert(name);
  EXPECT_EQ(ours, official);
}

TEST(DiTParity, FreshPosEmbedEqualsTheOfficialBuffer) {
  const TensorMap weights = read_safetensors(test::data_path("dit_tiny.weights.safetensors")).tensors;
  DiTConfig config = infer_dit_config(weights);
  config.num_heads = 4;
  DiTImpl model(config);  // pos_embed computed, not loaded
  EXPECT_TRUE(torch::equal(model.pos_embed, weights.at("pos_embed")));
}

TEST(DiTParity, EveryStageMatchesTheOfficialModel) {
  DiTCase c = load_dit_case();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = c.io.at("x"), t = c.io.at("t"), y = c.io.at("y");
  expect_parity("t_emb", c.model->embed_timestep(t), c.io.at("t_emb"));
  expect_parity("y_emb", c.model->embed_labels(y), c.io.at("y_emb"));
  ConditionInputs inputs;
  inputs.class_labels = y;
  const Conditioning cond = c.model->condition(t, inputs);
  expect_parity("c", cond.block, c.io.at("c"));
  torch::Tensor h = c.model->embed(x);
  expect_parity("hidden.0", h, c.io.at("hidden.0"));
  for (int64_t j = 0; j < c.model->depth(); ++j) {
    h = c.model->block(j, h, cond);
    expect_parity("hidden." + std::to_string(j + 1), h, c.io.at("hidden." + std::to_string(j + 1)));
  }
  expect_parity("final_tokens", c.model->final_tokens(h, cond), c.io.at("final_tokens"));
  expect_parity("out", c.model->head(h, cond, x.size(2), x.size(3)), c.io.at("out"));
  // The one-call forward is the same computation.
  EXPECT_TRUE(torch::equal(c.model->forward(x, t, inputs), c.model->head(h, cond, x.size(2), x.size(3))));
}

TEST(DiTParity, GuidedOutputsMatchBothGuidanceVariants) {
  DiTCase c = load_dit_case();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = c.io.at("cfg.x");
  const int64_t half = x.size(0) / 2;
  const torch::Tensor combined = torch::cat({x.narrow(0, 0, half), x.narrow(0, 0, half)});  // as forward_with_cfg
  ConditionInputs inputs;
  inputs.class_labels = c.io.at("cfg.y");
  const torch::Tensor model_out = c.model->forward(combined, c.io.at("cfg.t"), inputs);
  expect_parity("cfg.model_out", model_out, c.io.at("cfg.model_out"));
  expect_parity("out_cfg (3 guided channels)", classifier_free_guidance(model_out, 4.0, 3), c.io.at("out_cfg"));
  expect_parity("out_cfg_all4", classifier_free_guidance(model_out, 4.0, c.model->in_channels()), c.io.at("out_cfg_all4"));
}

TEST(DiT, NullConditionIsTheNullClassAndMatchesTheReferenceRow) {
  DiTCase c = load_dit_case();
  ConditionInputs like;
  like.class_labels = torch::tensor({1, 5, 7}, torch::kInt64);
  const ConditionInputs null = c.model->null_condition(like);
  EXPECT_TRUE(torch::equal(null.class_labels, torch::full({3}, 10, torch::kInt64)));
  // The reference's third image uses the null class 10.
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(c.model->embed_labels(null.class_labels)[0], c.io.at("y_emb")[2]));
}

TEST(DiT, RejectsInputsOfAnotherSizeOrShape) {
  DiTCase c = load_dit_case();
  torch::NoGradGuard no_grad;
  for (const auto& shape : std::vector<std::vector<int64_t>>{{1, 4, 8, 12}, {1, 4, 16, 16}, {1, 3, 8, 8}, {4, 8, 8}}) {
    try {
      c.model->embed(torch::zeros(shape));
      ADD_FAILURE() << "accepted " << torch::IntArrayRef(shape);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("input_size"), std::string::npos) << e.what();
    }
  }
}

TEST(DiT, RejectsClassLabelsOutsideTheTable) {
  DiTCase c = load_dit_case();
  ConditionInputs inputs;
  inputs.class_labels = torch::tensor({0, 11}, torch::kInt64);
  EXPECT_THROW(c.model->condition(torch::tensor({1.0, 2.0}), inputs), Error);
  inputs.class_labels = torch::tensor({0, 1}, torch::kInt64);
  EXPECT_THROW(c.model->condition(torch::tensor({1.0, 2.0, 3.0}), inputs), Error);  // 3 timesteps, 2 labels
}

TEST(DiT, MadeBlocksHaveTheBackbonesBlockShapes) {
  DiTCase c = load_dit_case();
  const BlockPtr fresh = c.model->make_block();
  const BlockPtr existing = c.model->block_module(2);
  std::map<std::string, std::vector<int64_t>> a, b;
  for (const auto& p : fresh->named_parameters()) a[p.key()] = p.value().sizes().vec();
  for (const auto& p : existing->named_parameters()) b[p.key()] = p.value().sizes().vec();
  EXPECT_EQ(a, b);
  EXPECT_NE(std::dynamic_pointer_cast<DiTBlockImpl>(fresh), nullptr);
}

TEST(DiTConfig, PresetsHaveTheOfficialSizes) {
  const DiTConfig xl = DiTConfig::preset("DiT-XL/2");
  EXPECT_EQ(xl.depth, 28);
  EXPECT_EQ(xl.hidden_size, 1152);
  EXPECT_EQ(xl.num_heads, 16);
  EXPECT_EQ(xl.patch_size, 2);
  const DiTConfig s = DiTConfig::preset("DiT-S/8");
  EXPECT_EQ(s.depth, 12);
  EXPECT_EQ(s.hidden_size, 384);
  EXPECT_EQ(s.num_heads, 6);
  EXPECT_EQ(s.patch_size, 8);
  EXPECT_EQ(DiTConfig::preset("DiT-B/4").hidden_size, 768);
  EXPECT_EQ(DiTConfig::preset("DiT-L/2").depth, 24);
  EXPECT_THROW(DiTConfig::preset("DiT-XXL/2"), Error);
  EXPECT_THROW(DiTConfig::preset("DiT-XL/3"), Error);
}

TEST(DiTConfig, FromConfigReadsEveryKeyAndNamesTheJsonPathOnErrors) {
  BackbonePtr model = make_backbone(test::model_spec(R"({"family": "dit", "input_size": 16, "patch_size": 4, "in_channels": 3,
      "hidden_size": 96, "depth": 2, "num_heads": 6, "mlp_ratio": 2.0, "num_classes": 7, "learn_sigma": false})",
                                                     "run.json"));
  const DiTConfig& c = as_dit(model)->config();
  EXPECT_EQ(c.input_size, 16);
  EXPECT_EQ(c.patch_size, 4);
  EXPECT_EQ(model->in_channels(), 3);
  EXPECT_EQ(model->out_channels(), 3);
  EXPECT_EQ(model->depth(), 2);
  EXPECT_EQ(c.num_classes, 7);
  EXPECT_EQ(c.mlp_ratio, 2.0);

  try {
    make_backbone(test::model_spec(R"({"family": "dit", "hidden_size": 96, "num_heads": 5})", "run.json"));
    ADD_FAILURE() << "accepted 96 / 5 heads";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("run.json: model.num_heads"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_backbone(test::model_spec(R"({"family": "dit", "input_size": 9, "patch_size": 2})", "run.json")), Error);
}
