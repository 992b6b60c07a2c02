// ilf_prepare_data: builds the safetensors shards that `ilf_train` reads ("data.kind": "shards") from
// a folder of images, with a TorchScript VAE encoder, and either class labels (one sub-folder per
// class) or captions (a .txt beside each image) encoded by a TorchScript text encoder
// (pipelines/data_preparation.h).
//
//   ilf_prepare_data --images imagenet/train --labels-from-folders --vae-encoder sd_vae_encoder.pt
//       --resolution 256 --latent-scale 0.18215 --out data/imagenet256_latents
//   ilf_prepare_data --images t2i/ --captions --vae-encoder sd_vae_encoder.pt --text-encoder t5.pt
//       --tokenizer spiece.model --max-tokens 120 --resolution 512 --out data/t2i_512_alpha
#include <CLI/CLI.hpp>

#include <iostream>

#include "ilf/config/run_config.h"
#include "ilf/models/vae.h"
#include "ilf/pipelines/data_preparation.h"
#include "ilf/sampling/sampler.h"
#include "tool_common.h"

using namespace ilf;

int main(int argc, char** argv) {
  CLI::App app{"Build ilf_train shards (VAE latents + labels or caption features) from a folder of images"};
  DataPreparationOptions args;
  app.add_option("--images", args.images, "folder of images (recursive)")->required();
  app.add_option("--out", args.out, "output folder for the shards")->required()->check(cli::NonEmpty);
  app.add_option("--vae-encoder", args.vae_encoder, "TorchScript VAE encoder: images (B,3,H,W) in [-1,1] -> latents")->required();
  app.add_option("--encoder-output", args.encoder_output, "what the encoder returns: mean or moments")
      ->check(CLI::IsMember({"mean", "moments"}));
  app.add_option("--latent-scale", args.latent_scale, "latent scale factor (SD VAE 0.18215, SDXL VAE 0.13025)")
      ->check(cli::NumberInRange(kMinLatentScale, kMaxLatentScale));
  app.add_option("--resolution", args.resolution, "image size after resize + centre crop")
      ->transform(cli::CountUpTo(kMaxImageSide));
  app.add_option("--channels", args.channels, "image channels: 3 (RGB) or 1 (grey)");
  app.add_flag("--labels-from-folders", args.labels_from_folders, "class label = index of the first-level sub-folder (sorted)");
  app.add_flag("--captions", args.captions, "caption = the .txt file beside each image");
  app.add_option("--text-encoder", args.text_encoder, "TorchScript text encoder: (input_ids, attention_mask) -> (B, L, D)");
  app.add_option("--tokenizer", args.tokenizer, "sentencepiece model of the text encoder (T5 spiece.model)");
  app.add_option("--max-tokens", args.max_tokens, "caption length L (PixArt-alpha 120, PixArt-Sigma 300)")
      ->transform(cli::CountUpTo(kMaxModelTokens));
  app.add_flag("--micro-conditions", args.micro_conditions, "store image_hw and aspect_ratio (PixArt-alpha 1024 MS)");
  app.add_option("--shard-size", args.shard_size, "samples per shard")->transform(cli::Count);
  app.add_option("--batch", args.batch, "images per encoder call")->transform(cli::CountUpTo(kMaxBatch));
  app.add_option("--dtype", args.dtype, "stored dtype: f16, bf16 or f32")->check(CLI::IsMember({"f16", "bf16", "f32"}));
  app.add_option("--device", args.device, "auto (CUDA when the build and machine have it), cpu or cuda")->capture_default_str();
  app.add_option("--max-image-pixels", args.max_image_pixels,
                 "largest image accepted, in pixels, in the file and after resizing to --resolution (8192 x 8192)")
      ->capture_default_str()
      ->transform(cli::Count);
  app.add_option("--seed", args.seed, "shuffle and posterior-sampling seed")->transform(cli::Seed);
  if (const int code = cli::parse(app, argc, argv, "ilf_prepare_data"); code >= 0) return code;
  try {
    prepare_shards(args);
    return 0;
  } catch (...) {
    return cli::report_error("ilf_prepare_data");
  }
}
