#!/usr/bin/env python3
"""Export a PixArt-alpha or PixArt-Sigma checkpoint into an ILF text-to-image model folder.

Run it where PyTorch, transformers and diffusers are installed (a PyTorch no newer than the LibTorch that
ilf is built with: TorchScript files load in the same or a newer LibTorch). From a diffusers PixArt
pipeline (a Hugging Face repository id or a local folder with text_encoder/, tokenizer/, vae/ and
transformer/) it writes:

  OUT/model.json          what each file is: family, resolution, latent scale, caption length, backbone settings
  OUT/backbone.safetensors  the transformer weights (the pipeline's, in the diffusers layout, or an official
                          PixArt .pth given with --transformer, which also carries the learned null caption
                          y_embedding that PixArt-alpha's official inference uses)
  OUT/text_encoder.pt     the T5 encoder, traced: (input_ids (B, L) int64, attention_mask (B, L) int64) -> (B, L, 4096)
  OUT/spiece.model        the T5 SentencePiece tokenizer model
  OUT/tokenizer_check.json  a few prompts with the ids Hugging Face's T5Tokenizer gives them (ilf_sample checks
                          its own tokenizer against them when it loads the folder)
  OUT/vae_decoder.pt      the VAE decoder, traced: latents (B, 4, h, w) (unscaled) -> images (B, 3, 8h, 8w) in [-1, 1]
  OUT/vae_encoder.pt      the VAE encoder, traced: images (B, 3, H, W) in [-1, 1] -> latent mean (B, 4, H/8, W/8)
  OUT/feedback.safetensors  with --feedback: a feedback module trained by ilf_train

The TorchScript modules are traced on --device and must run there (tracing records the device of the
tensors some layers create): export with --device cuda to sample with ilf_sample --device cuda. Each
traced module is checked against the eager one on inputs of another batch size (and, for the VAE, another
image size) before it is written.

Examples:
  python3 scripts/export_pixart_model_folder.py PixArt-alpha/PixArt-XL-2-512x512 --out models/pixart_alpha_512
  python3 scripts/export_pixart_model_folder.py PixArt-alpha/PixArt-XL-2-512x512 \\
      --transformer PixArt-XL-2-512x512.pth --out models/pixart_alpha_512
  python3 scripts/export_pixart_model_folder.py PixArt-alpha/PixArt-Sigma-XL-2-1024-MS --out models/pixart_sigma_1024
  python3 scripts/export_pixart_model_folder.py PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers \
      --transformer PixArt-alpha/PixArt-Sigma-XL-2-512-MS --out models/pixart_sigma_512
"""
import argparse
import json
import os
import shutil
import sys
import zlib

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_weights  # noqa: E402  (scripts/export_weights.py: checkpoint reading, safetensors writing)

FAMILIES = {  # latent scale factor of the family's VAE, T5 tokens per caption
    "pixart_alpha": {"latent_scale": 0.18215, "max_caption_length": 120},
    "pixart_sigma": {"latent_scale": 0.13025, "max_caption_length": 300},
}
PIPELINES = {"PixArtAlphaPipeline": "pixart_alpha", "PixArtSigmaPipeline": "pixart_sigma"}
# ilf's dpmpp2m defaults (diffusers' DPMSolverMultistepScheduler defaults, as the PixArt pipelines use them).
SCHEDULER_DEFAULTS = {"algorithm_type": "dpmsolver++", "solver_order": 2, "beta_schedule": "linear", "beta_start": 0.0001,
                      "beta_end": 0.02, "num_train_timesteps": 1000, "prediction_type": "epsilon",
                      "timestep_spacing": "linspace", "use_karras_sigmas": False, "thresholding": False}



FILE_KEYS = ["backbone", "feedback", "text_encoder", "tokenizer", "tokenizer_check", "vae_decoder", "vae_encoder"]


def file_crc32(path):
    """The "crc32:<8 hex digits>" of a file's bytes (zlib's CRC-32), as model.json's "checksums" record it."""
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            crc = zlib.crc32(block, crc)
    return f"crc32:{crc & 0xffffffff:08x}"


def record_checksums(manifest, folder):
    """Adds "checksums" for every file entry of the manifest that this run wrote into the folder: the loader
    verifies them (corruption). Parts left out with --skip are not in the folder yet and get none."""
    manifest["checksums"] = {key: file_crc32(os.path.join(folder, manifest[key])) for key in FILE_KEYS
                             if key in manifest and os.path.isfile(os.path.join(folder, manifest[key]))}

def log(message):
    print(f"export_pixart_model_folder: {message}", file=sys.stderr)


def fail(message):
    sys.exit(f"export_pixart_model_folder: error: {message}")


def check_close(name, traced, eager, tolerance):
    """max |traced - eager| / max |eager| must be below `tolerance`."""
    error = ((traced.float() - eager.float()).abs().max() / eager.float().abs().max().clamp_min(1e-12)).item()
    log(f"{name}: traced vs eager relative error {error:.2e}")
    if not error < tolerance:
        fail(f"{name}: the traced module differs from the eager one ({error:.2e} >= {tolerance:.0e})")


