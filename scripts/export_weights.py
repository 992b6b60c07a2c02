#!/usr/bin/env python3
"""Export DiT / PixArt backbone weights for ILF (run it where PyTorch is installed).

Input: an official DiT `.pt` or PixArt `.pth` checkpoint (a plain state dict, or a dict holding it
under "state_dict", "ema" or "model"), a TorchScript archive, a safetensors file, or a diffusers
transformer folder (its *.safetensors shards, or a pipeline folder with transformer/).
Output: a TorchScript weights archive (--torchscript) and/or a safetensors file (--safetensors). Both
keep the tensor names of the input, which `ilf::read_weights` reads back as they are (official or
diffusers key names; the C++ side converts the diffusers layout itself).

The TorchScript archive is a scripted tree of empty modules whose buffers carry the tensors: a name
with dots ("blocks.0.attn.qkv.weight") becomes nested submodules, so `named_buffers()` in C++ gives
back exactly the original names.

Example: python3 scripts/export_weights.py DiT-XL-2-256x256.pt --torchscript dit_xl.pt --safetensors dit_xl.safetensors
"""
import argparse
import json
import os
import struct
import sys

import torch

SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
DTYPE_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}


def fail(message):
    sys.exit(f"export_weights: {message}")


def read_safetensors(path):
    """Reads a safetensors file into {name: tensor} (no safetensors package needed)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        fail(f"{path}: not a safetensors file")
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        fail(f"{path}: header length {header_len} exceeds the file (truncated?)")
    header = json.loads(data[8:8 + header_len])
    body = data[8 + header_len:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        if end > len(body):
            fail(f"{path}: tensor {name} lies outside the file (truncated?)")
        dtype = SAFETENSORS_DTYPES.get(entry["dtype"])
        if dtype is None:
            fail(f"{path}: tensor {name} has unsupported dtype {entry['dtype']}")
        raw = torch.frombuffer(bytearray(body[begin:end]), dtype=torch.uint8) if end > begin else torch.empty(0, dtype=torch.uint8)
        tensors[name] = raw.view(dtype).reshape(entry["shape"]).clone()
    return tensors


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata} if metadata else {}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in DTYPE_NAMES:
            fail(f"tensor {name}: dtype {t.dtype} cannot be stored in safetensors")
        blob = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp.export"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


def tensors_of_checkpoint(obj, path):
    """The state dict inside a torch.load'ed checkpoint."""
    if isinstance(obj, dict):
        for key in ("state_dict", "ema", "model"):
            if key in obj and isinstance(obj[key], dict):
                print(f"export_weights: {path}: using the tensors under \"{key}\"", file=sys.stderr)
                obj = obj[key]
                break
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    fail(f"{path}: no state dict of tensors found (expected a dict of tensors, or one under state_dict / ema / model)")


def read_input(path):
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
        if not files and os.path.isdir(os.path.join(path, "transformer")):
            return read_input(os.path.join(path, "transformer"))
        if not files:
            fail(f"{path}: folder holds no *.safetensors file")
        tensors = {}
        for f in files:
            for name, t in read_safetensors(os.path.join(path, f)).items():
                if name in tensors:
                    fail(f"{f}: tensor {name} also appears in another shard")
                tensors[name] = t
        return tensors
    if not os.path.exists(path):
        fail(f"{path}: file not found")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":
        with open(path, "rb") as f:
            head = f.read(9)
        if len(head) == 9 and head[8:9] == b"{":  # u64 header length, then the JSON header
            return read_safetensors(path)
    try:
        module = torch.jit.load(path, map_location="cpu")
        return {k: v.detach().clone() for k, v in module.state_dict().items()}
    except Exception:
        pass  # not TorchScript: a torch.save'd checkpoint
    return tensors_of_checkpoint(torch.load(path, map_location="cpu"), path)


def build_module_tree(tensors):
    """Nested modules whose buffers carry `tensors` under their dotted names."""
    root = torch.nn.Module()
    for name, tensor in sorted(tensors.items()):
        *path, leaf = name.split(".")
        node = root
        for part in path:
            child = node._modules.get(part)
            if child is None:
                if part in node._buffers:
                    fail(f"tensor name {name} clashes with the tensor {part} at the same level")
                child = torch.nn.Module()
                node.add_module(part, child)
            node = child
        if leaf in node._modules:
            fail(f"tensor name {name} clashes with other tensors below it")
        node.register_buffer(leaf, tensor.detach().contiguous())
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="checkpoint (.pt / .pth), TorchScript archive, safetensors file or diffusers folder")
    parser.add_argument("--torchscript", help="output TorchScript weights archive")
    parser.add_argument("--safetensors", help="output safetensors file")
    parser.add_argument("--dtype", default="keep", choices=["keep", "float32", "float16", "bfloat16"],
                        help="convert floating-point tensors (default: keep their dtype)")
    args = parser.parse_args()
    if not args.torchscript and not args.safetensors:
        parser.error("give --torchscript and/or --safetensors")

    tensors = read_input(args.input)
    if args.dtype != "keep":
        target = getattr(torch, args.dtype)
        tensors = {k: v.to(target) if v.is_floating_point() else v for k, v in tensors.items()}
    if args.safetensors:
        write_safetensors(args.safetensors, tensors, {"source": os.path.basename(args.input)})
        print(f"export_weights: wrote {len(tensors)} tensors to {args.safetensors}", file=sys.stderr)
    if args.torchscript:
        scripted = torch.jit.script(build_module_tree(tensors))
        tmp = args.torchscript + ".tmp.export"
        scripted.save(tmp)
        os.replace(tmp, args.torchscript)
        print(f"export_weights: wrote {len(tensors)} tensors to {args.torchscript}", file=sys.stderr)


if __name__ == "__main__":
    main()
