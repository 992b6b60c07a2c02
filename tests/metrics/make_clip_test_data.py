#!/usr/bin/env python3
"""Writes tests/data/metrics/clip_tiny/: a CLIPModel folder with random tiny weights and a small real CLIP
vocabulary, for the end-to-end tests that run without Python packages (tests/test_eval_clip.cpp, the
prompt-set evaluation on the embedded text-to-image model). The scores it gives are meaningless.

    ILF_PY=~/.cache/ilf/venv-torch-2.11.0/bin/python   # torch, transformers 5, open_clip_torch
    $ILF_PY tests/metrics/make_clip_test_data.py tests/data/metrics/clip_tiny

The vocabulary is CLIP's (open_clip's bpe_simple_vocab_16e6.txt.gz) cut to its first 1,000 merges: the
512 byte symbols, 1,000 merged tokens, <|startoftext|> 1512 and <|endoftext|> 1513. The model: both
towers 2 layers of width 16 (2 heads, MLP 32), text quick_gelu with config eos_token_id 2 (argmax pooling,
as the openai folders), vision gelu, image 32 with patch 8 (preprocessor_config.json: shortest side 32,
crop 32), projection 8. Also prints the ids transformers' CLIPTokenizer gives this folder for the prompts
that tests/test_eval_clip.cpp checks (it quotes them).

Beside the folder, clip_tiny_bpe.txt.gz (a few KB): open_clip's .gz format with the same first 1,000
merges and the rest of CLIP's 48,894 merge lines filled with one repeated merge ("\u0100 \u0100", two
symbols of byte 0, which no text produces), so that the .gz reader is tested without Python; the ids
open_clip's SimpleTokenizer gives for the test prompts with it are printed too.
"""
import gzip
import json
import os
import sys

MERGES = 1000


def bytes_to_unicode():
    """GPT-2's byte -> printable character map (the order is that of CLIP's first 256 ids)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


TEST_PROMPTS = ["a photo of a cat", "It's a DOG's life!", "numbers 123 and 4.5", "  whitespace\t\truns  ", "Ångström café"]


def main():
    import torch
    from open_clip.tokenizer import default_bpe
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/metrics/clip_tiny"
    os.makedirs(out, exist_ok=True)
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:1 + MERGES]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}

    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
                         max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2, image_size=32, patch_size=8,
                           hidden_act="gelu"),
        projection_dim=8)
    torch.manual_seed(29)
    model = CLIPModel(config).eval()
    generator = torch.Generator().manual_seed(29)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            scale = p[0].numel() ** -0.5 if p.dim() > 1 else 0.2
            p.copy_(torch.randn(p.shape, generator=generator) * scale + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    model.save_pretrained(out, safe_serialization=True)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    processor.image_processor.save_pretrained(out)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(out, extra)):
            os.remove(os.path.join(out, extra))

    gz_path = os.path.join(os.path.dirname(os.path.abspath(out)), "clip_tiny_bpe.txt.gz")
    filler = ["\u0100 \u0100"] * (49152 - 256 - 2 - MERGES)
    with gzip.GzipFile(gz_path, "wb", mtime=0) as f:
        f.write("\n".join([lines[0]] + lines[1:1 + MERGES] + filler + [""]).encode("utf-8"))
    from open_clip.tokenizer import SimpleTokenizer
    simple = SimpleTokenizer(bpe_path=gz_path)
    for prompt in TEST_PROMPTS:
        print("open_clip", json.dumps(prompt, ensure_ascii=False), simple.encode(prompt))
    print("open_clip tokenize(long prompt)[-3:]", simple(["a highly detailed photograph of a majestic lion " * 6])[0, -3:].tolist())
    print(f"{gz_path}: {os.path.getsize(gz_path)} bytes")

    reloaded = CLIPTokenizer.from_pretrained(out)
    for prompt in TEST_PROMPTS:
        print(json.dumps(prompt, ensure_ascii=False), reloaded(prompt)["input_ids"])
    long_prompt = "a highly detailed photograph of a majestic lion " * 6
    print("long prompt", len(reloaded(long_prompt)["input_ids"]), "tokens")
    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{out}: {sorted(os.listdir(out))}, {total} bytes")


if __name__ == "__main__":
    main()