class TextEncoderForIlf(torch.nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=False)[0]  # (B, L, D)


class VaeDecoderForIlf(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latents):
        return self.vae.decode(latents, return_dict=False)[0]  # (B, 3, 8h, 8w)


class VaeEncoderForIlf(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, images):
        return self.vae.encode(images, return_dict=False)[0].mean  # (B, 4, H/8, W/8)


def save_traced(module, path):
    tmp = path + ".tmp.export"
    module.save(tmp)
    os.replace(tmp, path)


def export_tokenizer_and_text_encoder(source, out, max_length, device, dtype):
    from transformers import T5EncoderModel, T5Tokenizer

    tokenizer = T5Tokenizer.from_pretrained(source, subfolder="tokenizer")
    shutil.copyfile(tokenizer.vocab_file, os.path.join(out, "spiece.model"))
    prompts = ["a corgi wearing a red scarf", "", "an astronaut riding a horse on the moon, oil painting"]
    tokens = tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True,
                       return_tensors="pt")
    # Token ids for the C++ tokenizer to compare with (tests or by hand): pieces + </s>, as ilf tokenizes them.
    with open(os.path.join(out, "tokenizer_check.json"), "w") as f:
        json.dump({"max_length": max_length, "prompts": prompts,
                   "input_ids": [ids[:int(m.sum())] for ids, m in zip(tokens.input_ids.tolist(), tokens.attention_mask)]}, f)

    log(f"loading the T5 encoder ({dtype}, {device})")
    try:  # plain attention (matmul + softmax): transformers >= 5 traces scaled_dot_product_attention, which LibTorch 1.13 lacks
        encoder = T5EncoderModel.from_pretrained(source, subfolder="text_encoder", torch_dtype=dtype, attn_implementation="eager")
    except (TypeError, ValueError):  # transformers before attn_implementation
        encoder = T5EncoderModel.from_pretrained(source, subfolder="text_encoder", torch_dtype=dtype)
    encoder = encoder.to(device).eval()
    wrapper = TextEncoderForIlf(encoder).eval()
    ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, (ids[:2], mask[:2]), check_trace=False)
        check_close("text_encoder", traced(ids, mask), wrapper(ids, mask), 1e-2 if dtype != torch.float32 else 1e-4)
    save_traced(traced, os.path.join(out, "text_encoder.pt"))
    del encoder, traced


def export_vae(source, out, family, device):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=torch.float32).to(device).eval()
    scale = vae.config.scaling_factor
    if abs(scale - FAMILIES[family]["latent_scale"]) > 1e-9:
        fail(f"the VAE's scaling_factor is {scale}, but {family} latents use {FAMILIES[family]['latent_scale']}")
    try:  # plain attention (bmm + softmax) instead of scaled_dot_product_attention, which LibTorch 1.13 lacks
        from diffusers.models.attention_processor import AttnProcessor
        vae.set_attn_processor(AttnProcessor())
    except (ImportError, AttributeError):
        pass
    channels = vae.config.latent_channels
    decoder, encoder = VaeDecoderForIlf(vae).eval(), VaeEncoderForIlf(vae).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        traced = torch.jit.trace(decoder, torch.randn(1, channels, 32, 32, generator=generator).to(device), check_trace=False)
        z = torch.randn(2, channels, 24, 40, generator=generator).to(device)
        check_close("vae_decoder", traced(z), decoder(z), 1e-4)
        save_traced(traced, os.path.join(out, "vae_decoder.pt"))
        traced = torch.jit.trace(encoder, torch.rand(1, 3, 256, 256, generator=generator).to(device) * 2 - 1, check_trace=False)
        x = torch.rand(2, 3, 192, 320, generator=generator).to(device) * 2 - 1
        check_close("vae_encoder", traced(x), encoder(x), 1e-4)
        save_traced(traced, os.path.join(out, "vae_encoder.pt"))


