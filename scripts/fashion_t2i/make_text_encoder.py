#!/usr/bin/env python3
"""Writes the text encoder of the Fashion-MNIST text-to-image model folder: a small, randomly initialised and
frozen encoder with the architecture of the T5 v1.1 encoder that PixArt uses (google/t5-v1_1-xxl, here
with width 64), saved with torch.jit.script:

  text_encoder.pt  forward(input_ids (B, L) int64, attention_mask (B, L) int64) -> hidden states (B, L, 64),
                   the interface of the exported T5 encoder; padded positions (mask 0) are masked out of
                   the attention (their own outputs are computed, as in T5, and ignored downstream)

The architecture follows Hugging Face's T5EncoderModel (config t5-v1_1: feed_forward_proj "gated-gelu"):
token embedding; relative position bias (32 bidirectional buckets, max distance 128) computed by the first
layer and shared by all layers; per layer x += SelfAttention(RMSNorm(x)) and x += GatedGelu(RMSNorm(x));
a final RMSNorm. RMSNorm = T5LayerNorm (no bias, no mean subtraction, eps 1e-6); the attention scores are
q.k without the 1/sqrt(d) scaling (T5 folds it into the initialisation); the gated feed-forward is
wo(gelu_tanh(wi_0 x) * wi_1 x); no biases; no dropout.

Initialisation: T5's own (_init_weights of T5PreTrainedModel, initializer_factor 1), with one change: the
output projections of every residual branch (attention o and feed-forward wo) are scaled by
RESIDUAL_SCALE, so that each token's own embedding dominates its output and token identity survives the
layers while the attention still mixes in context. The script measures both (see --sweep) and prints the
cosine similarities of mean-pooled caption features.
Needs models/fashion_mnist_t2i/spiece.model (make_tokenizer.py) and the spm_encode command line.
Usage: OMP_NUM_THREADS=1 /usr/bin/python3 scripts/fashion_t2i/make_text_encoder.py [--folder models/fashion_mnist_t2i]
"""
import argparse
import math
import os
import subprocess
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 0
D_MODEL = 64
NUM_LAYERS = 2
NUM_HEADS = 4
D_KV = 16
D_FF = 128
NUM_BUCKETS = 32
MAX_DISTANCE = 128
RESIDUAL_SCALE = 0.5
MAX_LENGTH = 24  # model.json's max_caption_length


class T5LayerNorm(nn.Module):
    """RMSNorm: x / sqrt(mean(x^2) + eps) * weight, no bias, no mean subtraction."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps))


class T5Attention(nn.Module):
    def __init__(self, has_relative_attention_bias: bool):
        super().__init__()
        inner = NUM_HEADS * D_KV
        self.q = nn.Linear(D_MODEL, inner, bias=False)
        self.k = nn.Linear(D_MODEL, inner, bias=False)
        self.v = nn.Linear(D_MODEL, inner, bias=False)
        self.o = nn.Linear(inner, D_MODEL, bias=False)
        self.num_heads = NUM_HEADS
        self.d_kv = D_KV
        self.has_relative_attention_bias = has_relative_attention_bias
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(NUM_BUCKETS, NUM_HEADS)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        h, d = self.num_heads, self.d_kv
        q = self.q(x).view(b, n, h, d).transpose(1, 2)  # (B, H, L, D_KV)
        k = self.k(x).view(b, n, h, d).transpose(1, 2)
        v = self.v(x).view(b, n, h, d).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(2, 3)) + bias  # no 1/sqrt(D_KV), as T5
        weights = F.softmax(scores.float(), dim=-1).type_as(scores)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(b, n, h * d)
        return self.o(out)


class T5GatedGelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.wi_0 = nn.Linear(D_MODEL, D_FF, bias=False)
        self.wi_1 = nn.Linear(D_MODEL, D_FF, bias=False)
        self.wo = nn.Linear(D_FF, D_MODEL, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x))


class T5Block(nn.Module):
    def __init__(self, has_relative_attention_bias: bool):
        super().__init__()
        self.attn_norm = T5LayerNorm(D_MODEL)
        self.attn = T5Attention(has_relative_attention_bias)
        self.ff_norm = T5LayerNorm(D_MODEL)
        self.ff = T5GatedGelu()

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), bias)
        return x + self.ff(self.ff_norm(x))


def relative_position_bucket(relative_position: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5's bidirectional bucketing of key - query offsets: half the buckets per direction, exact below
    num_buckets / 4, logarithmic up to max_distance."""
    num_buckets = num_buckets // 2
    buckets = (relative_position > 0).to(torch.long) * num_buckets
    relative_position = torch.abs(relative_position)
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    large = max_exact + (torch.log(relative_position.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(is_small, relative_position, large)


class T5Encoder(nn.Module):
    def __init__(self, vocab_size: int):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, D_MODEL)
        self.blocks = nn.ModuleList([T5Block(i == 0) for i in range(NUM_LAYERS)])
        self.final_norm = T5LayerNorm(D_MODEL)
        self.mask_value = float(torch.finfo(torch.float32).min)
        self.num_buckets = NUM_BUCKETS
        self.max_distance = MAX_DISTANCE

    def position_bias(self, length: int, device: torch.device) -> torch.Tensor:
        position = torch.arange(length, dtype=torch.long, device=device)
        relative = position[None, :] - position[:, None]  # key - query, (L, L)
        buckets = relative_position_bucket(relative, self.num_buckets, self.max_distance)
        return self.blocks[0].attn.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, H, L, L)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(input_ids)
        # The first layer's position bias plus the padding mask, shared by all layers (as in T5).
        mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * self.mask_value  # (B, 1, 1, L)
        bias = self.position_bias(input_ids.shape[1], input_ids.device) + mask
        for block in self.blocks:
            x = block(x, bias)
        return self.final_norm(x)


