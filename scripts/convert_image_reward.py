#!/usr/bin/env python3
"""Converts the image-reward package's ImageReward.pt into ImageReward.safetensors, which ILF's ImageReward reads.

    python3 scripts/convert_image_reward.py ~/.cache/ImageReward/ImageReward.pt ImageReward.safetensors

Why: ImageReward.pt is torch.save(model.state_dict()), a pickled collections.OrderedDict (with a
_metadata attribute). LibTorch's torch::pickle_load, in Debian's 1.13 as in torch 2.11, reads an
OrderedDict as None (its unpickler only expects one as a tensor's empty backward-hooks argument), so
the C++ side cannot take the state dict from that file. This script loads it with torch.load and writes
every tensor under the same name, with its dtype, to a safetensors file (the format is written here
directly: only torch is needed, e.g. Debian's python3-torch). Tensors that share storage are copied.
"""
import argparse
import json
import struct
import sys

import torch

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in DTYPES:
            sys.exit(f"{name}: dtype {t.dtype} has no safetensors equivalent")
        data = t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt", "source": "ImageReward.pt (scripts/convert_image_reward.py)"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="ImageReward.pt (the package's state dict)")
    parser.add_argument("out", help="the safetensors file to write")
    args = parser.parse_args()
    state = torch.load(args.weights, map_location="cpu")
    if not isinstance(state, dict):
        sys.exit(f"{args.weights}: expected a state dict, got {type(state).__name__}")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    write_safetensors(args.out, tensors)
    print(f"{args.out}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
