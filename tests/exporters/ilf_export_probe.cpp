// ilf_export_probe: the C++ half of the exporter checks in tests/exporters/. The Python checks build tiny
// random models with the real diffusers / transformers / safetensors libraries, run the project's
// exporters on them, and need the project's own reading of the exported files to compare against the
// libraries' outputs. Backbones go through the ilf_forward tool; the pieces no tool exposes on their
// own (the T5 tokenizer, the TorchScript text encoder, the TorchScript VAE and the safetensors reader)
// go through this test-only program, which calls the same library classes the pipelines use and writes
// what they return to a safetensors file for the Python side to compare.
//
//   ilf_export_probe tokenize     --spiece M --max-length L --prompts P.json --out O.safetensors
//   ilf_export_probe encode-text  --encoder T.pt --spiece M --max-length L --prompts P.json --out O.safetensors
//   ilf_export_probe vae          --decoder D.pt --encoder E.pt --scale S --inputs I.safetensors --out O.safetensors
//   ilf_export_probe copy-safetensors --in F.safetensors --out O.safetensors
//   ilf_export_probe libtorch-version
//
// P.json is a JSON list of prompts. tokenize writes input_ids / attention_mask (B, L) as
// T5Tokenizer::tokenize gives them, and every prompt's untruncated T5Tokenizer::encode ids in
// `encoded` (concatenated) with their counts in `encoded_lengths`. encode-text writes the TextEncoder's
// `features` (B, L, C) and `mask` (B, L), prompts taken as they are (no lower-casing). vae reads
// `latents` and/or `images` and writes TorchScriptVae::decode(latents) as `decoded` and
// TorchScriptVae::encode(images) as `encoded`. copy-safetensors reads a file with ilf::read_safetensors
// and writes what it read (tensors, dtypes and metadata) with ilf::write_safetensors.
#include <CLI/CLI.hpp>
#include <torch/torch.h>
#include <torch/version.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "ilf/error.h"
#include "ilf/io/safetensors.h"
#include "ilf/models/vae.h"
#include "ilf/text/t5_tokenizer.h"
#include "ilf/text/text_encoder.h"
#include "tool_common.h"

using namespace ilf;

namespace {

std::vector<std::string> read_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open the prompts file");
  const nlohmann::json prompts = nlohmann::json::parse(in);
  if (!prompts.is_array()) throw Error(path + ": expected a JSON list of prompts");
  return prompts.get<std::vector<std::string>>();
}

int tokenize(const std::string& spiece, int64_t max_length, const std::string& prompts_file, const std::string& out) {
  const T5Tokenizer tokenizer(spiece, max_length);
  const std::vector<std::string> prompts = read_prompts(prompts_file);
  const TokenizedBatch batch = tokenizer.tokenize(prompts);
  std::vector<int64_t> encoded, lengths;
  for (const auto& prompt : prompts) {
    const std::vector<int64_t> ids = tokenizer.encode(prompt);
    encoded.insert(encoded.end(), ids.begin(), ids.end());
    lengths.push_back(static_cast<int64_t>(ids.size()));
  }
  write_safetensors(out, {{"input_ids", batch.input_ids},
                          {"attention_mask", batch.attention_mask},
                          {"encoded", torch::tensor(encoded, torch::kInt64)},
                          {"encoded_lengths", torch::tensor(lengths, torch::kInt64)}});
  return 0;
}

int encode_text(const std::string& encoder_path, const std::string& spiece, int64_t max_length, const std::string& prompts_file,
                const std::string& out) {
  TextEncoderOptions options;
  options.max_length = max_length;
  options.lowercase = false;
  options.cache_capacity = 0;
  TextEncoder encoder(encoder_path, spiece, options, torch::kCPU);
  const CaptionEmbeddings e = encoder.encode(read_prompts(prompts_file));
  write_safetensors(out, {{"features", e.features}, {"mask", e.mask}});
  return 0;
}

int vae(const std::string& decoder, const std::string& encoder, double scale, const std::string& inputs_file,
        const std::string& out) {
  TorchScriptVae vae(decoder, encoder, scale, torch::kCPU);
  const TensorMap inputs = read_safetensors(inputs_file).tensors;
  TensorMap outputs;
  torch::NoGradGuard no_grad;
  if (vae.has_decoder()) outputs["decoded"] = vae.decode(require_tensor(inputs, "latents", inputs_file));
  if (vae.has_encoder()) outputs["encoded"] = vae.encode(require_tensor(inputs, "images", inputs_file));
  write_safetensors(out, outputs);
  return 0;
}

int copy_safetensors(const std::string& in, const std::string& out) {
  const SafetensorsFile file = read_safetensors(in);
  write_safetensors(out, file.tensors, file.metadata);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The C++ side of the exporter checks (tests/exporters/): tokenizer, text encoder, VAE, safetensors."};
  app.require_subcommand(1);
  std::string spiece, prompts, out, encoder, decoder, inputs, in;
  int64_t max_length = 0;
  double scale = 0;

  CLI::App* tok = app.add_subcommand("tokenize", "T5Tokenizer::tokenize and ::encode of each prompt");
  tok->add_option("--spiece", spiece, "SentencePiece model")->required();
  tok->add_option("--max-length", max_length, "tokens per prompt")->required()->check(cli::Count);
  tok->add_option("--prompts", prompts, "JSON list of prompts")->required();
  tok->add_option("--out", out, "output safetensors")->required();

  CLI::App* text = app.add_subcommand("encode-text", "TextEncoder::encode of the prompts (no lower-casing)");
  text->add_option("--encoder", encoder, "TorchScript text encoder")->required();
  text->add_option("--spiece", spiece, "SentencePiece model")->required();
  text->add_option("--max-length", max_length, "tokens per prompt")->required()->check(cli::Count);
  text->add_option("--prompts", prompts, "JSON list of prompts")->required();
  text->add_option("--out", out, "output safetensors")->required();

  CLI::App* vae_app = app.add_subcommand("vae", "TorchScriptVae::decode of `latents`, ::encode of `images`");
  vae_app->add_option("--decoder", decoder, "TorchScript VAE decoder");
  vae_app->add_option("--encoder", encoder, "TorchScript VAE encoder");
  vae_app->add_option("--scale", scale, "latent scale factor")->required();
  vae_app->add_option("--inputs", inputs, "safetensors with latents and/or images")->required();
  vae_app->add_option("--out", out, "output safetensors")->required();

  CLI::App* copy = app.add_subcommand("copy-safetensors", "read with ilf::read_safetensors, write with ilf::write_safetensors");
  copy->add_option("--in", in, "input safetensors")->required();
  copy->add_option("--out", out, "output safetensors")->required();

  app.add_subcommand("libtorch-version", "print the LibTorch version this program is built with");

  if (const int code = cli::parse(app, argc, argv, "ilf_export_probe"); code >= 0) return code;
  try {
    if (tok->parsed()) return tokenize(spiece, max_length, prompts, out);
    if (text->parsed()) return encode_text(encoder, spiece, max_length, prompts, out);
    if (vae_app->parsed()) return vae(decoder, encoder, scale, inputs, out);
    if (copy->parsed()) return copy_safetensors(in, out);
    std::cout << TORCH_VERSION_MAJOR << "." << TORCH_VERSION_MINOR << "." << TORCH_VERSION_PATCH << "\n";
    return 0;
  } catch (...) {
    return cli::report_error("ilf_export_probe");
  }
}