def init_t5(model: T5Encoder, residual_scale: float):
    """T5PreTrainedModel._init_weights (initializer_factor 1), o and wo times residual_scale."""
    with torch.no_grad():
        model.embed_tokens.weight.normal_(0.0, 1.0)
        for block in model.blocks:
            a, f = block.attn, block.ff
            a.q.weight.normal_(0.0, (D_MODEL * D_KV) ** -0.5)
            a.k.weight.normal_(0.0, D_MODEL ** -0.5)
            a.v.weight.normal_(0.0, D_MODEL ** -0.5)
            a.o.weight.normal_(0.0, residual_scale * (NUM_HEADS * D_KV) ** -0.5)
            if a.has_relative_attention_bias:
                a.relative_attention_bias.weight.normal_(0.0, D_MODEL ** -0.5)
            f.wi_0.weight.normal_(0.0, D_MODEL ** -0.5)
            f.wi_1.weight.normal_(0.0, D_MODEL ** -0.5)
            f.wo.weight.normal_(0.0, residual_scale * D_FF ** -0.5)


def build(vocab_size: int, residual_scale: float) -> T5Encoder:
    torch.manual_seed(SEED)
    model = T5Encoder(vocab_size)
    init_t5(model, residual_scale)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def tokenize(spm_model, texts, max_length):
    """T5Tokenizer(padding='max_length', truncation=True) via spm_encode: ids (B, L), mask (B, L)."""
    out = subprocess.run(["spm_encode", "--model=" + spm_model, "--output_format=id", "--extra_options=eos"],
                         input="".join(t + "\n" for t in texts), capture_output=True, text=True, check=True)
    ids = torch.zeros(len(texts), max_length, dtype=torch.long)
    mask = torch.zeros(len(texts), max_length, dtype=torch.long)
    for i, line in enumerate(out.stdout.splitlines()):
        tokens = [int(t) for t in line.split()]
        tokens = tokens[:-1][:max_length - 1] + [1]
        ids[i, :len(tokens)] = torch.tensor(tokens)
        mask[i, :len(tokens)] = 1
    return ids, mask


def pooled(model, ids, mask):
    h = model(ids, mask)
    m = mask[..., None].to(h.dtype)
    return (h * m).sum(1) / m.sum(1)


def token_statistics(model, ids, mask):
    """How much of each token survives: (a) accuracy of recovering every real token's id from its output by
    the nearest (cosine) context-free feature (the token alone before </s>), (b) the mean cosine between a
    token's output and its context-free feature."""
    vocab = model.embed_tokens.num_embeddings
    alone_ids = torch.stack([torch.arange(3, vocab), torch.ones(vocab - 3, dtype=torch.long)], 1)
    alone = F.normalize(model(alone_ids, torch.ones_like(alone_ids))[:, 0], dim=-1)  # (V-3, C)
    h = F.normalize(model(ids, mask), dim=-1)
    real = (mask == 1) & (ids > 2)
    feats, targets = h[real], ids[real] - 3
    sims = feats @ alone.T
    accuracy = (sims.argmax(1) == targets).double().mean().item()
    own = sims.gather(1, targets[:, None]).mean().item()
    return accuracy, own


