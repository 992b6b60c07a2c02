#!/usr/bin/env python3
"""Writes models/fashion_mnist_t2i/model.json of the Fashion-MNIST text-to-image model folder (format of
include/ilf/pipelines/model_folder.h) from what the other scripts made: the latent scale factor measured
by train_vae.py (vae_report.json), the caption length make_tokenizer.py checked, and the backbone settings
of configs/fashion_mnist_t2i.json. "vae_downsampling" and "image_channels" declare the folder's own VAE
(1-channel 32x32 images <-> 4x8x8 latents, not 3-channel images and latents 8x smaller as the SD / SDXL
VAEs). "backbone" and "feedback" are written when those files exist (scripts/fashion_t2i/train_t2i.sh
trains them with ilf_train).
Usage: /usr/bin/python3 scripts/fashion_t2i/write_model_json.py [--folder models/fashion_mnist_t2i]
"""
import argparse
import json
import os

import re
import zlib

MAX_CAPTION_LENGTH = 24  # as make_tokenizer.py checked: every training and eval caption fits, </s> included



FILE_KEYS = ["backbone", "feedback", "text_encoder", "tokenizer", "tokenizer_check", "vae_decoder", "vae_encoder"]


def file_crc32(path):
    """The "crc32:<8 hex digits>" of a file's bytes (zlib's CRC-32), as model.json's "checksums" record it."""
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            crc = zlib.crc32(block, crc)
    return f"crc32:{crc & 0xffffffff:08x}"


def record_checksums(manifest, folder):
    """Adds "checksums" for every file entry of the manifest: the loader verifies them (corruption)."""
    manifest["checksums"] = {key: file_crc32(os.path.join(folder, manifest[key])) for key in FILE_KEYS if key in manifest}

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="models/fashion_mnist_t2i")
    parser.add_argument("--config", default="configs/fashion_mnist_t2i.json")
    args = parser.parse_args()
    with open(args.config) as f:  # JSON with // comments
        model = json.loads(re.sub(r"^\s*//.*$", "", f.read(), flags=re.M))["model"]
    with open(os.path.join(args.folder, "vae_report.json")) as f:
        latent_scale = json.load(f)["latent_scale"]
    with open(os.path.join(args.folder, "tokenizer_check.json")) as f:
        assert json.load(f)["max_length"] == MAX_CAPTION_LENGTH
    manifest = {
        "format": "ilf.text_to_image_model",
        "family": "pixart_alpha",
        "latent_scale": latent_scale,
        "max_caption_length": MAX_CAPTION_LENGTH,
        "text_encoder": "text_encoder.pt",
        "tokenizer": "spiece.model",
        "tokenizer_check": "tokenizer_check.json",
        "vae_decoder": "vae_decoder.pt",
        "vae_encoder": "vae_encoder.pt",
        "vae_downsampling": 4,
        "image_channels": 1,
        "resolution": 4 * model["input_size"],
        "model": model,
    }
    for key in ["backbone", "feedback"]:
        if os.path.isfile(os.path.join(args.folder, key + ".safetensors")):
            manifest[key] = key + ".safetensors"
    for key in ["text_encoder", "tokenizer", "tokenizer_check", "vae_decoder", "vae_encoder"]:
        assert os.path.isfile(os.path.join(args.folder, manifest[key])), manifest[key]
    record_checksums(manifest, args.folder)
    path = os.path.join(args.folder, "model.json")
    with open(path, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {path} (latent_scale {latent_scale})")


if __name__ == "__main__":
    main()
