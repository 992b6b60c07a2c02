#!/usr/bin/env python3
"""An ESTIMATE of what evaluating one sampling setting costs on a GPU, per image and per 1000 images,
from floating-point operation counts (docs/evaluation.md, "Cost"). Nothing here was timed on a GPU.

The models are built on PyTorch's meta device from the real architectures' configurations (diffusers'
PixArtTransformer2DModel and AutoencoderKL, transformers' T5 encoder, CLIP ViT-L/14 and BERT-base,
torchvision's Inception-v3 and AlexNet, timm's ViT-L/16 for ImageReward's BLIP encoder), no weights, and
torch.utils.flop_counter counts the matrix multiplications and convolutions of one forward (elementwise
work, memory traffic and launch overheads are not counted, so real times are longer). Seconds assume a
sustained throughput given by --tflops (default 300 TFLOP/s: about 30 % of an H100 SXM's dense BF16
peak; an float32 run without TF32 reaches far less).

  python3 scripts/evaluation/estimate_cost.py [--preset pixart_alpha_512] [--tflops 300]

Needs torch, diffusers, transformers, torchvision and timm (the pip-torch environment of CI has them).
"""
import argparse
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

warnings.filterwarnings("ignore")

# PixArt presets: (latent side, caption tokens, VAE output side); 28 blocks of width 1152 for all.
PRESETS = {
    "pixart_alpha_512": (64, 120, 512),
    "pixart_alpha_1024": (128, 120, 1024),
    "pixart_sigma_1024": (128, 300, 1024),
}
BLOCKS = 28
# Block forwards per image of the settings of Table 1 (configs/pixart_alpha_512.json: ILF-10 with
# feedback on 2 + 2 of its 10 steps over the loop 8..19; cache-20 recomputes the inner 18 blocks every
# 3rd step), each run on the conditional and the unconditional half of the guidance batch.
SETTINGS = {"baseline-20": 560, "baseline-12": 336, "cache-20": 326, "ILF-10": 332}


def flops(module, *args, **kwargs):
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            module(*args, **kwargs)
    return counter.get_total_flops()


def backbone_flops(latent, tokens):
    from diffusers import PixArtTransformer2DModel
    with torch.device("meta"):
        model = PixArtTransformer2DModel(sample_size=latent, num_layers=BLOCKS, attention_head_dim=72, num_attention_heads=16,
                                         in_channels=4, out_channels=8, patch_size=2, cross_attention_dim=1152,
                                         caption_channels=4096, norm_type="ada_norm_single", use_additional_conditions=False)
        x = torch.randn(1, 4, latent, latent)
        caption = torch.randn(1, tokens, 4096)
        mask = torch.ones(1, tokens)
        t = torch.tensor([500])
    return flops(model, x, encoder_hidden_states=caption, timestep=t, encoder_attention_mask=mask,
                 added_cond_kwargs={"resolution": None, "aspect_ratio": None})


def t5_flops(tokens):
    from transformers import T5Config, T5EncoderModel
    config = T5Config(d_model=4096, d_ff=10240, num_layers=24, num_heads=64, d_kv=64, feed_forward_proj="gated-gelu",
                      vocab_size=32128)
    with torch.device("meta"):
        model = T5EncoderModel(config)
        ids = torch.zeros(1, tokens, dtype=torch.long)
    return flops(model, input_ids=ids)


def vae_decoder_flops(side):
    from diffusers import AutoencoderKL
    with torch.device("meta"):
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            layers_per_block=2)
        z = torch.randn(1, 4, side // 8, side // 8)
    return flops(vae.decode, z)


def clip_flops():
    from transformers import CLIPConfig, CLIPModel
    config = CLIPConfig(text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
                        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                           num_attention_heads=16, patch_size=14, image_size=224), projection_dim=768)
    with torch.device("meta"):
        model = CLIPModel(config)
        pixels = torch.randn(1, 3, 224, 224)
        ids = torch.zeros(1, 77, dtype=torch.long)
    return flops(model.get_image_features, pixel_values=pixels) + flops(model.get_text_features, input_ids=ids)


def image_reward_flops():
    import timm
    from transformers import BertConfig, BertModel
    with torch.device("meta"):
        vit = timm.create_model("vit_large_patch16_224", pretrained=False, num_classes=0)
        image = torch.randn(1, 3, 224, 224)
        bert = BertModel(BertConfig(is_decoder=True, add_cross_attention=True, encoder_width=1024))
        ids = torch.zeros(1, 35, dtype=torch.long)
        image_tokens = torch.randn(1, 197, 768)
    # BLIP's cross-attention reads the 1024-wide image tokens; with 768 here its key/value projections
    # are 25 % short, a small part of the total.
    return flops(vit, image) + flops(bert, input_ids=ids, encoder_hidden_states=image_tokens)


def inception_flops():
    import torchvision
    with torch.device("meta"):
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
        x = torch.randn(1, 3, 299, 299)
    return flops(net, x)


def lpips_flops(side):
    import torchvision
    with torch.device("meta"):
        net = torchvision.models.alexnet(weights=None).features
        x = torch.randn(2, 3, side, side)  # the image and its reference
    return flops(net, x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="pixart_alpha_512", choices=sorted(PRESETS))
    parser.add_argument("--tflops", type=float, default=300.0, help="assumed sustained TFLOP/s")
    args = parser.parse_args()
    latent, tokens, side = PRESETS[args.preset]
    forward = backbone_flops(latent, tokens)
    per_block = forward / BLOCKS
    fixed = {
        "T5-XXL encoder (1 prompt)": t5_flops(tokens),
        "VAE decoder": vae_decoder_flops(side),
        "ImageReward (ViT-L/16 + BERT)": image_reward_flops(),
        "CLIP ViT-L/14 (image + text; CLIP score and CLIP-IQA share the image)": clip_flops(),
        "Inception-v3 at 299 (FID)": inception_flops(),
        "LPIPS AlexNet (image + reference)": lpips_flops(side),
    }
    print(f"ESTIMATE from FLOP counts, {args.preset}, sustained {args.tflops:g} TFLOP/s (not measured)\n")
    print(f"one backbone forward, one image: {forward / 1e12:.3f} TFLOP ({per_block / 1e9:.1f} GFLOP per block)\n")
    print("| part | TFLOP per image |")
    print("|---|---:|")
    for name, value in fixed.items():
        print(f"| {name} | {value / 1e12:.4f} |")
    print()
    shared = sum(fixed.values())
    print("| setting | block forwards | sampling TFLOP / image | total TFLOP / image | s / 1000 images |")
    print("|---|---:|---:|---:|---:|")
    for name, blocks in SETTINGS.items():
        sampling = 2 * blocks * per_block  # conditional + unconditional halves of the guidance batch
        total = sampling + shared
        print(f"| {name} | {blocks} | {sampling / 1e12:.2f} | {total / 1e12:.2f} | {1000 * total / (args.tflops * 1e12):.0f} |")


if __name__ == "__main__":
    main()
