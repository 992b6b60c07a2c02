// Weight reading and loading: TorchScript, official-layout and diffusers-layout weights give the same
// model; every missing / unexpected / mis-shaped key is named in one error; KV compression, truncated
// files and contradicting configs are refused with errors naming the key or file; the architecture is
// inferred from the tensors; and scripts/export_weights.py round-trips the reference weights.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ilf/error.h"
#include "ilf/io/safetensors.h"
#include "ilf/models/weights.h"
#include "test_helpers.h"
#include "tool_test_support.h"

using namespace ilf;
using test::error_of;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TensorMap tensors_of(const std::string& name) { return read_safetensors(test::data_path(name)).tensors; }

BackbonePtr build(const TensorMap& weights, const std::string& model_json) {
  return make_backbone_for_weights(weights, test::model_spec(model_json, "test.json"));
}

void expect_same_tensors(const TensorMap& a, const TensorMap& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, tensor] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    EXPECT_TRUE(torch::equal(tensor, b.at(name))) << name;
  }
}

// Runs the pixart_tiny reference inputs through `model`.
torch::Tensor pixart_tiny_output(Backbone& model) {
  const TensorMap io = tensors_of("pixart_tiny.io.safetensors");
  ConditionInputs inputs;
  inputs.caption = io.at("y");
  inputs.caption_mask = io.at("mask");
  torch::NoGradGuard no_grad;
  model.eval();
  return model.forward(io.at("x"), io.at("timestep"), inputs);
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

const char* kPixArtAlpha = R"({"num_heads": 4, "variant": "alpha"})";

}  // namespace

TEST(Weights, TorchScriptArchiveHoldsTheOfficialTensors) {
  expect_same_tensors(read_weights(test::data_path("pixart_tiny.torchscript.pt")), tensors_of("pixart_tiny.weights.safetensors"));
}

TEST(Weights, DiffusersLayoutConvertsToTheOfficialKeys) {
  WeightLayout layout = WeightLayout::kOfficial;
  const TensorMap converted = to_official_layout(tensors_of("pixart_tiny.diffusers.safetensors"), "diffusers", &layout);
  EXPECT_EQ(layout, WeightLayout::kDiffusersPixArt);
  TensorMap official = tensors_of("pixart_tiny.weights.safetensors");
  official.erase("pos_embed");  // diffusers stores neither of these
  official.erase("y_embedder.y_embedding");
  expect_same_tensors(converted, official);
}

// The official tiny DiT in diffusers' DiTTransformer2DModel layout (the inverse of the conversion, as
// diffusers' conversion script writes it): q, k, v split, and every block holding a copy of the timestep
// and class embedders. tests/exporters/check_backbones.py checks the real diffusers model.
TensorMap dit_tiny_in_diffusers_layout() {
  TensorMap official = tensors_of("dit_tiny.weights.safetensors"), d;
  const int64_t depth = infer_dit_config(official).depth;
  auto rename = [&](const std::string& from, const std::string& to) {
    for (const std::string p : {".weight", ".bias"})
      if (official.count(from + p)) d[to + p] = official.at(from + p);
  };
  rename("x_embedder.proj", "pos_embed.proj");
  rename("final_layer.adaLN_modulation.1", "proj_out_1");
  rename("final_layer.linear", "proj_out_2");
  for (int64_t i = 0; i < depth; ++i) {
    const std::string o = "blocks." + std::to_string(i) + ".", b = "transformer_blocks." + std::to_string(i) + ".";
    rename(o + "adaLN_modulation.1", b + "norm1.linear");
    rename(o + "attn.proj", b + "attn1.to_out.0");
    rename(o + "mlp.fc1", b + "ff.net.0.proj");
    rename(o + "mlp.fc2", b + "ff.net.2");
    rename("t_embedder.mlp.0", b + "norm1.emb.timestep_embedder.linear_1");
    rename("t_embedder.mlp.2", b + "norm1.emb.timestep_embedder.linear_2");
    d[b + "norm1.emb.class_embedder.embedding_table.weight"] = official.at("y_embedder.embedding_table.weight");
    for (const std::string p : {".weight", ".bias"}) {
      const std::vector<torch::Tensor> qkv = official.at(o + "attn.qkv" + p).chunk(3, 0);
      d[b + "attn1.to_q" + p] = qkv[0];
      d[b + "attn1.to_k" + p] = qkv[1];
      d[b + "attn1.to_v" + p] = qkv[2];
    }
  }
  return d;
}

