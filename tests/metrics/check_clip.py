"""CLIP score and CLIP-IQA: ours (src/eval/clip.cpp, src/eval/clip_tokenizer.cpp) against torchmetrics 1.9
(CLIPScore, CLIPImageQualityAssessment with a CLIP folder), transformers' CLIPModel / CLIPProcessor and
open_clip's SimpleTokenizer.

A CLIPModel of the real architecture with random weights and reduced sizes (2 layers, width 64, image 224,
patch 32; quick_gelu in the text tower, gelu in the vision tower) is saved with save_pretrained together
with CLIP's real vocabulary: vocab.json + merges.txt built from the bpe_simple_vocab_16e6.txt.gz that
open_clip ships, as CLIP builds its vocabulary (49,408 ids). Checked, on ~40 prompts (punctuation,
digits, unicode, whitespace runs, apostrophes, special-token text, prompts longer than 77 tokens) and on
images of several sizes (uint8, random and smooth):
- tokens exactly equal to CLIPProcessor's (padding=True, cut to 77 as torchmetrics cuts them);
- pixel values (CLIPScore's uint8 path and CLIP-IQA's float path), text and image embeddings, per-image
  CLIP scores (clamped and not) and the four CLIP-IQA columns within 1e-5 relative;
- both text-pooling rules of transformers, config eos_token_id 2 (argmax of the ids, as the openai
  folders) and 49407 (first end token), each folder loaded by both sides. With CLIP's vocabulary the two
  rules pick the same positions (end token 49407 is the largest id; a prompt cut at 77 tokens has none and
  pools at position 0 both ways, its start token 49406 being then the largest), so this proves that both
  configs are read and pooled as transformers does, not that the rules differ;
- the .gz tokenizer's ids exactly equal to open_clip's SimpleTokenizer (its tokenize() with 77-token
  truncation too), on the prompts that ftfy.fix_text leaves unchanged (ftfy is not replicated; the count
  of the others is printed).
"""
import html
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "exporters"))
import common  # noqa: E402
from common import Check, randomize, run  # noqa: E402

common.PIP_NAMES.update({"open_clip": "open_clip_torch", "torchmetrics": "torchmetrics", "ftfy": "ftfy", "torchvision": "torchvision"})

TOLERANCE = 1e-5
IMAGE_SIZES = [(224, 224, "random"), (256, 320, "smooth"), (97, 150, "random"), (512, 300, "smooth"), (300, 224, "random"),
               (40, 41, "smooth"), (225, 1000, "random")]


def prompts():
    long_prompt = ("a highly detailed photograph of a majestic lion standing on a rocky cliff at sunset, golden light, "
                   "dramatic clouds, 8k, ultra realistic, sharp focus, award winning, national geographic, wide angle lens, "
                   "bokeh background, vivid colors, trending on artstation, cinematic composition")
    return [
        "a cat", "A photo of a dog.", "", " ", "   leading and trailing spaces   ", "multiple   inner \t\n spaces",
        "it's a dog's life, isn't it? we'll see, you'd've, I'm ok", "IT'S LOUD", "rock 'n' roll",
        "numbers 0 1 23 456 7890 3.14159 1,000,000 2024-01-31", "prices $5.99, €10, £3, ¥100 and 50% off!!!",
        "(((masterpiece))), [[best quality]], {braces} <angle>", "a/b\\c|d_e-f+g=h", "trailing punctuation...", "?!",
        "email someone@example.com url https://example.com/a?b=c #sunset @user",
        "Ångström Ωmega µ micro naïve café façade", "Ελληνικά κείμενο", "русский текст", "中文提示词：一只猫", "한국어 텍스트",
        "emoji 😀🐶🚀 and ❤️ heart", "non\u00a0breaking\u00a0space and ideographic\u3000space", "UPPERCASE SHOUTING PROMPT",
        "MiXeD cAsE pRoMpT", "zzzzzzzzzzzzzzzzzzzz", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "snake_case and camelCase",
        "html &amp; entities &lt;b&gt; &#39;quoted&#39; &#x41;", "special <|endoftext|> inside and <|startoftext|> too",
        "!<|endoftext|>!", "Good photo.", long_prompt, long_prompt.upper() + " " + long_prompt,
        " ".join(str(i) for i in range(100)), "word " * 90,
        "a\x1cb\x1fc", "tab\x0bvt and\x85next", "x\u200by", "\u0130stanbul", "\u03a3\u0391\u03a3 \u039f\u0394\u039f\u03a3",
        "\ufb01ne ligature", "\uff26\uff35\uff2c\uff2c width", "\u2019curly\u2019 \u201cquotes\u201d", "\u01c4 dz \u00df STRASSE",
    ]  # not "e" + U+0301: NFC normalisation is not replicated (clip_tokenizer.h)