# (prompt, the words before the class noun)
TABLE_PROMPTS = [("a sneaker", "a"), ("a sandal", "a"), ("a pair of trainers", "a pair of"), ("an ankle boot", "an"),
                 ("a t-shirt", "a"), ("a shirt", "a"), ("a pullover", "a"), ("a photo of a sneaker", "a photo of a"),
                 ("a photo of a sandal", "a photo of a")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="models/fashion_mnist_t2i")
    parser.add_argument("--sweep", action="store_true", help="print the token statistics for several residual scales")
    args = parser.parse_args()
    if os.environ.get("PYTHONHASHSEED") != "0":
        # TorchScript writes some module constants in set order, which depends on Python's string hashing:
        # fix it, so that the saved files are byte-identical from run to run.
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, PYTHONHASHSEED="0"))
    torch.set_num_threads(1)
    spm_model = os.path.join(args.folder, "spiece.model")
    with open(os.path.join(args.folder, "spiece.vocab"), encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    with open(os.path.join(args.folder, "captions_eval.txt")) as f:
        eval_lines = [line.split("\t") for line in f.read().splitlines()]
    eval_ids, eval_mask = tokenize(spm_model, [c for _, c in eval_lines], MAX_LENGTH)

    if args.sweep:
        with torch.no_grad():
            for scale in [1.0, 0.5, 0.25, 0.1]:
                acc, own = token_statistics(build(vocab_size, scale), eval_ids, eval_mask)
                print(f"residual scale {scale}: token recovered from its output {acc:.3f}, "
                      f"cosine to its context-free feature {own:.3f}")
        return

    model = build(vocab_size, RESIDUAL_SCALE)
    path = os.path.join(args.folder, "text_encoder.pt")
    torch.jit.script(model).save(path + ".tmp")
    os.replace(path + ".tmp", path)
    scripted = torch.jit.load(path)

    with torch.no_grad():
        ids, mask = tokenize(spm_model, [t for t, _ in TABLE_PROMPTS], MAX_LENGTH)
        out = scripted(ids, mask)
        assert out.shape == (len(TABLE_PROMPTS), MAX_LENGTH, D_MODEL) and out.dtype == torch.float32
        assert torch.equal(out, model(ids, mask))
        # Padding is masked out: a caption alone, with other padding lengths and in a batch gives the same features.
        n = int(mask[2].sum())
        short = scripted(ids[2:3, :n], mask[2:3, :n])
        assert torch.allclose(short, out[2:3, :n], atol=1e-5), (short - out[2:3, :n]).abs().max()
        empty_ids, empty_mask = tokenize(spm_model, [""], MAX_LENGTH)  # the null caption: just </s>
        assert int(empty_mask.sum()) == 1 and torch.isfinite(scripted(empty_ids, empty_mask)).all()
        acc, own = token_statistics(scripted, eval_ids, eval_mask)
        p = F.normalize(pooled(scripted, ids, mask), dim=-1)
        table = p @ p.T
        # The class noun's own output features (mean over its pieces) in each prompt.
        noun = []
        for prompt, prefix in TABLE_PROMPTS:
            n_prefix = len(tokenize(spm_model, [prefix], MAX_LENGTH)[1][0].nonzero()) - 1 if prefix else 0
            p_ids, p_mask = tokenize(spm_model, [prompt], MAX_LENGTH)
            n = int(p_mask.sum()) - 1  # pieces without </s>
            noun.append(scripted(p_ids, p_mask)[0, n_prefix:n].mean(0))
        noun = F.normalize(torch.stack(noun), dim=-1)
        noun_table = noun @ noun.T
        # Over the eval captions: mean-pooled features with their mean subtracted, cosine within / between
        # classes and the accuracy of the nearest class centroid.
        eval_pooled = pooled(scripted, eval_ids, eval_mask)
        labels = torch.tensor([int(i) for i, _ in eval_lines])
        e = F.normalize(eval_pooled - eval_pooled.mean(0), dim=-1)
        sims = e @ e.T
        same = labels[:, None] == labels[None, :]
        within = sims[same & ~torch.eye(len(labels), dtype=torch.bool)].mean().item()
        between = sims[~same].mean().item()
        centroids = F.normalize(torch.stack([e[labels == c].mean(0) for c in range(10)]), dim=-1)
        centroid_accuracy = ((e @ centroids.T).argmax(1) == labels).double().mean().item()
    print(f"wrote {path}: vocabulary {vocab_size}, width {D_MODEL}, {NUM_LAYERS} layers, {NUM_HEADS} heads, "
          f"feed-forward {D_FF}, residual scale {RESIDUAL_SCALE}, "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    print(f"eval captions: token recovered from its output {acc:.3f}, cosine to its context-free feature {own:.3f}")
    names = [repr(t) for t, _ in TABLE_PROMPTS]
    width = max(len(n) for n in names)
    for title, t in [("cosine similarity of mean-pooled features (masked mean over pieces and </s>):", table),
                     ("cosine similarity of the class noun's output features (mean over its pieces):", noun_table)]:
        print(title)
        print(" " * width + " | " + " | ".join(f"{i:>5}" for i in range(len(names))))
        for i, name in enumerate(names):
            print(f"{name:>{width}} | " + " | ".join(f"{t[i, j].item():5.2f}" for j in range(len(names))) + f"   ({i})")
    print(f"eval captions, centred pooled features: mean cosine within a class {within:.3f}, between classes "
          f"{between:.3f}; nearest class centroid {centroid_accuracy:.3f}")


if __name__ == "__main__":
    main()