TEST(Weights, DiffusersDiTLayoutConvertsToTheOfficialKeysWithDiffusersNumerics) {
  WeightLayout layout = WeightLayout::kOfficial;
  const TensorMap diffusers = dit_tiny_in_diffusers_layout();
  const TensorMap converted = to_official_layout(diffusers, "diffusers", &layout);
  EXPECT_EQ(layout, WeightLayout::kDiffusersDiT);
  TensorMap official = tensors_of("dit_tiny.weights.safetensors");
  official.erase("pos_embed");  // diffusers does not store it
  expect_same_tensors(converted, official);
  EXPECT_EQ(detect_family(diffusers), "dit");

  // diffusers' DiT forward: timestep frequencies / (half - 1), LayerNorm eps 1e-5 before the MLP.
  const DiTConfig inferred = infer_dit_config(diffusers);
  EXPECT_EQ(inferred.timestep_freq_shift, 1);
  EXPECT_EQ(inferred.mlp_norm_eps, 1e-5);
  EXPECT_EQ(infer_dit_config(tensors_of("dit_tiny.weights.safetensors")).timestep_freq_shift, 0);
  BackbonePtr model = build(diffusers, R"({"num_heads": 4, "input_size": 8})");
  EXPECT_NO_THROW(load_backbone_weights(*model, diffusers, "diffusers"));
  EXPECT_EQ(model->architecture_json().at("timestep_freq_shift"), 1);
  const torch::Tensor t = torch::tensor({0.0, 17.0, 999.0});
  const torch::Tensor k = torch::arange(128, torch::kFloat64);
  const torch::Tensor args = t.to(torch::kFloat64).unsqueeze(1) * torch::exp(-std::log(10000.0) * k / 127).unsqueeze(0);
  const torch::Tensor expected = torch::cat({args.cos(), args.sin()}, 1);  // float64; ours is float32 (args up to 999)
  EXPECT_LT(test::relative_error(timestep_embedding(t, 256, 10000.0, 1), expected), 1e-4);
  EXPECT_GT(test::relative_error(timestep_embedding(t, 256, 10000.0, 0), expected), 1e-2);

  // Blocks with different embedder copies cannot be one official DiT.
  TensorMap different = diffusers;
  const std::string key = "transformer_blocks.1.norm1.emb.timestep_embedder.linear_1.bias";
  different[key] = different[key] + 1;
  const std::string error = error_of([&] { to_official_layout(different, "dit.safetensors"); });
  EXPECT_TRUE(contains(error, "dit.safetensors") && contains(error, key) && contains(error, "block 0")) << error;
}

TEST(Weights, OfficialTorchScriptAndDiffusersLayoutsGiveIdenticalOutputs) {
  const TensorMap official = tensors_of("pixart_tiny.weights.safetensors");
  BackbonePtr a = build(official, kPixArtAlpha);
  load_backbone_weights(*a, official, "official");

  const TensorMap script = read_weights(test::data_path("pixart_tiny.torchscript.pt"));
  BackbonePtr b = build(script, kPixArtAlpha);
  load_backbone_weights(*b, script, "torchscript");

  // diffusers stores no pos_embed: input_size and lewei_scale come from the config.
  const TensorMap diffusers = read_weights(test::data_path("pixart_tiny.diffusers.safetensors"));
  BackbonePtr c = build(diffusers, R"({"num_heads": 4, "variant": "alpha", "input_size": 8, "lewei_scale": 1.0})");
  load_backbone_weights(*c, diffusers, "diffusers");

  const torch::Tensor out = pixart_tiny_output(*a);
  EXPECT_LT(test::relative_error(out, tensors_of("pixart_tiny.io.safetensors").at("out")), 1e-5);
  EXPECT_TRUE(torch::equal(pixart_tiny_output(*b), out));
  EXPECT_TRUE(torch::equal(pixart_tiny_output(*c), out));

  // Without y_embedding the alpha model has no built-in null caption any more.
  ConditionInputs like;
  like.caption = torch::zeros({1, 6, 32});
  EXPECT_NO_THROW(a->null_condition(like));
  EXPECT_TRUE(contains(error_of([&] { c->null_condition(like); }), "y_embedder.y_embedding"));
  as_pixart(c)->set_null_caption(torch::zeros({6, 32}));
  EXPECT_NO_THROW(c->null_condition(like));
}