def smooth_image(torch, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, h).view(h, 1)
    x = torch.linspace(0, 1, w).view(1, w)
    phase = torch.rand(3, generator=g) * 6.28
    channels = [127.5 + 120 * torch.sin(6 * x + 4 * y * (c + 1) + phase[c]) * torch.cos(3 * y - 2 * x) for c in range(3)]
    return torch.stack(channels).round().clamp(0, 255).to(torch.uint8)


def build_vocab(gz_path):
    """vocab.json (token -> id) and merges, as CLIP builds them from the .gz (transformers' openai files)."""
    import gzip
    from open_clip.tokenizer import bytes_to_unicode
    lines = gzip.open(gz_path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab)}, merges


def write_clip_folder(folder, config, model, vocab, merges):
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[tuple(m) for m in merges])
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


class FeaturesAsTensors:
    """torchmetrics 1.9 expects CLIPModel.get_text_features / get_image_features to return the projected
    embeddings as a tensor (transformers 4); transformers 5 returns a BaseModelOutputWithPooling whose
    pooler_output holds them, and torchmetrics fails on it. This adapter returns pooler_output and changes
    nothing else (same model, same processor, torchmetrics' own code around it)."""

    def __init__(self, model):
        self.model = model
        self.config = model.config

    def to(self, device):
        self.model.to(device)
        return self

    def get_text_features(self, *args, **kwargs):
        return _tensor(self.model.get_text_features(*args, **kwargs))

    def get_image_features(self, *args, **kwargs):
        return _tensor(self.model.get_image_features(*args, **kwargs))


def _tensor(output):
    return output if hasattr(output, "norm") else output.pooler_output


