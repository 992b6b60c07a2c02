// The ImageReward subcommands of ilf_metric_probe (metric_probe.h): what the library's ImageReward and
// BERT tokenizer return for the images and prompts tests/metrics/check_image_reward.py gave the
// image-reward package, written to safetensors for that script to compare.
//
//   ilf_metric_probe bert-tokenize --vocab V --max-length L --prompts P.json --out O.safetensors
//     input_ids, attention_mask (B, L); encoded: every prompt's untruncated ids concatenated,
//     encoded_lengths (B,) their counts.
//   ilf_metric_probe image-reward --weights W --vocab V [--med-config C] --images I.safetensors
//                                 --prompts P.json --out O.safetensors
//     I holds image_0, image_1, ... uint8 (3, H, W) (sizes may differ), P one prompt per image; writes
//     input_ids, attention_mask (N, 35), pixels (N, 3, 224, 224), image_embeds (N, T, D),
//     text_features (N, C) and rewards (N,) float64, image i scored against prompt i.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "ilf/error.h"
#include "ilf/eval/bert_tokenizer.h"
#include "ilf/eval/image_reward.h"
#include "ilf/io/safetensors.h"
#include "metric_probe.h"
#include "tool_common.h"

using namespace ilf;

namespace {

std::vector<std::string> ir_probe_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open the prompts file");
  const nlohmann::json prompts = nlohmann::json::parse(in);
  if (!prompts.is_array()) throw Error(path + ": expected a JSON list of prompts");
  return prompts.get<std::vector<std::string>>();
}

int run_bert_tokenize(int argc, char** argv) {
  CLI::App app{"BertTokenizer::tokenize and ::encode of each prompt"};
  std::string vocab, prompts_file, out;
  int64_t max_length = 35;
  app.add_option("--vocab", vocab, "BERT vocab.txt")->required();
  app.add_option("--max-length", max_length, "tokens per prompt");
  app.add_option("--prompts", prompts_file, "JSON list of prompts")->required();
  app.add_option("--out", out, "output safetensors")->required();
  if (const int code = cli::parse(app, argc, argv, "ilf_metric_probe bert-tokenize"); code >= 0) return code;
  try {
    const BertTokenizer tokenizer(vocab, max_length);
    const std::vector<std::string> prompts = ir_probe_prompts(prompts_file);
    const BertTokens tokens = tokenizer.tokenize(prompts);
    std::vector<int64_t> encoded, lengths;
    for (const auto& prompt : prompts) {
      const std::vector<int64_t> ids = tokenizer.encode(prompt);
      encoded.insert(encoded.end(), ids.begin(), ids.end());
      lengths.push_back(static_cast<int64_t>(ids.size()));
    }
    write_safetensors(out, {{"input_ids", tokens.input_ids},
                            {"attention_mask", tokens.attention_mask},
                            {"encoded", torch::tensor(encoded, torch::kInt64)},
                            {"encoded_lengths", torch::tensor(lengths, torch::kInt64)}});
    return 0;
  } catch (...) {
    return cli::report_error("ilf_metric_probe bert-tokenize");
  }
}

int run_image_reward(int argc, char** argv) {
  CLI::App app{"ImageReward: tokens, preprocessing, image embeddings, text features and rewards"};
  ImageRewardFiles files;
  std::string images_file, prompts_file, out;
  app.add_option("--weights", files.weights, "ImageReward.pt")->required();
  app.add_option("--vocab", files.vocab, "BERT vocab.txt")->required();
  app.add_option("--med-config", files.med_config, "med_config.json (default: the package's)");
  app.add_option("--images", images_file, "safetensors with image_0, image_1, ... uint8 (3, H, W)")->required();
  app.add_option("--prompts", prompts_file, "JSON list of prompts, one per image")->required();
  app.add_option("--out", out, "output safetensors")->required();
  if (const int code = cli::parse(app, argc, argv, "ilf_metric_probe image-reward"); code >= 0) return code;
  try {
    const ImageRewardModelPtr model = load_image_reward(files, torch::kCPU);
    const std::vector<std::string> prompts = ir_probe_prompts(prompts_file);
    const TensorMap images = read_safetensors(images_file).tensors;
    std::vector<torch::Tensor> ids, mask, pixels, embeds, features, rewards;
    for (size_t i = 0; i < prompts.size(); ++i) {
      const std::string key = "image_" + std::to_string(i);
      const auto it = images.find(key);
      if (it == images.end()) throw Error(images_file + ": no tensor '" + key + "'");
      const torch::Tensor image = it->second.unsqueeze(0);
      const ImageRewardOutputs o = image_reward_forward(*model, image, {prompts[i]});
      ids.push_back(o.input_ids), mask.push_back(o.attention_mask), embeds.push_back(o.image_embeds);
      features.push_back(o.text_features), rewards.push_back(o.rewards), pixels.push_back(image_reward_pixels(image));
    }
    write_safetensors(out, {{"input_ids", torch::cat(ids)},
                            {"attention_mask", torch::cat(mask)},
                            {"pixels", torch::cat(pixels)},
                            {"image_embeds", torch::cat(embeds)},
                            {"text_features", torch::cat(features)},
                            {"rewards", torch::cat(rewards)}});
    return 0;
  } catch (...) {
    return cli::report_error("ilf_metric_probe image-reward");
  }
}

const ilf::test::ProbeRegistration ir_probe_tokenize("bert-tokenize", &run_bert_tokenize);
const ilf::test::ProbeRegistration ir_probe_reward("image-reward", &run_image_reward);

}  // namespace