TEST(Weights, MissingUnexpectedAndMisshapenKeysAreAllNamedInOneError) {
  const TensorMap good = tensors_of("dit_tiny.weights.safetensors");
  BackbonePtr model = build(good, R"({"num_heads": 4})");
  const torch::Tensor before = model->named_parameters()["t_embedder.mlp.0.weight"].clone();
  TensorMap broken = good;
  broken.erase("blocks.1.mlp.fc2.bias");
  broken.erase("final_layer.linear.weight");
  broken["blocks.0.attn.extra"] = torch::zeros({3});
  broken["t_block.1.weight"] = torch::zeros({3});
  broken["blocks.2.attn.qkv.weight"] = torch::zeros({64, 64});
  const std::string message = error_of([&] { load_backbone_weights(*model, broken, "broken.safetensors"); });
  for (const std::string part :
       {"broken.safetensors", "2 missing", "blocks.1.mlp.fc2.bias", "final_layer.linear.weight", "2 unexpected",
        "blocks.0.attn.extra", "t_block.1.weight", "1 wrong shape", "blocks.2.attn.qkv.weight (file [64, 64], model [192, 64])"})
    EXPECT_TRUE(contains(message, part)) << "missing \"" << part << "\" in: " << message;
  // Nothing was loaded.
  EXPECT_TRUE(torch::equal(model->named_parameters()["t_embedder.mlp.0.weight"], before));
  // A complete set loads, and only pos_embed may be absent.
  TensorMap without_pos = good;
  without_pos.erase("pos_embed");
  EXPECT_NO_THROW(load_backbone_weights(*model, without_pos, "no_pos.safetensors"));
  EXPECT_TRUE(torch::equal(model->named_parameters()["t_embedder.mlp.0.weight"], good.at("t_embedder.mlp.0.weight")));
}

TEST(Weights, KvCompressionIsRefusedNamingTheKey) {
  TensorMap weights = tensors_of("pixart_sigma_tiny.weights.safetensors");
  BackbonePtr model = build(weights, R"({"num_heads": 4, "variant": "sigma", "pe_interpolation": 2.0})");
  weights["blocks.1.attn.sr.weight"] = torch::ones({64, 1, 2, 2});
  weights["blocks.1.attn.sr.bias"] = torch::zeros({64});
  EXPECT_TRUE(contains(error_of([&] { load_backbone_weights(*model, weights, "kv.safetensors"); }), "blocks.1.attn.sr."));
  EXPECT_TRUE(contains(error_of([&] { build(weights, R"({"num_heads": 4, "variant": "sigma"})"); }), "KV compression"));
  EXPECT_TRUE(contains(error_of([&] {
                         build(tensors_of("pixart_sigma_tiny.weights.safetensors"),
                               R"({"num_heads": 4, "variant": "sigma", "pe_interpolation": 2.0, "kv_compress": true})");
                       }),
                       "model.kv_compress"));
}

TEST(Weights, TruncatedFilesAreErrorsNamingTheFile) {
  const std::string dir = test::scratch_dir("weights_truncated");
  const std::string safetensors = dir + "/half.safetensors", script = dir + "/half.torchscript.pt";
  const std::string st_bytes = read_bytes(test::data_path("dit_tiny.weights.safetensors"));
  write_bytes(safetensors, st_bytes.substr(0, st_bytes.size() / 2));
  EXPECT_TRUE(contains(error_of([&] { read_weights(safetensors); }), safetensors));
  const std::string ts_bytes = read_bytes(test::data_path("pixart_tiny.torchscript.pt"));
  write_bytes(script, ts_bytes.substr(0, ts_bytes.size() / 2));
  EXPECT_TRUE(contains(error_of([&] { read_weights(script); }), script));
  EXPECT_TRUE(contains(error_of([&] { read_weights(dir + "/absent.safetensors"); }), "absent.safetensors"));
}