def main():
    check = Check(__doc__.splitlines()[0],
                  ["torch", "transformers", "torchmetrics", "open_clip", "ftfy", "safetensors", "torchvision", "numpy"])
    import ftfy
    import torch
    from open_clip.tokenizer import SimpleTokenizer, default_bpe
    from safetensors.torch import load_file, save_file
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update, _get_features
    from torchmetrics.multimodal import CLIPImageQualityAssessment, CLIPScore
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor

    started = time.time()
    worst = {}  # quantity -> (max relative error, max abs error), printed at the end for the docs

    def close(what, ours_t, ref_t, quantity):
        error = check.expect_close(what, ours_t, ref_t, TOLERANCE)
        absolute = (ours_t.double() - ref_t.double()).abs().max().item() if ours_t.shape == ref_t.shape else float("inf")
        old = worst.get(quantity, (0.0, 0.0))
        worst[quantity] = (max(old[0], error), max(old[1], absolute))

    work = check.work_dir("clip")
    vocab, merges = build_vocab(default_bpe())
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=2,
                         max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=2, image_size=224,
                           patch_size=32, hidden_act="gelu"),
        projection_dim=32)
    torch.manual_seed(0)
    model = randomize(CLIPModel(config), seed=3).eval()
    with torch.no_grad():  # LayerNorm gains around 1, so that every layer matters
        for name, p in model.named_parameters():
            if ("norm" in name or "layrnorm" in name) and name.endswith("weight"):
                p.add_(1.0)
    folders = {}
    for eos in (2, 49407):  # the openai configs' legacy 2 (argmax pooling) and the corrected end token
        folder = os.path.join(work, f"clip_eos{eos}")
        model.config.text_config.eos_token_id = eos
        model.text_model.eos_token_id = eos
        write_clip_folder(folder, config, model, vocab, merges)
        folders[eos] = folder

    texts = prompts()
    images = []
    g = torch.Generator().manual_seed(5)
    for i, (h, w, kind) in enumerate(IMAGE_SIZES):
        images.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) if kind == "random" else smooth_image(torch, h, w, i))
    prompts_path = os.path.join(work, "prompts.json")
    with open(prompts_path, "w", encoding="utf-8") as f:
        json.dump(texts, f, ensure_ascii=False)
    images_path = os.path.join(work, "images.safetensors")
    save_file({f"image_{k}": im.unsqueeze(0).contiguous() for k, im in enumerate(images)}, images_path)
    probe = check.tool("ilf_metric_probe")

    for eos, folder in folders.items():
        out = os.path.join(work, f"ours_eos{eos}.safetensors")
        run([probe, "clip", "--model", folder, "--prompts", prompts_path, "--images", images_path, "--out", out], "ilf_metric_probe clip")
        ours = load_file(out)
        ref_model = FeaturesAsTensors(CLIPModel.from_pretrained(folder).eval())
        processor = CLIPProcessor.from_pretrained(folder)
        print(f"-- config eos_token_id {eos}: {type(processor.image_processor).__name__}, {type(processor.tokenizer).__name__}")
        # tokens as torchmetrics' _get_features makes them: padding=True, then cut to max_position_embeddings
        processed = processor(text=texts, return_tensors="pt", padding=True)
        ref_tokens = processed["input_ids"][..., :77]
        same = ours["tokens"].shape == ref_tokens.shape and torch.equal(ours["tokens"], ref_tokens)
        if not same and ours["tokens"].shape == ref_tokens.shape:
            bad = [texts[i] for i in range(len(texts)) if not torch.equal(ours["tokens"][i], ref_tokens[i])]
            print("token mismatches:", bad[:5])
        check.expect(f"tokens equal CLIPProcessor's ({ref_tokens.shape[0]} prompts, {ref_tokens.shape[1]} columns)", same)
        with torch.no_grad():
            ref_text = _get_features(texts, "text", torch.device("cpu"), ref_model, processor)
            close("text embeddings vs torchmetrics _get_features", ours["text_embeds"], ref_text, "text embeddings")
            scores, raw_scores = [], []  # per image (ours, torchmetrics)
            for k, image in enumerate(images):
                h, w = image.shape[1:]
                pv = processor(images=[image], return_tensors="pt")["pixel_values"]
                close(f"pixel values {h}x{w} (uint8 path, CLIPScore)", ours[f"pixel_values_{k}"], pv, "pixel values, CLIPScore (uint8) path")
                pvf = processor(images=[image.float()], return_tensors="pt")["pixel_values"]
                close(f"pixel values {h}x{w} (float path, CLIP-IQA)", ours[f"pixel_values_float_{k}"], pvf, "pixel values, CLIP-IQA (float) path")
                ref_image = _get_features([image], "image", torch.device("cpu"), ref_model, processor)
                close(f"image embeddings {h}x{w}", ours[f"image_embeds_{k}"], ref_image, "image embeddings")
                prompt = texts[k % len(texts)]
                metric = CLIPScore(model_name_or_path=lambda: (ref_model, processor))
                metric.update(image.unsqueeze(0), [prompt])
                scores.append((ours[f"score_{k}"], metric.compute().reshape(1)))
                raw, _ = _clip_score_update(image.unsqueeze(0), [prompt], ref_model, processor)
                raw_scores.append((ours[f"score_unclamped_{k}"], raw))
                iqa = CLIPImageQualityAssessment(model_name_or_path=lambda: (ref_model, processor),
                                                 prompts=("quality", "noisiness", "colorfullness", "natural"), data_range=1.0)
                result = iqa(image.unsqueeze(0))
                ref_iqa = torch.stack([result[n].reshape(-1) for n in ("quality", "noisiness", "colorfullness", "natural")], -1)
                close(f"CLIP-IQA {h}x{w} vs CLIPImageQualityAssessment {ref_iqa.flatten().tolist()}", ours[f"iqa_{k}"], ref_iqa,
                      "CLIP-IQA probabilities (per image)")
            # The scores of all images as one vector (the parity metric's max|ours - ref| / max|ref|): one
            # score alone near 0 (random weights give cosines of a few 1e-3) would measure float32 rounding
            # of the cosine relative to itself.
            for name, pairs in (("CLIP scores vs CLIPScore", scores), ("unclamped CLIP scores vs _clip_score_update", raw_scores)):
                a, b = torch.cat([p[0] for p in pairs]), torch.cat([p[1].double() for p in pairs])
                print(f"     {name}: ours {[round(v, 4) for v in a.tolist()]}, max abs error {(a - b).abs().max().item():.2e}")
                close(f"{name} ({len(pairs)} images)", a, b, name)

    # open_clip's tokenizer from the .gz
    out = os.path.join(work, "tokens_gz.safetensors")
    run([probe, "clip-tokenize", "--bpe-gz", default_bpe(), "--folder", folders[2], "--prompts", prompts_path, "--out", out],
        "ilf_metric_probe clip-tokenize")
    ours = load_file(out)
    simple = SimpleTokenizer()
    ref_all = simple(texts)
    lengths = ours["open_clip_lengths"].tolist()
    offsets = [sum(lengths[:i]) for i in range(len(lengths))]
    compared, skipped, bad = 0, [], []
    for i, text in enumerate(texts):
        cleaned = html.unescape(html.unescape(text))
        if ftfy.fix_text(cleaned) != cleaned:
            skipped.append(text)
            continue
        compared += 1
        ids = ours["open_clip_ids"][offsets[i]:offsets[i] + lengths[i]].tolist()
        if ids != simple.encode(text) or not torch.equal(ours["open_clip_tokens"][i], ref_all[i]):
            bad.append(text)
    print(f"open_clip: {compared} prompts compared, {len(skipped)} left out because ftfy.fix_text changes them: {skipped}")
    check.expect(f"open_clip SimpleTokenizer ids and tokenize() equal ours on {compared} prompts", not bad and compared > 20, f"differ: {bad}")
    folder_tokens = processor(text=texts, return_tensors="pt", padding=True)["input_ids"][..., :77]
    check.expect("folder tokenizer's encode_batch equals CLIPProcessor", torch.equal(ours["folder_tokens"], folder_tokens))
    for quantity, (rel, absolute) in worst.items():
        print(f"max over cases: {quantity}: relative {rel:.2e}, absolute {absolute:.2e}")
    print(f"check_clip.py took {time.time() - started:.1f} s")
    check.finish()


if __name__ == "__main__":
    main()
