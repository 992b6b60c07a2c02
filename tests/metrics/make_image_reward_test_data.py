"""Writes tests/data/metrics/image_reward_tiny/: a tiny random ImageReward model and what the package computes with it.

    ~/.cache/ilf/venv-torch-2.11.0/bin/python tests/metrics/make_image_reward_test_data.py

(the pip-torch environment of scripts/ci/install_pip_torch.sh, with image-reward 1.5 and its transformers
4.46.3 in ILF_CACHE/image-reward-site, as tests/metrics/check_image_reward.py uses them.)

tests/test_eval_image_reward.cpp (the Debian build, no Python) loads these files and must reproduce
expected.json, which the image-reward package itself computed here:
- ImageReward.safetensors: model.state_dict() of the package's ImageReward class, saved with torch.save
  as ImageReward.pt and converted by scripts/convert_image_reward.py (as users convert the package's file;
  LibTorch cannot read the pickled OrderedDict itself), built as check_image_reward.py
  builds it but smaller still so that the file stays small: ViT width 64 (1 head of 64), depth 1, MLP
  ratio 1; BERT hidden 32, 2 heads, 1 layer, 40 positions; the MLP head's Linear layers 32-16-8-8-4-1 in
  the package's Sequential layout (Linear, Dropout, ... at indices 0 to 7). Saved in float16 (the
  package's load_state_dict copies into its float32 parameters; ours converts the same way), so the
  package's rewards below are those of the float16-rounded weights. BLIP's contrastive projections
  (blip.vision_proj, blip.text_proj), unused by the reward, are left out.
- med_config.json and vocab.txt: the BERT configuration and check_image_reward.py's vocabulary (BERT's
  special tokens, punctuation, letters, "##" pieces, words, CJK / accented / Greek entries).
- expected.json: for WordPiece prompts, the ids transformers' BertTokenizer (as the package builds it)
  gives with the package's call (padding="max_length", truncation=True, max_length=35); for the images
  (uint8, pixel (c, y, x) = (3x + 5y + 70c + (x * y) % 17) % 256, computed the same way in the test) and
  prompts, model.score(prompt, pil_image).
"""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check_image_reward as reference  # noqa: E402

OUT = os.path.join(os.path.dirname(HERE), "data", "metrics", "image_reward_tiny")
IMAGE_SIZES = [(224, 224), (300, 256), (97, 150)]  # (width, height)
TOKEN_PROMPTS = [
    "a photo of a cat", "An Astronaut, riding a horse!", "Café au lait; naïve résumé", "Straße über",
    "東京の夜景, 一只猫", "ΟΔΟΣ σοφία", "unbelievable runners", "zzzz quiz", "", "İstanbul ıi",
    "the [SEP] and [cls] and [DEC]", "prices $5.99, €10", "e\u0301 vs \u00e9", "tab\tand\nnewline\u3000end",
    "a " * 40,
]
SCORE_PROMPTS = ["a photo of a cat", "a red bus in London, oil painting", "Straße über die Stadt at night!!!"]


def pattern_image(width, height):
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    channels = [(3 * x + 5 * y + 70 * c + (x * y) % 17) % 256 for c in range(3)]
    return torch.stack(channels).to(torch.uint8)  # (3, H, W)


def main():
    imported, reason = reference.import_package()
    if imported is None:
        sys.exit(f"cannot import the package: {reason}")
    module, blip_pretrain, vit, _ = imported
    from PIL import Image

    os.makedirs(os.path.join(OUT, "bert-base-uncased"), exist_ok=True)
    tokens = reference.vocabulary()
    with open(os.path.join(OUT, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    config = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
              "layer_norm_eps": 1e-12, "max_position_embeddings": 40, "model_type": "bert", "num_attention_heads": 2,
              "num_hidden_layers": 1, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": len(tokens) + 2,
              "encoder_width": 64, "add_cross_attention": True}
    with open(os.path.join(OUT, "med_config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")

    def tiny_vit(vit_name, image_size, *args):
        return vit.VisionTransformer(img_size=image_size, patch_size=16, embed_dim=64, depth=1, num_heads=1, mlp_ratio=1.0), 64

    original_vit = blip_pretrain.create_vit
    blip_pretrain.create_vit = tiny_vit
    # init_tokenizer loads BertTokenizer.from_pretrained("bert-base-uncased"): a folder of that name here.
    with open(os.path.join(OUT, "bert-base-uncased", "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    cwd = os.getcwd()
    os.chdir(OUT)
    try:
        model = module.ImageReward(med_config=os.path.join(OUT, "med_config.json"), device="cpu")
    finally:
        os.chdir(cwd)
        blip_pretrain.create_vit = original_vit
        os.remove(os.path.join(OUT, "bert-base-uncased", "vocab.txt"))
        os.rmdir(os.path.join(OUT, "bert-base-uncased"))
    nn = torch.nn
    model.mlp.layers = nn.Sequential(nn.Linear(32, 16), nn.Dropout(0.2), nn.Linear(16, 8), nn.Dropout(0.2), nn.Linear(8, 8),
                                     nn.Dropout(0.1), nn.Linear(8, 4), nn.Linear(4, 1))
    reference.ir_randomize(model, 2029).eval()
    # BLIP's contrastive projections (blip.vision_proj, blip.text_proj) play no part in the reward; they
    # are left out of this file to keep it small (the package loads with strict=False, as ours ignores them).
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items() if "_proj." not in k or "visual_encoder" in k}
    # As users get it: torch.save(state dict) as ImageReward.pt, converted by scripts/convert_image_reward.py.
    import subprocess
    pt = os.path.join(OUT, "ImageReward.pt")
    torch.save(state, pt)
    subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts", "convert_image_reward.py"),
                    pt, os.path.join(OUT, "ImageReward.safetensors")], check=True)
    os.remove(pt)
    model.load_state_dict(state, strict=False)  # the float16-rounded weights, as the file holds them

    tokenizer = model.blip.tokenizer
    encoded = tokenizer(TOKEN_PROMPTS, padding="max_length", truncation=True, max_length=35)
    images, rewards = [], []
    with torch.no_grad():
        for i, (w, h) in enumerate(IMAGE_SIZES):
            image = Image.fromarray(pattern_image(w, h).permute(1, 2, 0).numpy(), "RGB")
            for prompt in SCORE_PROMPTS:
                images.append({"width": w, "height": h, "prompt": prompt})
                rewards.append(model.score(prompt, image))
    expected = {
        "note": "computed by tests/metrics/make_image_reward_test_data.py with the image-reward package",
        "tokens": [{"prompt": p, "input_ids": ids, "attention_mask": mask}
                   for p, ids, mask in zip(TOKEN_PROMPTS, encoded["input_ids"], encoded["attention_mask"])],
        "scores": [dict(item, reward=r) for item, r in zip(images, rewards)],
    }
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        f.write('{"note": ' + json.dumps(expected["note"]) + ",\n")
        for key in ("tokens", "scores"):  # one entry a line
            rows = [json.dumps(row, ensure_ascii=False) for row in expected[key]]
            f.write(f' "{key}": [\n  ' + ",\n  ".join(rows) + "\n ]" + ("," if key == "tokens" else "") + "\n")
        f.write("}\n")
    sizes = {name: os.path.getsize(os.path.join(OUT, name)) for name in sorted(os.listdir(OUT))}
    print(f"wrote {OUT}: {sizes} ({sum(sizes.values()) / 1000:.0f} kB)")


if __name__ == "__main__":
    main()