TEST(Weights, InfersTheArchitectureFromTheTensors) {
  const DiTConfig dit = infer_dit_config(tensors_of("dit_tiny.weights.safetensors"));
  EXPECT_EQ(dit.depth, 4);
  EXPECT_EQ(dit.hidden_size, 64);
  EXPECT_EQ(dit.patch_size, 2);
  EXPECT_EQ(dit.in_channels, 4);
  EXPECT_EQ(dit.input_size, 8);
  EXPECT_EQ(dit.num_classes, 10);
  EXPECT_EQ(dit.mlp_ratio, 4.0);
  EXPECT_TRUE(dit.learn_sigma);

  const PixArtConfig alpha = infer_pixart_config(tensors_of("pixart_tiny.weights.safetensors"));
  EXPECT_EQ(alpha.depth, 4);
  EXPECT_EQ(alpha.hidden_size, 64);
  EXPECT_EQ(alpha.caption_channels, 32);
  EXPECT_EQ(alpha.model_max_length, 6);
  EXPECT_EQ(alpha.input_size, 8);
  EXPECT_TRUE(alpha.pred_sigma);
  EXPECT_FALSE(alpha.qk_norm);
  EXPECT_FALSE(alpha.kv_compress);
  EXPECT_EQ(alpha.variant, "alpha");

  const PixArtConfig ms = infer_pixart_config(tensors_of("pixartms_tiny.weights.safetensors"));
  EXPECT_EQ(ms.variant, "alpha_ms");
  EXPECT_EQ(ms.depth, 3);
  EXPECT_EQ(ms.hidden_size, 96);
  const PixArtConfig sigma = infer_pixart_config(tensors_of("pixart_sigma_tiny.weights.safetensors"));
  EXPECT_EQ(sigma.depth, 3);
  EXPECT_EQ(sigma.model_max_length, 10);

  const PixArtConfig diffusers = infer_pixart_config(tensors_of("pixart_tiny.diffusers.safetensors"));
  EXPECT_EQ(diffusers.depth, 4);
  EXPECT_EQ(diffusers.input_size, 0);  // no pos_embed: unknown

  EXPECT_EQ(detect_family(tensors_of("dit_tiny.weights.safetensors")), "dit");
  EXPECT_EQ(detect_family(tensors_of("pixart_sigma_tiny.weights.safetensors")), "pixart");
  EXPECT_EQ(detect_family(tensors_of("pixart_tiny.diffusers.safetensors")), "pixart");
}

TEST(Weights, EachFamilyOfTheRegistryBuildsItsOwnWeightsAndSpecs) {
  // Every family's marker key picks its own weights, and both ways of building reach the family's model.
  std::vector<std::string> names;
  for (const BackboneFamily& family : backbone_families()) {
    names.push_back(family.name);
    EXPECT_EQ(find_backbone_family(family.name), &family);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"dit", "pixart"}));
  EXPECT_EQ(find_backbone_family("unet"), nullptr);
  const BackbonePtr dit = build(tensors_of("dit_tiny.weights.safetensors"), R"({"num_heads": 4})");
  EXPECT_EQ(dit->family(), "dit");
  const BackbonePtr pixart = build(tensors_of("pixart_sigma_tiny.weights.safetensors"),
                                   R"({"num_heads": 4, "variant": "sigma", "pe_interpolation": 2.0})");
  EXPECT_EQ(pixart->family(), "pixart");
  EXPECT_EQ(pixart->variant(), "sigma");
  EXPECT_EQ(make_backbone(test::model_spec(R"({"family": "pixart", "hidden_size": 24, "depth": 2, "num_heads": 2,
                                              "caption_channels": 8, "input_size": 8})"))
                ->family(),
            "pixart");
  // A family the registry lacks (a ModelSpec filled by code, not by the config layer) is refused by name.
  ModelSpec unknown;
  unknown.source = "test.json";
  unknown.family = "unet";
  const std::string message = error_of([&] { make_backbone(unknown); });
  EXPECT_TRUE(contains(message, "model.family")) << message;
  EXPECT_TRUE(contains(message, "\"dit\" or \"pixart\" (got \"unet\")")) << message;
  EXPECT_TRUE(contains(error_of([&] { make_backbone(ModelSpec{}); }), "given: \"dit\" or \"pixart\""));
}