def backbone_settings(config, family):
    """The model.json "model" section from the diffusers transformer config."""
    sample_size = config["sample_size"]
    heads = config["num_attention_heads"]
    in_channels = config["in_channels"]
    out_channels = config.get("out_channels") or in_channels
    scale = config.get("interpolation_scale") or max(sample_size // 64, 1)
    micro = config.get("use_additional_conditions")
    if micro is None:
        micro = sample_size == 128
    model = {"family": "pixart", "input_size": sample_size, "patch_size": config["patch_size"], "in_channels": in_channels,
             "hidden_size": heads * config["attention_head_dim"], "depth": config["num_layers"], "num_heads": heads,
             "pred_sigma": out_channels == 2 * in_channels, "caption_channels": config["caption_channels"],
             "model_max_length": FAMILIES[family]["max_caption_length"]}
    if family == "pixart_sigma":
        model.update(variant="sigma", pe_interpolation=float(scale))
    else:
        model.update(variant="alpha_ms" if micro else "alpha", lewei_scale=float(scale))
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("pipeline", help="diffusers PixArt pipeline: a Hugging Face repository id or a local folder")
    parser.add_argument("--out", required=True, help="the model folder to write")
    parser.add_argument("--transformer",
                        help="the backbone, instead of the pipeline's transformer/: an official PixArt checkpoint file "
                             "(.pth), or another diffusers repository id / folder whose transformer/ to take")
    parser.add_argument("--feedback", help="a feedback module trained by ilf_train, copied in as feedback.safetensors")
    parser.add_argument("--family", choices=sorted(FAMILIES), help="default: from the pipeline's class")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where the traced modules will run (default: cuda when available)")
    parser.add_argument("--text-dtype", choices=["float32", "bfloat16", "float16"],
                        help="T5 encoder precision (default: bfloat16 on cuda, float32 on cpu)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["text_encoder", "vae", "backbone"],
                        help="keep these files of an earlier export")
    args = parser.parse_args()

    from diffusers import DiffusionPipeline

    index = DiffusionPipeline.load_config(args.pipeline)
    family = args.family or PIPELINES.get(index.get("_class_name"))
    if family is None:
        fail(f"{args.pipeline}: pipeline class {index.get('_class_name')} is not PixArt-alpha / PixArt-Sigma; give --family")
    os.makedirs(args.out, exist_ok=True)
    device = torch.device(args.device)
    text_dtype = getattr(torch, args.text_dtype or ("bfloat16" if device.type == "cuda" else "float32"))

    try:
        from diffusers import PixArtTransformer2DModel as TransformerClass
    except ImportError:  # diffusers before 0.28
        from diffusers import Transformer2DModel as TransformerClass
    checkpoint_file = args.transformer if args.transformer and os.path.isfile(args.transformer) else None
    transformer_source = args.transformer if args.transformer and not checkpoint_file else args.pipeline
    transformer_config = TransformerClass.load_config(transformer_source, subfolder="transformer")
    model = backbone_settings(transformer_config, family)
    max_length = FAMILIES[family]["max_caption_length"]

    try:
        from diffusers import DPMSolverMultistepScheduler
        scheduler = DPMSolverMultistepScheduler.load_config(args.pipeline, subfolder="scheduler")
        different = {k: scheduler[k] for k, v in SCHEDULER_DEFAULTS.items() if k in scheduler and scheduler[k] != v}
        if scheduler.get("_class_name") != "DPMSolverMultistepScheduler" or different:
            log(f"note: the pipeline's scheduler ({scheduler.get('_class_name')}) differs from ilf's dpmpp2m defaults in "
                f"{different}; set the matching \"sampling\" keys in your run config")
    except (OSError, ValueError):
        pass

    if "backbone" not in args.skip:
        if checkpoint_file:
            tensors = export_weights.read_input(checkpoint_file)
            source = os.path.basename(checkpoint_file)
        else:
            log(f"loading the transformer of {transformer_source}")
            tensors = TransformerClass.from_pretrained(transformer_source, subfolder="transformer").state_dict()
            source = f"{transformer_source} transformer"
        export_weights.write_safetensors(os.path.join(args.out, "backbone.safetensors"), tensors, {"source": source})
        log(f"wrote backbone.safetensors ({len(tensors)} tensors)")
        del tensors
    if "text_encoder" not in args.skip:
        export_tokenizer_and_text_encoder(args.pipeline, args.out, max_length, device, text_dtype)
        log("wrote text_encoder.pt, spiece.model")
    if "vae" not in args.skip:
        export_vae(args.pipeline, args.out, family, device)
        log("wrote vae_decoder.pt, vae_encoder.pt")
    if args.feedback:
        shutil.copyfile(args.feedback, os.path.join(args.out, "feedback.safetensors"))

    manifest = {
        "format": "ilf.text_to_image_model",
        "family": family,
        "resolution": model["input_size"] * 8,
        "latent_scale": FAMILIES[family]["latent_scale"],
        "max_caption_length": max_length,
        "model": model,
        "backbone": "backbone.safetensors",
        "text_encoder": "text_encoder.pt",
        "device": device.type,
        "tokenizer": "spiece.model",
        "tokenizer_check": "tokenizer_check.json",
        "vae_decoder": "vae_decoder.pt",
        "vae_encoder": "vae_encoder.pt",
    }
    if os.path.exists(os.path.join(args.out, "feedback.safetensors")):
        manifest["feedback"] = "feedback.safetensors"
    record_checksums(manifest, args.out)
    with open(os.path.join(args.out, "model.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    log(f"wrote {os.path.join(args.out, 'model.json')}: {family}, {manifest['resolution']} px, variant {model['variant']}")


if __name__ == "__main__":
    main()
