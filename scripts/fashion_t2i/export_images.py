#!/usr/bin/env python3
"""Writes the Fashion-MNIST training set as a text-to-image data set the way real ones come: one PNG per
image (28x28 padded by 2 background pixels to 32x32, grey) and a .txt caption beside it, taken line by
line from models/fashion_mnist_t2i/captions_train.txt. `ilf_prepare_data --captions --channels 1` turns
the folder into latent + caption-feature shards.

Runs with Debian's python3 (numpy, PIL). Reads the idx files of the Debian package dataset-fashion-mnist.
Usage: /usr/bin/python3 scripts/fashion_t2i/export_images.py --out runs/fashion_mnist_t2i/images
"""
import argparse
import gzip
import os

import numpy as np
from PIL import Image

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/fashion_mnist_t2i/images")
    parser.add_argument("--captions", default="models/fashion_mnist_t2i/captions_train.txt")
    parser.add_argument("--data", default=DATA)
    args = parser.parse_args()
    images = read_idx(os.path.join(args.data, "train-images-idx3-ubyte.gz"))  # (60000, 28, 28)
    with open(args.captions, encoding="utf-8") as f:
        captions = [line.rstrip("\n") for line in f]
    if len(captions) != len(images):
        raise SystemExit(f"{args.captions}: {len(captions)} captions for {len(images)} images")
    padded = np.zeros((len(images), 32, 32), dtype=np.uint8)  # background 0 -> -1 after scaling
    padded[:, 2:30, 2:30] = images
    for i, (image, caption) in enumerate(zip(padded, captions)):
        folder = os.path.join(args.out, f"{i // 1000:03d}")  # 1000 files per folder
        os.makedirs(folder, exist_ok=True)
        stem = os.path.join(folder, f"{i:05d}")
        Image.fromarray(image, mode="L").save(stem + ".png")
        with open(stem + ".txt", "w", encoding="utf-8") as f:
            f.write(caption + "\n")
    print(f"wrote {len(images)} images with captions under {args.out}")


if __name__ == "__main__":
    main()
