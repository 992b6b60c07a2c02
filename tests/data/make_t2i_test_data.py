#!/usr/bin/env python3
"""Writes the text-to-image test data under tests/data/t2i/ (run by hand; the outputs are committed):

  tiny_spm.model / .vocab   a SentencePiece unigram model trained by spm_train on corpus.txt with T5's
                            special ids (<pad> 0, </s> 1, <unk> 2, no <s>)
  spm_expected_ids.txt      `spm_encode --output_format=id --extra_options=eos` of sentences.txt: the ids the
                            tokenizer test expects (one line per sentence, </s> appended)
  tokenizer_check.json      the same ids in the form the exporter records Hugging Face's (a model folder's
                            "tokenizer_check")
  text_encoder.pt           a tiny random TorchScript text encoder with the exported T5 encoder's interface:
                            (input_ids (B, L) int64, attention_mask (B, L) int64) -> hidden states (B, L, 32);
                            padded positions are masked out of the attention, as in T5
  vae_decoder.pt            a tiny random TorchScript VAE decoder: latents (B, 4, h, w) -> images (B, 3, 8h, 8w)
  vae_encoder.pt            a tiny random TorchScript VAE encoder: images (B, 3, H, W) -> latent mean (B, 4, H/8, W/8)
  pixart_{alpha,alpha_ms,sigma}_tiny/model.json
                            model folders over the reference tiny PixArt backbones in tests/data/
  pixart_alpha_diffusers_tiny/model.json
                            the same alpha backbone in the diffusers layout, as the exporter writes it

Needs Debian's python3-torch and the sentencepiece command-line tools (spm_train, spm_encode):
  /usr/bin/python3 tests/data/make_t2i_test_data.py
"""
import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "t2i")
CAPTION_CHANNELS = 32  # caption_channels of the reference tiny PixArt backbones
LATENT_CHANNELS = 4


class TinyTextEncoder(torch.nn.Module):
    """Embedding, one masked self-attention layer with a residual, LayerNorm and a projection."""

    def __init__(self, vocab_size: int, dim: int, heads: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, dim)
        self.attn = torch.nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = torch.nn.LayerNorm(dim)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)  # (B, L, D)
        a, _ = self.attn(x, x, x, key_padding_mask=attention_mask == 0, need_weights=False)
        return self.proj(self.norm(x + a))  # (B, L, D)


class TinyVaeDecoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(LATENT_CHANNELS, 3, 3, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.tanh(F.interpolate(self.conv(latents), scale_factor=8.0, mode="nearest"))


class TinyVaeEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, LATENT_CHANNELS, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv(F.avg_pool2d(images, 8))


def train_tokenizer():
    subprocess.run(["spm_train", "--input=" + os.path.join(HERE, "corpus.txt"),
                    "--model_prefix=" + os.path.join(HERE, "tiny_spm"), "--vocab_size=160", "--hard_vocab_limit=false",
                    "--model_type=unigram", "--character_coverage=1.0", "--pad_id=0", "--eos_id=1", "--unk_id=2",
                    "--bos_id=-1", "--random_seed=1", "--num_threads=1", "--minloglevel=1"], check=True)
    with open(os.path.join(HERE, "sentences.txt"), "rb") as src, open(os.path.join(HERE, "spm_expected_ids.txt"), "wb") as out:
        subprocess.run(["spm_encode", "--model=" + os.path.join(HERE, "tiny_spm.model"), "--output_format=id",
                        "--extra_options=eos"], stdin=src, stdout=out, check=True)
    with open(os.path.join(HERE, "sentences.txt"), encoding="utf-8") as f:
        sentences = f.read().split("\n")[:-1]
    with open(os.path.join(HERE, "spm_expected_ids.txt")) as f:
        ids = [[int(i) for i in line.split()] for line in f]
    with open(os.path.join(HERE, "tokenizer_check.json"), "w") as f:
        json.dump({"max_length": 120, "prompts": sentences, "input_ids": ids}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(HERE, "tiny_spm.vocab"), encoding="utf-8") as f:
        return sum(1 for _ in f)


def write_model_folder(name, family, latent_scale, max_length, model, backbone, extra=None):
    folder = os.path.join(HERE, name)
    os.makedirs(folder, exist_ok=True)
    manifest = {
        "format": "ilf.text_to_image_model",
        "family": family,
        "resolution": model["input_size"] * 8,
        "latent_scale": latent_scale,
        "max_caption_length": max_length,
        "model": model,
        "backbone": "../../" + backbone,
        "text_encoder": "../text_encoder.pt",
        "tokenizer": "../tiny_spm.model",
        "vae_decoder": "../vae_decoder.pt",
        "vae_encoder": "../vae_encoder.pt",
        **(extra or {}),
    }
    with open(os.path.join(folder, "model.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


def main():
    vocab_size = train_tokenizer()
    torch.manual_seed(0)
    torch.jit.script(TinyTextEncoder(vocab_size, CAPTION_CHANNELS, 2).eval()).save(os.path.join(HERE, "text_encoder.pt"))
    torch.jit.script(TinyVaeDecoder().eval()).save(os.path.join(HERE, "vae_decoder.pt"))
    torch.jit.script(TinyVaeEncoder().eval()).save(os.path.join(HERE, "vae_encoder.pt"))
    # The backbones of tests/data/pixart_tiny, pixartms_tiny and pixart_sigma_tiny (reference README).
    write_model_folder("pixart_alpha_tiny", "pixart_alpha", 0.18215, 6,
                       {"family": "pixart", "variant": "alpha", "input_size": 8, "depth": 4, "num_heads": 4,
                        "lewei_scale": 1.0}, "pixart_tiny.weights.safetensors")
    write_model_folder("pixart_alpha_ms_tiny", "pixart_alpha", 0.18215, 6,
                       {"family": "pixart", "variant": "alpha_ms", "input_size": 8, "depth": 3, "num_heads": 4,
                        "lewei_scale": 2.0}, "pixartms_tiny.weights.safetensors")
    # The layout scripts/export_pixart_model_folder.py writes from a diffusers pipeline: the diffusers transformer
    # weights (no y_embedding) and the "model" settings derived from its config.
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "..", "..", "scripts"))
    import export_pixart_model_folder
    diffusers_config = {"sample_size": 8, "num_attention_heads": 4, "attention_head_dim": 16, "in_channels": 4,
                        "out_channels": 8, "patch_size": 2, "num_layers": 4, "caption_channels": CAPTION_CHANNELS}
    settings = dict(export_pixart_model_folder.backbone_settings(diffusers_config, "pixart_alpha"), model_max_length=6)
    write_model_folder("pixart_alpha_diffusers_tiny", "pixart_alpha", 0.18215, 6, settings, "pixart_tiny.diffusers.safetensors")
    write_model_folder("pixart_sigma_tiny", "pixart_sigma", 0.13025, 10,
                       {"family": "pixart", "variant": "sigma", "input_size": 8, "depth": 3, "num_heads": 4,
                        "pe_interpolation": 2.0}, "pixart_sigma_tiny.weights.safetensors",
                       {"tokenizer_check": "../tokenizer_check.json", "device": "cpu"})
    print("wrote", HERE, "(vocabulary of", vocab_size, "pieces)")


if __name__ == "__main__":
    main()