TEST(Weights, WhatTheWeightsCannotTellMustComeFromTheConfig) {
  const TensorMap alpha = tensors_of("pixart_tiny.weights.safetensors");
  EXPECT_TRUE(contains(error_of([&] { build(alpha, R"({"num_heads": 4})"); }), "model.variant"));
  EXPECT_TRUE(contains(error_of([&] { build(alpha, R"({"variant": "alpha"})"); }), "model.num_heads"));
  const TensorMap diffusers = tensors_of("pixart_tiny.diffusers.safetensors");
  EXPECT_TRUE(contains(error_of([&] { build(diffusers, R"({"num_heads": 4, "variant": "alpha", "lewei_scale": 1})"); }),
                       "model.input_size"));
  EXPECT_TRUE(contains(error_of([&] { build(diffusers, R"({"num_heads": 4, "variant": "alpha", "input_size": 8})"); }),
                       "model.lewei_scale"));
  // Config values that contradict the weights.
  const TensorMap dit = tensors_of("dit_tiny.weights.safetensors");
  EXPECT_TRUE(contains(error_of([&] { build(dit, R"({"num_heads": 4, "depth": 28})"); }), "model.depth"));
  EXPECT_TRUE(contains(error_of([&] { build(dit, R"({"num_heads": 4, "family": "pixart"})"); }), "model.family"));
  EXPECT_TRUE(contains(
      error_of([&] { build(tensors_of("pixartms_tiny.weights.safetensors"), R"({"num_heads": 4, "variant": "sigma"})"); }),
      "model.variant"));
  // Without model.num_heads, an official width implies the official head count (DiT-S: 384 / 6).
  DiTConfig small = DiTConfig::preset("DiT-S/2");
  small.depth = 1;
  small.input_size = 4;
  small.num_classes = 2;
  DiTImpl reference(small);
  TensorMap small_weights;
  for (const auto& p : reference.named_parameters()) small_weights[p.key()] = p.value();
  for (const auto& b : reference.named_buffers()) small_weights[b.key()] = b.value();
  EXPECT_EQ(infer_dit_config(small_weights).num_heads, 0);
  EXPECT_EQ(as_dit(build(small_weights, R"({"depth": 1})"))->config().num_heads, 6);
}

TEST(Weights, WrappedStateDictsAreAccepted) {
  TensorMap wrapped;
  for (const auto& [name, tensor] : tensors_of("dit_tiny.weights.safetensors")) wrapped["state_dict." + name] = tensor;
  wrapped["epoch"] = torch::zeros({1});
  const TensorMap unwrapped = to_official_layout(wrapped, "checkpoint");
  expect_same_tensors(unwrapped, tensors_of("dit_tiny.weights.safetensors"));
  BackbonePtr model = build(wrapped, R"({"num_heads": 4})");
  EXPECT_NO_THROW(load_backbone_weights(*model, wrapped, "checkpoint"));
  TensorMap unknown;
  unknown["encoder.weight"] = torch::zeros({2});
  EXPECT_TRUE(contains(error_of([&] { to_official_layout(unknown, "other.safetensors"); }), "other.safetensors"));
}

TEST(Weights, FolderOfSafetensorsShardsIsRead) {
  const std::string dir = test::scratch_dir("weights_folder");
  std::filesystem::create_directories(dir + "/transformer");
  const TensorMap all = tensors_of("dit_tiny.weights.safetensors");
  TensorMap first, second;
  for (const auto& [name, tensor] : all) (name < "blocks.2" ? first : second)[name] = tensor;
  write_safetensors(dir + "/transformer/model-00001-of-00002.safetensors", first);
  write_safetensors(dir + "/transformer/model-00002-of-00002.safetensors", second);
  expect_same_tensors(read_weights(dir), all);  // a pipeline folder: looks into transformer/
  expect_same_tensors(read_weights(dir + "/transformer"), all);
  EXPECT_TRUE(contains(error_of([&] { read_weights(test::scratch_dir("weights_empty_folder")); }), "no *.safetensors"));
}

TEST(Weights, MixedPrecisionIsRefusedOffCuda) {
  BackbonePtr model = build(tensors_of("dit_tiny.weights.safetensors"), R"({"num_heads": 4})");
  EXPECT_THROW(move_backbone(*model, torch::kCPU, torch::kBFloat16), Error);
  EXPECT_NO_THROW(move_backbone(*model, torch::kCPU, torch::kFloat32));
  EXPECT_EQ(parse_dtype("bf16"), torch::kBFloat16);
  EXPECT_THROW(parse_dtype("int8"), Error);
}

