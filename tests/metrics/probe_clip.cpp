// ilf_metric_probe's CLIP subcommands: what the library's CLIP code (eval/clip.h, eval/clip_tokenizer.h)
// returns for the prompts and images tests/metrics/check_clip.py gives it, written to safetensors for the
// comparison with transformers / torchmetrics / open_clip.
//
//   ilf_metric_probe clip --model DIR --prompts P.json --images I.safetensors --out O.safetensors
//   ilf_metric_probe clip-tokenize --prompts P.json --out O.safetensors [--folder DIR] [--bpe-gz F.gz]
//
// P.json is a JSON list of prompts; I.safetensors holds uint8 images image_0, image_1, ... each
// (1, 3, H, W) (sizes differ). `clip` writes tokens (N, L), text_embeds (N, P), and per image k:
// pixel_values_k and pixel_values_float_k (1, 3, S, S), image_embeds_k (1, P), iqa_k (1, 4) float64 and
// score_k (1,) float64 / score_unclamped_k of image k against prompt k mod N. `clip-tokenize` writes the
// folder tokenizer's encode_batch (folder_tokens) and/or the .gz tokenizer's open_clip tokens
// (open_clip_tokens (N, 77)) and its untruncated ids (open_clip_ids, concatenated, open_clip_lengths).
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "ilf/error.h"
#include "ilf/eval/clip.h"
#include "ilf/eval/clip_tokenizer.h"
#include "ilf/io/safetensors.h"
#include "metric_probe.h"
#include "tool_common.h"

using namespace ilf;

namespace {

std::vector<std::string> clip_probe_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open the prompts file");
  const nlohmann::json prompts = nlohmann::json::parse(in);
  if (!prompts.is_array()) throw Error(path + ": expected a JSON list of prompts");
  return prompts.get<std::vector<std::string>>();
}

int run_clip(int argc, char** argv) {
  CLI::App app{"CLIP embeddings, pixel values, scores and CLIP-IQA of the library"};
  std::string model_dir, prompts_file, images_file, out;
  app.add_option("--model", model_dir)->required();
  app.add_option("--prompts", prompts_file)->required();
  app.add_option("--images", images_file)->required();
  app.add_option("--out", out)->required();
  if (const int code = cli::parse(app, argc, argv, "ilf_metric_probe clip"); code >= 0) return code;
  try {
    auto model = load_clip_model(model_dir, torch::kCPU);
    const auto prompts = clip_probe_prompts(prompts_file);
    const auto images = read_safetensors(images_file).tensors;
    TensorMap result;
    result["tokens"] = clip_tokens(*model, prompts);
    result["text_embeds"] = clip_text_embeddings(*model, prompts);
    for (size_t k = 0;; ++k) {
      const auto it = images.find("image_" + std::to_string(k));
      if (it == images.end()) break;
      const auto& image = it->second;  // (1, 3, H, W) uint8
      const std::string s = std::to_string(k);
      result["pixel_values_" + s] = clip_pixel_values(*model, image);
      result["pixel_values_float_" + s] = clip_pixel_values_float(*model, image);
      result["image_embeds_" + s] = clip_image_embeddings(*model, image);
      result["iqa_" + s] = clip_iqa_scores(*model, image);
      const std::vector<std::string> prompt{prompts[k % prompts.size()]};
      result["score_" + s] = clip_scores(*model, image, prompt);
      result["score_unclamped_" + s] = clip_scores_unclamped(*model, image, prompt);
    }
    write_safetensors(out, result);
    return 0;
  } catch (...) {
    return cli::report_error("ilf_metric_probe clip");
  }
}

int run_clip_tokenize(int argc, char** argv) {
  CLI::App app{"The CLIP tokenizers of the library: a folder's (vocab.json + merges.txt) and open_clip's .gz"};
  std::string folder, gz, prompts_file, out;
  app.add_option("--folder", folder);
  app.add_option("--bpe-gz", gz);
  app.add_option("--prompts", prompts_file)->required();
  app.add_option("--out", out)->required();
  if (const int code = cli::parse(app, argc, argv, "ilf_metric_probe clip-tokenize"); code >= 0) return code;
  try {
    const auto prompts = clip_probe_prompts(prompts_file);
    TensorMap result;
    if (!folder.empty()) result["folder_tokens"] = ClipTokenizer::from_folder(folder).encode_batch(prompts, 77);
    if (!gz.empty()) {
      const auto tokenizer = ClipTokenizer::from_bpe_gz(gz);
      result["open_clip_tokens"] = tokenizer.encode_open_clip(prompts, 77);
      std::vector<int64_t> ids, lengths;
      for (const auto& p : prompts) {
        const auto e = tokenizer.encode(p);
        ids.insert(ids.end(), e.begin(), e.end());
        lengths.push_back(static_cast<int64_t>(e.size()));
      }
      result["open_clip_ids"] = torch::tensor(ids, torch::kInt64);
      result["open_clip_lengths"] = torch::tensor(lengths, torch::kInt64);
    }
    write_safetensors(out, result);
    return 0;
  } catch (...) {
    return cli::report_error("ilf_metric_probe clip-tokenize");
  }
}

const ilf::test::ProbeRegistration clip_probe_registration("clip", &run_clip);
const ilf::test::ProbeRegistration clip_tokenize_probe_registration("clip-tokenize", &run_clip_tokenize);

}  // namespace
