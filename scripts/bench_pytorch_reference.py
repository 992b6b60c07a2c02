#!/usr/bin/env python3
"""Plain-PyTorch reference for ilf_bench: the DiT and PixArt (alpha / alpha-MS / sigma) backbones of
include/ilf/models written again in eager PyTorch by this project, to measure what a user would run
instead of our C++ path, on the same machine, and to check that both compute the same function.

Two modes:
  --bench PRESET ...   times one backbone forward per preset (random weights) in eager mode, with
                       CUDA-graph capture ("graph") and with torch.compile ("compile"); median of
                       --repeats after --warmup, CUDA events on CUDA, perf_counter on the CPU.
  --check FILE ...     loads a file written by `ilf_bench --dump-forward` (weights, inputs and our
                       forward output), runs this script's forward on the same weights and inputs,
                       and prints max|ours - reference| / max|reference|; exits 1 above --tol.

Runs with torch 1.13 (CPU; no safetensors module needed: the format is read by hand) and torch 2.x
(CUDA; F.scaled_dot_product_attention when present).
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------
# safetensors, read by hand: u64-LE header length, JSON header, raw little-endian data.

SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U8": torch.uint8, "BOOL": torch.bool}


def read_safetensors(path):
    """Returns ({name: CPU tensor}, metadata dict)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len).decode("utf-8"))
        data = bytearray(size - 8 - header_len)
        f.readinto(data)
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, info in header.items():
        dtype = SAFETENSORS_DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        item = torch.empty((), dtype=dtype).element_size()
        if end > begin:
            flat = torch.frombuffer(data, dtype=dtype, count=(end - begin) // item, offset=begin)
        else:
            flat = torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(info["shape"])
    return tensors, metadata


# ---------------------------------------------------------------------------------------------
# Layers (same arithmetic as src/models/layers.cpp).

def timestep_embedding(t, dim, max_period=10000.0):
    """t (B,) -> (B, dim) float32, [cos | sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=t.device) / half)
    args = t.reshape(-1, 1).float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def sincos_pos_embed_2d(dim, grid_h, grid_w, base_size, scale=1.0, float64_division=False):
    """(grid_h * grid_w, dim) float32: column half then row half, each [sin | cos], computed in float64."""
    def coordinates(n):
        step = np.float32(n / base_size)
        g = np.arange(n, dtype=np.float32) / step  # float32 like numpy's official grid
        if float64_division:
            return g.astype(np.float64) / scale
        return (g / np.float32(scale)).astype(np.float64)

    rows, cols = coordinates(grid_h), coordinates(grid_w)
    quarter = dim // 4
    omega = 1.0 / np.power(10000.0, np.arange(quarter, dtype=np.float64) / quarter)
    col_args = np.repeat(cols[None, :], grid_h, axis=0).reshape(-1)[:, None] * omega[None]  # (T, q)
    row_args = np.repeat(rows[:, None], grid_w, axis=1).reshape(-1)[:, None] * omega[None]
    out = np.concatenate([np.sin(col_args), np.cos(col_args), np.sin(row_args), np.cos(row_args)], axis=1)
    return torch.from_numpy(out.astype(np.float32))


def layer_norm(x):
    return F.layer_norm(x, (x.shape[-1],), eps=1e-6)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def unpatchify(tokens, grid_h, grid_w, p, channels):
    b = tokens.shape[0]
    x = tokens.reshape(b, grid_h, grid_w, p, p, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, grid_h * p, grid_w * p)


def attention(q, k, v, key_mask=None):
    """q (B, H, N, hd), k / v (B, H, L, hd), key_mask (B, L) bool or None -> (B, H, N, hd)."""
    mask, has_keys = None, None
    if key_mask is not None:
        valid = key_mask.bool()
        has_keys = valid.any(1).view(-1, 1, 1, 1)
        mask = (valid | ~has_keys.view(-1, 1)).view(valid.shape[0], 1, 1, valid.shape[1])
    if hasattr(F, "scaled_dot_product_attention"):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    else:
        logits = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        out = torch.matmul(logits.softmax(-1), v)
    if has_keys is not None:
        out = out * has_keys.to(out.dtype)
    return out


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, frequency_size=256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t):
        return self.mlp(timestep_embedding(t, self.frequency_size).to(self.mlp[0].weight.dtype))


class Mlp(nn.Module):
    def __init__(self, features, hidden, out):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.fc2 = nn.Linear(hidden, out)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class PatchEmbed(nn.Module):
    def __init__(self, p, channels, hidden):
        super().__init__()
        self.proj = nn.Conv2d(channels, hidden, p, stride=p)

    def forward(self, x):
        return self.proj(x.to(self.proj.weight.dtype)).flatten(2).transpose(1, 2)  # (B, T, D)


class SelfAttention(nn.Module):
    def __init__(self, hidden, heads, qk_norm=False):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        if qk_norm:
            self.q_norm = nn.LayerNorm(hidden, eps=1e-5)
            self.k_norm = nn.LayerNorm(hidden, eps=1e-5)
        self.qk_norm = qk_norm
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, d).unbind(2)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        heads = lambda t: t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
        out = attention(heads(q), heads(k), heads(v))
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class CrossAttention(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads = heads
        self.q_linear = nn.Linear(hidden, hidden)
        self.kv_linear = nn.Linear(hidden, 2 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x, context, key_mask):
        b, n, d = x.shape
        hd = d // self.heads
        q = self.q_linear(x).reshape(b, n, self.heads, hd).transpose(1, 2)
        kv = self.kv_linear(context).reshape(b, context.shape[1], 2, self.heads, hd)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        out = attention(q, k, v, key_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


# ---------------------------------------------------------------------------------------------
# DiT

class DiTBlock(nn.Module):
    def __init__(self, hidden, heads, mlp_ratio):
        super().__init__()
        self.attn = SelfAttention(hidden, heads)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio), hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x, c):
        m = self.adaLN_modulation(c).unsqueeze(1).chunk(6, dim=-1)
        x = x + m[2] * self.attn(modulate(layer_norm(x), m[0], m[1]))
        return x + m[5] * self.mlp(modulate(layer_norm(x), m[3], m[4]))


class DiTFinalLayer(nn.Module):
    def __init__(self, hidden, p, out):
        super().__init__()
        self.linear = nn.Linear(hidden, p * p * out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).unsqueeze(1).chunk(2, dim=-1)
        return self.linear(modulate(layer_norm(x), shift, scale))


class LabelEmbedder(nn.Module):
    def __init__(self, classes, hidden):
        super().__init__()
        self.embedding_table = nn.Embedding(classes + 1, hidden)


class DiT(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        d, p = a["hidden_size"], a["patch_size"]
        self.out_channels = 2 * a["in_channels"] if a["learn_sigma"] else a["in_channels"]
        grid = a["input_size"] // p
        self.x_embedder = PatchEmbed(p, a["in_channels"], d)
        self.t_embedder = TimestepEmbedder(d)
        self.y_embedder = LabelEmbedder(a["num_classes"], d)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(d, grid, grid, grid).unsqueeze(0))
        self.blocks = nn.ModuleList([DiTBlock(d, a["num_heads"], a["mlp_ratio"]) for _ in range(a["depth"])])
        self.final_layer = DiTFinalLayer(d, p, self.out_channels)

    def forward(self, x, t, class_labels):
        p = self.a["patch_size"]
        h = self.x_embedder(x) + self.pos_embed.to(self.x_embedder.proj.weight.dtype)
        c = self.t_embedder(t) + self.y_embedder.embedding_table(class_labels.long())
        for block in self.blocks:
            h = block(h, c)
        return unpatchify(self.final_layer(h, c), x.shape[2] // p, x.shape[3] // p, p, self.out_channels)


# ---------------------------------------------------------------------------------------------
# PixArt

class PixArtBlock(nn.Module):
    def __init__(self, hidden, heads, mlp_ratio, qk_norm):
        super().__init__()
        self.scale_shift_table = nn.Parameter(torch.randn(6, hidden) / hidden ** 0.5)
        self.attn = SelfAttention(hidden, heads, qk_norm)
        self.cross_attn = CrossAttention(hidden, heads)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio), hidden)

    def forward(self, x, t0, y, mask):
        b, _, d = x.shape
        m = (self.scale_shift_table[None] + t0.reshape(b, 6, d)).chunk(6, dim=1)
        x = x + m[2] * self.attn(modulate(layer_norm(x), m[0], m[1]))
        x = x + self.cross_attn(x, y, mask)
        return x + m[5] * self.mlp(modulate(layer_norm(x), m[3], m[4]))


class CaptionEmbedder(nn.Module):
    def __init__(self, channels, hidden, max_length):
        super().__init__()
        self.y_proj = Mlp(channels, hidden, hidden)
        self.register_buffer("y_embedding", torch.randn(max_length, channels) / channels ** 0.5)


class T2IFinalLayer(nn.Module):
    def __init__(self, hidden, p, out):
        super().__init__()
        self.linear = nn.Linear(hidden, p * p * out)
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden) / hidden ** 0.5)

    def forward(self, x, t):
        shift, scale = (self.scale_shift_table[None] + t[:, None]).chunk(2, dim=1)
        return self.linear(modulate(layer_norm(x), shift, scale))


class PixArt(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        d, p = a["hidden_size"], a["patch_size"]
        self.out_channels = 2 * a["in_channels"] if a["pred_sigma"] else a["in_channels"]
        self.base_size = a["input_size"] // p
        self.scale = a["pe_interpolation"] if a["variant"] == "sigma" else a["lewei_scale"]
        self.float64_division = a["variant"] != "sigma"
        self.x_embedder = PatchEmbed(p, a["in_channels"], d)
        self.t_embedder = TimestepEmbedder(d)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(d, self.base_size, self.base_size, self.base_size,
                                                              self.scale, self.float64_division).unsqueeze(0))
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.y_embedder = CaptionEmbedder(a["caption_channels"], d, a["model_max_length"])
        if a["variant"] == "alpha_ms":
            self.csize_embedder = TimestepEmbedder(d // 3)
            self.ar_embedder = TimestepEmbedder(d // 3)
        self.blocks = nn.ModuleList([PixArtBlock(d, a["num_heads"], a["mlp_ratio"], a.get("qk_norm", False))
                                     for _ in range(a["depth"])])
        self.final_layer = T2IFinalLayer(d, p, self.out_channels)
        self._pos_cache = {}

    def positional_embedding(self, gh, gw, like):
        if self.a["variant"] == "alpha":
            return self.pos_embed.to(like.dtype)
        key = (gh, gw, like.device, like.dtype)
        if key not in self._pos_cache:  # computed once per grid, outside any capture
            self._pos_cache[key] = sincos_pos_embed_2d(self.a["hidden_size"], gh, gw, self.base_size, self.scale,
                                                       self.float64_division).unsqueeze(0).to(like.device, like.dtype)
        return self._pos_cache[key]

    def forward(self, x, t, caption, caption_mask=None, image_hw=None, aspect_ratio=None):
        p = self.a["patch_size"]
        gh, gw = x.shape[2] // p, x.shape[3] // p
        weight = self.x_embedder.proj.weight
        h = self.x_embedder(x) + self.positional_embedding(gh, gw, weight)
        b = h.shape[0]
        t_vec = self.t_embedder(t)
        if self.a["variant"] == "alpha_ms":
            csize = self.csize_embedder(image_hw.reshape(-1)).reshape(b, -1)
            ar = self.ar_embedder(aspect_ratio.reshape(-1)).reshape(b, -1)
            t_vec = t_vec + torch.cat([csize, ar], dim=1)
        t0 = self.t_block(t_vec)
        if caption.dim() == 4:
            caption = caption.squeeze(1)
        y = self.y_embedder.y_proj(caption.to(weight.dtype))
        mask = None if caption_mask is None else caption_mask.reshape(b, -1) != 0
        if mask is None:
            mask = torch.ones(b, y.shape[1], dtype=torch.bool, device=y.device)
        for block in self.blocks:
            h = block(h, t0, y, mask)
        return unpatchify(self.final_layer(h, t_vec), gh, gw, p, self.out_channels)


def build_model(arch):
    return DiT(arch) if arch["family"] == "dit" else PixArt(arch)


# ---------------------------------------------------------------------------------------------
# Presets (as include/ilf/experiments/bench/bench.h) and random inputs

def _dit(**kw):
    a = dict(family="dit", input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
             mlp_ratio=4.0, num_classes=1000, learn_sigma=True)
    a.update(kw)
    return a


def _pixart(**kw):
    a = dict(family="pixart", variant="alpha", input_size=64, patch_size=2, in_channels=4, hidden_size=1152, depth=28,
             num_heads=16, mlp_ratio=4.0, pred_sigma=True, caption_channels=4096, model_max_length=120,
             lewei_scale=1.0, pe_interpolation=1.0, qk_norm=False)
    a.update(kw)
    return a


PRESETS = {
    "dit-xl-2-256": _dit(),
    "pixart-xl-2-512": _pixart(),
    "pixart-xl-2-1024": _pixart(variant="alpha_ms", input_size=128, lewei_scale=2.0),
    "dit-tiny": _dit(input_size=8, hidden_size=64, depth=4, num_heads=4, num_classes=10),
    "pixart-tiny": _pixart(input_size=8, hidden_size=96, depth=4, num_heads=4, caption_channels=32, model_max_length=8),
    "pixart-tiny-ms": _pixart(variant="alpha_ms", input_size=8, hidden_size=96, depth=4, num_heads=4,
                              caption_channels=32, model_max_length=8, lewei_scale=2.0),
    "pixart-sigma-tiny": _pixart(variant="sigma", input_size=8, hidden_size=96, depth=4, num_heads=4,
                                 caption_channels=32, model_max_length=8, pe_interpolation=2.0, qk_norm=True),
}


def random_inputs(arch, batch, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    c, s = arch["in_channels"], arch["input_size"]
    x = torch.randn(batch, c, s, s, generator=g)
    t = torch.rand(batch, generator=g) * 999.0
    inputs = {}
    if arch["family"] == "dit":
        inputs["class_labels"] = torch.arange(batch) % arch["num_classes"]
    else:
        length = arch["model_max_length"]
        inputs["caption"] = torch.randn(batch, length, arch["caption_channels"], generator=g)
        mask = torch.zeros(batch, length, dtype=torch.int64)
        mask[:, : max(1, length // 2)] = 1
        inputs["caption_mask"] = mask
        if arch["variant"] == "alpha_ms":
            inputs["image_hw"] = torch.tensor([[8.0 * s, 8.0 * s]]).repeat(batch, 1)
            inputs["aspect_ratio"] = torch.ones(batch, 1)
    return x.to(device), t.to(device), {k: v.to(device) for k, v in inputs.items()}


def parse_dtype(name):
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}
    if name not in table:
        raise SystemExit(f"unknown dtype {name!r} (expected float32, bfloat16 or float16)")
    return table[name]


# ---------------------------------------------------------------------------------------------
# Timing

def time_ms(fn, device, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(times))


def bench(args):
    device = torch.device(args.device)
    dtype = parse_dtype(args.dtype)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    rows = []
    for preset in args.bench:
        if preset not in PRESETS:
            raise SystemExit(f"unknown preset {preset!r} (expected one of {', '.join(PRESETS)})")
        arch = PRESETS[preset]
        torch.manual_seed(args.seed)
        model = build_model(arch)
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.02)
        model = model.to(device, dtype).eval()
        x, t, inputs = random_inputs(arch, args.batch, device, args.seed)
        for mode in args.modes:
            row = {"model": preset, "device": device.type, "dtype": args.dtype, "batch": args.batch, "mode": mode,
                   "torch": torch.__version__}
            try:
                with torch.no_grad():
                    if mode == "eager":
                        row["ms_per_forward"] = time_ms(lambda: model(x, t, **inputs), device, args.warmup, args.repeats)
                    elif mode == "graph":
                        if device.type != "cuda":
                            raise RuntimeError("CUDA graphs need a CUDA device")
                        side = torch.cuda.Stream()
                        side.wait_stream(torch.cuda.current_stream())
                        with torch.cuda.stream(side):
                            for _ in range(3):
                                model(x, t, **inputs)
                        torch.cuda.current_stream().wait_stream(side)
                        graph = torch.cuda.CUDAGraph()
                        with torch.cuda.graph(graph):
                            model(x, t, **inputs)
                        row["ms_per_forward"] = time_ms(graph.replay, device, args.warmup, args.repeats)
                    elif mode == "compile":
                        if not hasattr(torch, "compile"):
                            raise RuntimeError("torch.compile needs torch >= 2")
                        compiled = torch.compile(model)
                        row["ms_per_forward"] = time_ms(lambda: compiled(x, t, **inputs), device,
                                                        max(args.warmup, 3), args.repeats)
                    else:
                        raise RuntimeError(f"unknown mode {mode!r} (expected eager, graph, compile)")
            except Exception as e:  # a failing mode is reported, the others still run
                row["error"] = f"{type(e).__name__}: {e}"[:300]
            rows.append(row)
            print(json.dumps(row), flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    table = ["| model | device | dtype | batch | PyTorch mode | ms / forward |", "|---|---|---|---|---|---|"]
    for r in rows:
        value = f"{r['ms_per_forward']:.2f}" if "ms_per_forward" in r else "failed: " + r["error"]
        table.append(f"| {r['model']} | {r['device']} | {r['dtype']} | {r['batch']} | {r['mode']} (torch {r['torch']}) | {value} |")
    text = "\n".join(table) + "\n"
    print(text)
    write_outputs(args, text, {"rows": rows, "warmup": args.warmup, "repeats": args.repeats, "tf32": args.tf32})
    return 0


# ---------------------------------------------------------------------------------------------
# Agreement with ilf_bench --dump-forward

def check(args):
    device = torch.device(args.device)
    if device.type == "cuda":  # float32 must be float32 on both sides
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    results, failed = [], False
    for path in args.check:
        tensors, metadata = read_safetensors(path)
        arch = json.loads(metadata["architecture"])
        weights = {k[len("weight."):]: v for k, v in tensors.items() if k.startswith("weight.")}
        dtype = next(iter(weights.values())).dtype
        model = build_model(arch)
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise SystemExit(f"{path}: weights do not match the reference model: missing {missing}, unexpected {unexpected}")
        model = model.to(device, dtype).eval()
        x = tensors["input.x"].to(device)
        t = tensors["input.t"].to(device)
        with torch.no_grad():
            if arch["family"] == "dit":
                ref = model(x, t, tensors["input.class_labels"].to(device))
            else:
                opt = lambda k: tensors[k].to(device) if k in tensors else None
                ref = model(x, t, tensors["input.caption"].to(device), opt("input.caption_mask"), opt("input.image_hw"),
                            opt("input.aspect_ratio"))
        ours = tensors["output"].to(device)
        ref64, ours64 = ref.double(), ours.double()
        denom = ref64.abs().max().item()
        error = (ours64 - ref64).abs().max().item() / (denom if denom else 1.0)
        tol = args.tol if args.tol is not None else (1e-5 if dtype == torch.float32 else 5e-2)
        ok = error < tol
        failed |= not ok
        row = {"file": os.path.basename(path), "model": metadata.get("model", "?"), "dtype": str(dtype).replace("torch.", ""),
               "device": device.type, "torch": torch.__version__, "max_relative_error": error, "tolerance": tol, "ok": ok}
        results.append(row)
        print(json.dumps(row), flush=True)
    table = ["| model | dtype | device | max abs diff / max abs ref | tolerance | ok |", "|---|---|---|---|---|---|"]
    for r in results:
        table.append(f"| {r['model']} | {r['dtype']} | {r['device']} (torch {r['torch']}) | {r['max_relative_error']:.3g} | "
                     f"{r['tolerance']:g} | {'yes' if r['ok'] else 'NO'} |")
    text = "\n".join(table) + "\n"
    print(text)
    write_outputs(args, text, {"checks": results})
    return 1 if failed else 0


def write_outputs(args, text, data):
    for path, content in ((args.out, text), (args.json, json.dumps(data, indent=2) + "\n")):
        if path:
            tmp = f"{path}.tmp.{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(content)
            os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", nargs="+", metavar="PRESET", help="time these presets: " + ", ".join(PRESETS))
    ap.add_argument("--check", nargs="+", metavar="FILE", help="agreement with files from ilf_bench --dump-forward")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", help="--bench: float32, bf16 or fp16")
    ap.add_argument("--batch", type=int, default=2, help="--bench: forward batch")
    ap.add_argument("--modes", nargs="+", default=["eager"], help="--bench: eager, graph, compile")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tf32", action="store_true", help="--bench: allow TF32 for float32 on CUDA")
    ap.add_argument("--tol", type=float, default=None, help="--check: tolerance (default 1e-5 float32, 5e-2 otherwise)")
    ap.add_argument("--out", help="write the Markdown table here")
    ap.add_argument("--json", help="write the results as JSON here")
    args = ap.parse_args()
    if bool(args.bench) == bool(args.check):
        ap.error("give exactly one of --bench or --check")
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        ap.error("--batch and --repeats must be >= 1, --warmup >= 0")
    torch.set_grad_enabled(False)
    return bench(args) if args.bench else check(args)


if __name__ == "__main__":
    sys.exit(main())