// scripts/export_weights.py where PyTorch is installed: a PixArt .pth checkpoint (a dict holding
// state_dict) and a diffusers safetensors file, exported to TorchScript + safetensors, read back equal.
TEST(ExportWeights, ScriptRoundTripsTheReferenceWeights) {
  const std::string python = "/usr/bin/python3";
  if (std::system((python + " -c \"import torch\" > /dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << python << " cannot import torch: the export script cannot run here";
  const std::string dir = test::scratch_dir("export_weights");
  const std::string script = std::string(ILF_SOURCE_DIR) + "/scripts/export_weights.py";
  const std::string pth = dir + "/pixart_tiny.pth";
  // An official-style checkpoint: torch.save({"state_dict": ...}) from the reference TorchScript archive.
  const std::string make_pth = python + " -c \"import torch; m = torch.jit.load('" +
                               test::data_path("pixart_tiny.torchscript.pt") +
                               "'); torch.save({'state_dict': dict(m.state_dict())}, '" + pth + "')\"";
  ASSERT_EQ(std::system(make_pth.c_str()), 0);
  const TensorMap official = tensors_of("pixart_tiny.weights.safetensors");
  // LibTorch cannot read the checkpoint itself: the error points to the script.
  EXPECT_TRUE(contains(error_of([&] { read_weights(pth); }), "export_weights.py"));

  const std::string export_pth = python + " " + script + " " + pth + " --torchscript " + dir +
                                 "/a.torchscript.pt --safetensors " + dir + "/a.safetensors > " + dir + "/log_a.txt 2>&1";
  ASSERT_EQ(std::system(export_pth.c_str()), 0) << read_bytes(dir + "/log_a.txt");
  expect_same_tensors(read_weights(dir + "/a.torchscript.pt"), official);
  expect_same_tensors(read_weights(dir + "/a.safetensors"), official);

  const std::string export_diffusers = python + " " + script + " " + test::data_path("pixart_tiny.diffusers.safetensors") +
                                       " --torchscript " + dir + "/b.torchscript.pt --safetensors " + dir + "/b.safetensors > " +
                                       dir + "/log_b.txt 2>&1";
  ASSERT_EQ(std::system(export_diffusers.c_str()), 0) << read_bytes(dir + "/log_b.txt");
  const TensorMap diffusers = tensors_of("pixart_tiny.diffusers.safetensors");
  expect_same_tensors(read_weights(dir + "/b.torchscript.pt"), diffusers);
  expect_same_tensors(read_weights(dir + "/b.safetensors"), diffusers);
}

// ---------------------------------------------------------------------------------------------
// Crashes by signal: a 0x0 patch kernel (SIGFPE while inferring the size from the weights).

TEST(HardeningWeights, ZeroSizePatchKernelIsAnErrorNamingTheKey) {
  for (const std::string file : {"dit_tiny.weights.safetensors", "pixart_tiny.weights.safetensors"}) {
    TensorMap w = read_safetensors(test::data_path(file)).tensors;
    const torch::Tensor& kernel = w.at("x_embedder.proj.weight");
    for (const std::vector<int64_t>& shape :
         {std::vector<int64_t>{kernel.size(0), kernel.size(1), 0, 0}, std::vector<int64_t>{kernel.size(0), kernel.size(1), 2, 0},
          std::vector<int64_t>{kernel.size(0), kernel.size(1), 2, 1}, std::vector<int64_t>{kernel.size(0)}}) {
      w["x_embedder.proj.weight"] = torch::zeros(shape);
      const std::string message = test::any_error_of([&] {
        if (file.rfind("dit", 0) == 0)
          infer_dit_config(w, file);
        else
          infer_pixart_config(w, file);
      });
      EXPECT_NE(message.find("x_embedder.proj.weight"), std::string::npos) << file << " " << message;
      EXPECT_NE(message.find(file), std::string::npos) << message;
    }
  }
}

TEST(HardeningWeights, ZeroSizePatchKernelFileGivesAToolError) {
  const std::string dir = test::scratch_dir("hardening_patch_tool");
  TensorMap w = read_safetensors(test::data_path("dit_tiny.weights.safetensors")).tensors;
  w["x_embedder.proj.weight"] =
      torch::zeros({w.at("x_embedder.proj.weight").size(0), w.at("x_embedder.proj.weight").size(1), 0, 0});
  write_safetensors(dir + "/w.safetensors", w);
  const int code = test::run_tool("ilf_forward",
                                  "--weights " + dir + "/w.safetensors --inputs " + test::data_path("dit_tiny.io.safetensors") +
                                      " --out " + dir + "/out.safetensors --set model.num_heads=4",
                                  dir + "/log.txt");
  EXPECT_EQ(code, 1) << test::read_file(dir + "/log.txt");
  EXPECT_NE(test::read_file(dir + "/log.txt").find("x_embedder.proj.weight"), std::string::npos)
      << test::read_file(dir + "/log.txt");
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.safetensors"));
}

// ---------------------------------------------------------------------------------------------
// Issue 33: non-finite values never reach a file. A single NaN in the backbone gave a black PNG at exit
// 0 and ilf_forward outputs of all NaN; weights are now checked at load, naming the file and tensor.

TEST(HardeningNonFinite, WeightsWithNaNOrInfAreRefusedAtLoadNamingFileAndTensor) {
  const std::string dir = test::scratch_dir("hardening_nonfinite_weights");
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
    TensorMap w = tensors_of("dit_tiny.weights.safetensors");
    w["blocks.1.attn.qkv.weight"] = w.at("blocks.1.attn.qkv.weight").clone();
    w["blocks.1.attn.qkv.weight"].view(-1)[17] = bad;
    const std::string path = dir + "/w.safetensors";
    write_safetensors(path, w);
    const std::string message = error_of([&] { read_weights(path); });
    EXPECT_TRUE(contains(message, path)) << message;
    EXPECT_TRUE(contains(message, "blocks.1.attn.qkv.weight")) << message;
    EXPECT_TRUE(contains(message, "1 NaN or Inf value")) << message;
    // The tool: exit 1, one line naming the tensor, no output file.
    const int code = test::run_tool("ilf_forward",
                                    "--weights " + path + " --inputs " + test::data_path("dit_tiny.io.safetensors") + " --out " +
                                        dir + "/out.safetensors --set model.num_heads=4",
                                    dir + "/log.txt");
    EXPECT_EQ(code, 1) << test::read_file(dir + "/log.txt");
    EXPECT_TRUE(contains(test::read_file(dir + "/log.txt"), "blocks.1.attn.qkv.weight")) << test::read_file(dir + "/log.txt");
    EXPECT_FALSE(std::filesystem::exists(dir + "/out.safetensors"));
  }
  // The unchanged file loads (the check reads only).
  EXPECT_EQ(error_of([] { read_weights(test::data_path("dit_tiny.weights.safetensors")); }), "");
}

TEST(HardeningNonFinite, ForwardOutputsThatOverflowAreNotWritten) {
  // Finite weights and inputs whose forward overflows: ilf_forward refuses to write the NaN / Inf outputs.
  const std::string dir = test::scratch_dir("hardening_nonfinite_forward");
  TensorMap io = tensors_of("dit_tiny.io.safetensors");
  io["x"] = torch::full_like(io.at("x"), 3e38f);
  write_safetensors(dir + "/io.safetensors", io);
  const int code = test::run_tool("ilf_forward",
                                  "--weights " + test::data_path("dit_tiny.weights.safetensors") + " --inputs " + dir +
                                      "/io.safetensors --out " + dir + "/out.safetensors --set model.num_heads=4",
                                  dir + "/log.txt");
  const std::string text = test::read_file(dir + "/log.txt");
  EXPECT_EQ(code, 1) << text;
  EXPECT_TRUE(contains(text, "NaN or Inf")) << text;
  EXPECT_TRUE(contains(text, "nothing written")) << text;
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.safetensors"));
}

// The cost of the load check, not a test (run with --gtest_also_run_disabled_tests
// --gtest_filter='*FiniteCheckCost*'): 600M float32 parameters, the size of the largest preset
// (PixArt-XL/2, 611M), in tensors of a PixArt-XL block's shapes; prints the check's seconds per size.
TEST(HardeningNonFinite, DISABLED_FiniteCheckCostOnTheLargestPresetSize) {
  torch::manual_seed(0);
  std::printf("%-14s %-10s %-12s %-12s\n", "parameters", "GB f32", "check s", "GB/s");
  for (const int64_t millions : {60, 300, 600}) {
    TensorMap w;
    int64_t total = 0;
    for (int64_t i = 0; total < millions * 1000000; ++i) {
      w["t" + std::to_string(i)] = torch::randn({1152, 4608});  // an MLP matrix of PixArt-XL
      total += 1152 * 4608;
    }
    const auto start = std::chrono::steady_clock::now();
    require_finite_tensors(w, "bench");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double gb = static_cast<double>(total) * 4 / 1e9;
    std::printf("%-14lld %-10.2f %-12.3f %-12.2f\n", static_cast<long long>(total), gb, seconds, gb / seconds);
  }
}
