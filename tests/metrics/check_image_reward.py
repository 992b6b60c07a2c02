"""ImageReward: ours (src/eval/image_reward.cpp, src/eval/bert_tokenizer.cpp) against the image-reward package.

The paper's main metric is the image-reward package's ImageReward model (1.5). This check builds that
model with the package's own classes and random weights, at reduced sizes: the package hard-codes a
ViT-L/16 image encoder and MLP(768), so its create_vit is replaced by one that builds the package's
VisionTransformer with width 128, 2 heads (64 per head, as BLIP's ViTs) and depth 2, and its MLP by the
package's MLP on the text width; the BERT text encoder is the package's med.py BertModel from a small
med_config.json (2 layers, hidden 64, 4 heads, cross-attention). The state dict is saved with torch.save
as the package's ImageReward.pt is laid out (model.state_dict() of the package's ImageReward class: the
same key names); LibTorch cannot read that pickled OrderedDict, so the check also proves that our loader
says so and names scripts/convert_image_reward.py, and scores with that script's safetensors output. Then on ~20 prompts and images of 224x224, 300x256, 97x150 and 640x480 it compares
model.score(prompt, pil_image) and its intermediate values (the tokens, the preprocessed pixels, the ViT's
image embeddings, the [CLS] text feature) with what ilf_metric_probe image-reward returns, and the BERT
tokens of a larger prompt set with ilf_metric_probe bert-tokenize: tokens exact, the rest within 1e-5
relative.

No bert-base-uncased vocabulary is shipped by any installed package and nothing may be downloaded, so the
vocab.txt is written here: BERT's special tokens, ASCII punctuation, letters and digits, "##" pieces (a few
left out, so that some words become [UNK]), whole words and suffixes, some CJK, Greek, accented and sharp-s
entries. The package's init_tokenizer loads BertTokenizer.from_pretrained("bert-base-uncased"), which finds
that vocabulary in a folder of that name in the working directory.

The package does not import with the environment's transformers 5 (its med.py imports names that
transformers 5 removed), so transformers 4.46.3 (scripts/ci/image_reward_requirements.txt, installed by
scripts/ci/install_pip_torch.sh into ILF_CACHE/image-reward-site) is put first on sys.path here only. The
package's __init__ also imports its ReFL training script (accelerate, datasets, diffusers' Stable
Diffusion); the check imports the package's modules without running that __init__.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "exporters"))
from common import SKIPPED, SOURCE_DIR, Check, run  # noqa: E402

CACHE = os.environ.get("ILF_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "ilf"))
SITE = os.environ.get("ILF_IMAGE_REWARD_SITE", os.path.join(CACHE, "image-reward-site"))
TOLERANCE = 1e-5
VIT_WIDTH, VIT_DEPTH, VIT_HEADS = 128, 2, 2
BERT = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
        "max_position_embeddings": 64}
IMAGE_SIZES = [(224, 224), (300, 256), (97, 150), (640, 480)]  # PIL (width, height)

SPECIAL = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("a an the of on in with and at by photo painting cat cats dog horse astronaut moon city night red blue "
         "green golden old man woman portrait oil watercolor style street rain light neon sun sunset mountain lake "
         "car bus london tokyo paris cafe au lait naive resume sao paulo strasse ein hund uber die art high "
         "detailed 8k 4k render glass cube wooden table un believ able run paint play").split()
SUFFIXES = "##s ##ing ##ed ##er ##est ##ly ##able ##ness ##ful ##less ##tion ##al ##ic ##y ##ish".split()
OTHER = ["é", "ß", "σ", "ο", "δ", "ς", "猫", "一", "只", "的", "夜", "景", "東", "京", "ö", "##ö", "i", "##̇", "ı"]


def vocabulary():
    """The tokens of the vocab.txt written here (see the module docstring)."""
    tokens = list(SPECIAL)
    tokens += [chr(c) for c in range(33, 127) if not chr(c).isalnum()]
    tokens += [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    tokens += ["##" + chr(c) for c in range(ord("a"), ord("z") + 1) if chr(c) not in "qxz"]  # q, x, z inside a word: [UNK]
    tokens += ["##" + str(d) for d in range(10)]
    for word in WORDS + SUFFIXES + OTHER:
        if word not in tokens:
            tokens.append(word)
    return tokens


def prompts():
    """Prompts for the rewards (the first 20) and more for the tokens."""
    scored = [
        "a photo of a cat",
        "An astronaut riding a horse on the moon, oil painting, highly detailed, 8k",
        "Café au lait on a wooden table; naïve résumé, São Paulo",
        "Ein Hund läuft über die Straße!!!",
        "東京の夜景, 一只猫的照片",
        "ΟΔΟΣ σοφία — Greek letters",
        "unbelievable runners running quickly through the quiz zone",
        "a red bus in London, 1960s postcard style (((masterpiece)))",
        "",
        "   lots    of   spaces\tand\ttabs\nand newlines   ",
        "prices $5.99, €10, £3 and 50% off? yes!",
        "İstanbul at sunset, ıi",
        "snake_case and camelCase and kebab-case and a/b\\c|d",
        ("a very long prompt about a golden retriever playing in a park with children and a red ball on a sunny "
         "day with clouds, trees, flowers, benches, a lake, ducks, boats and a mountain in the background"),
        "the [SEP] token and [CLS] written in text, [cls] lower-case, [MASK]ed and [DEC] [ENC]",
        "zzzz xyzzy qqq: unknown words",
        "ﬁne ligatures ½ ² ™ and full-width ＡＢＣ",
        "combining e\u0301 vs precomposed \u00e9, o\u0308 and ö",
        "emoji 😀🐶🚀 and ❤️ heart, zero\u200bwidth and soft\u00adhyphen",
        "3D render of a glass cube, 8K, trending on artstation " * 3,
    ]
    extra = [
        "a" * 120, "b" * 99 + " " + "c" * 101, "UPPERCASE SHOUTING PROMPT", "MiXeD cAsE", "naïve", "NAÏVE",
        "line\u2028separator\u2029paragraph", "control\x07char\x00nul\ufffdreplacement", "ideographic\u3000space",
        "non\u00a0breaking", "quotes “double” ‘single’ «guillemets»", "dashes - – — …", "math x^2 + y^2 = z^2",
        "email someone@example.com https://example.com/a?b=c", "#hashtag @user", "(((emphasis))) [[brackets]] {braces}",
        "'apostrophes' don't it's", "????!!!!", "[PAD][UNK][CLS]", "[[CLS]]", "[CLS", "Σ", "ΣΑΣ", "straße STRASSE",
        "한국어 텍스트", "русский текст", "العربية", "हिन्दी", "中文提示词：一只猫", "ＦＵＬＬＷＩＤＴＨ １２３",
    ]
    return scored, scored + extra


def ir_randomize(module, seed):
    """Every parameter drawn anew: N(0, 1/fan_in) for matrices and kernels, 1 + N(0, 0.2^2) for layer-norm
    weights, N(0, 0.2^2) for the rest (the libraries initialise biases to zero, which would hide a wrong
    mapping)."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            noise = torch.randn(p.shape, generator=generator)
            if p.dim() > 1:
                p.copy_(noise * p[0].numel() ** -0.5)
            elif "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1 + 0.2 * noise)
            else:
                p.copy_(0.2 * noise)
    return module


def import_package():
    """The package's ImageReward module, with transformers 4.x first on sys.path and without running
    ImageReward/__init__.py (it imports the ReFL training script). None when something is missing."""
    if not os.path.isdir(SITE):
        return None, f"{SITE} does not exist (run scripts/ci/install_pip_torch.sh)"
    sys.path.insert(0, SITE)
    spec = importlib.util.find_spec("ImageReward")
    if spec is None:
        return None, "image-reward is not installed (scripts/ci/install_pip_torch.sh installs image-reward==1.5)"
    package = types.ModuleType("ImageReward")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["ImageReward"] = package
    try:
        import transformers
        if not transformers.__version__.startswith("4."):
            return None, f"transformers {transformers.__version__} from {transformers.__file__}, image-reward needs 4.x"
        import ImageReward.ImageReward as module
        import ImageReward.models.BLIP.blip_pretrain as blip_pretrain
        import ImageReward.models.BLIP.vit as vit
    except ImportError as e:
        return None, f"cannot import image-reward's modules: {e}"
    return (module, blip_pretrain, vit, transformers), None


def build_model(work, module, blip_pretrain, vit):
    """The package's ImageReward with the reduced ViT and MLP, random weights; saves ImageReward.pt,
    med_config.json and bert-base-uncased/vocab.txt under `work`."""
    import torch
    vocab_dir = os.path.join(work, "bert-base-uncased")
    os.makedirs(vocab_dir)
    tokens = vocabulary()
    with open(os.path.join(vocab_dir, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(tokens) + "\n")
    config = dict(BERT, architectures=["BertModel"], attention_probs_dropout_prob=0.1, hidden_act="gelu",
                  hidden_dropout_prob=0.1, initializer_range=0.02, layer_norm_eps=1e-12, model_type="bert",
                  pad_token_id=0, type_vocab_size=2, vocab_size=len(tokens) + 2, encoder_width=VIT_WIDTH,
                  add_cross_attention=True)
    med_config = os.path.join(work, "med_config.json")
    with open(med_config, "w") as f:
        json.dump(config, f, indent=2)

    def small_vit(vit_name, image_size, *args):
        return vit.VisionTransformer(img_size=image_size, patch_size=16, embed_dim=VIT_WIDTH, depth=VIT_DEPTH,
                                     num_heads=VIT_HEADS), VIT_WIDTH

    original_vit, original_mlp = blip_pretrain.create_vit, module.MLP
    blip_pretrain.create_vit = small_vit
    module.MLP = lambda input_size: original_mlp(BERT["hidden_size"])
    cwd = os.getcwd()
    os.chdir(work)  # init_tokenizer's from_pretrained("bert-base-uncased") finds the folder written above
    try:
        model = module.ImageReward(med_config=med_config, device="cpu")
    finally:
        os.chdir(cwd)
        blip_pretrain.create_vit, module.MLP = original_vit, original_mlp
    ir_randomize(model, 29).eval()
    weights = os.path.join(work, "ImageReward.pt")
    torch.save(model.state_dict(), weights)
    return model, weights, med_config, os.path.join(vocab_dir, "vocab.txt")


def test_images():
    """RGB PIL images of the sizes above: smooth gradients plus noise (so that the resize matters)."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(7)
    images = []
    for w, h in IMAGE_SIZES:
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h) + 64], axis=-1)
        noisy = base + rng.normal(0, 40, size=base.shape)
        images.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB"))
    return images


def main():
    started = time.time()
    imported, reason = import_package()
    if imported is None:
        print(f"SKIPPED: {reason}")
        sys.exit(SKIPPED)
    module, blip_pretrain, vit, transformers = imported
    check = Check(__doc__.splitlines()[0], ["torch", "timm", "fairscale", "PIL", "numpy", "safetensors", "torchvision"])
    print(f"transformers {transformers.__version__} ({os.path.dirname(transformers.__file__)})")
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file

    work = os.path.join(check.build, "test_scratch", "metrics", "image_reward")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    model, weights, med_config, vocab = build_model(work, module, blip_pretrain, vit)
    tokenizer = model.blip.tokenizer
    scored, all_prompts = prompts()
    probe = check.tool("ilf_metric_probe")

    # Tokens of every prompt: the package's call (padding="max_length", truncation, 35) and untruncated.
    prompts_file = os.path.join(work, "prompts_all.json")
    with open(prompts_file, "w") as f:
        json.dump(all_prompts, f)
    out = os.path.join(work, "tokens.safetensors")
    run([probe, "bert-tokenize", "--vocab", vocab, "--max-length", 35, "--prompts", prompts_file, "--out", out], "bert-tokenize")
    ours = load_file(out)
    reference = tokenizer(all_prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    wrong = [p for p, a, b in zip(all_prompts, ours["input_ids"], reference.input_ids) if not torch.equal(a, b)]
    check.expect(f"input_ids of {len(all_prompts)} prompts equal the package's tokenizer", not wrong, f"differ: {wrong[:3]!r}")
    check.expect("attention_mask equals the package's", torch.equal(ours["attention_mask"], reference.attention_mask))
    encoded = [tokenizer.encode(p, add_special_tokens=False) for p in all_prompts]
    lengths = ours["encoded_lengths"].tolist()
    flat, start = ours["encoded"].tolist(), 0
    wrong = []
    for p, n, ids in zip(all_prompts, lengths, encoded):
        if flat[start:start + n] != ids:
            wrong.append(p)
        start += n
    check.expect("untruncated ids equal tokenizer.encode(add_special_tokens=False)", not wrong, f"differ: {wrong[:3]!r}")
    over = sum(1 for ids in encoded if len(ids) > 33)
    unk = sum(1 for ids in encoded if tokenizer.unk_token_id in ids)
    print(f"     ({over} prompts longer than 35 tokens, {unk} with [UNK]; [DEC] {tokenizer.bos_token_id}, "
          f"[ENC] {tokenizer.enc_token_id})")

    # Rewards: prompt i with image i % 4, as model.score(prompt, pil_image) computes them one at a time.
    images = test_images()
    pairs = [(p, images[i % len(images)]) for i, p in enumerate(scored)]
    with open(os.path.join(work, "prompts.json"), "w") as f:
        json.dump([p for p, _ in pairs], f)
    save_file({f"image_{i}": torch.from_numpy(np.asarray(im)).permute(2, 0, 1).contiguous() for i, (_, im) in enumerate(pairs)},
              os.path.join(work, "images.safetensors"))
    ref_rewards, ref_pixels, ref_embeds, ref_features = [], [], [], []
    with torch.no_grad():
        for prompt, image in pairs:
            ref_rewards.append(model.score(prompt, image))
            pixels = model.preprocess(image).unsqueeze(0)
            embeds = model.blip.visual_encoder(pixels)
            text = tokenizer(prompt, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
            hidden = model.blip.text_encoder(text.input_ids, attention_mask=text.attention_mask, encoder_hidden_states=embeds,
                                             encoder_attention_mask=torch.ones(embeds.shape[:-1], dtype=torch.long),
                                             return_dict=True).last_hidden_state
            ref_pixels.append(pixels), ref_embeds.append(embeds), ref_features.append(hidden[:, 0, :].float())
    # The package's file as users have it cannot be read by LibTorch (a pickled OrderedDict): the error
    # says so and names the converter, whose output is what the library reads.
    out = os.path.join(work, "rewards.safetensors")
    command = [probe, "image-reward", "--weights", weights, "--vocab", vocab, "--med-config", med_config,
               "--images", os.path.join(work, "images.safetensors"), "--prompts", os.path.join(work, "prompts.json"), "--out", out]
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    message = result.stdout + result.stderr
    check.expect("ImageReward.pt as the package saves it fails naming the file and the converter",
                 result.returncode != 0 and weights in message and "convert_image_reward.py" in message, message.strip()[:300])
    converted = os.path.join(work, "ImageReward.safetensors")
    run([sys.executable, os.path.join(SOURCE_DIR, "scripts", "convert_image_reward.py"), weights, converted], "convert_image_reward.py")
    command = [probe, "image-reward", "--weights", converted, "--vocab", vocab, "--med-config", med_config,
               "--images", os.path.join(work, "images.safetensors"), "--prompts", os.path.join(work, "prompts.json"), "--out", out]
    run(command, "image-reward")
    ours = load_file(out)
    check.expect_close("preprocessed pixels (Resize 224 bicubic, CenterCrop, Normalize)", ours["pixels"], torch.cat(ref_pixels), TOLERANCE)
    check.expect_close("image embeddings (the ViT's output)", ours["image_embeds"], torch.cat(ref_embeds), TOLERANCE)
    check.expect_close("text features (the [CLS] state)", ours["text_features"], torch.cat(ref_features), TOLERANCE)
    reference = torch.tensor(ref_rewards, dtype=torch.float64)
    check.expect_close(f"rewards of {len(pairs)} prompt / image pairs (model.score)", ours["rewards"], reference, TOLERANCE)
    print(f"     rewards: ours {ours['rewards'][:4].tolist()} ..., package {ref_rewards[:4]} ...")

    # A missing tensor is named in the error.
    state = load_file(converted)
    del state["blip.text_encoder.encoder.layer.1.crossattention.self.key.weight"]
    broken = os.path.join(work, "broken.safetensors")
    save_file(state, broken)
    result = subprocess.run([str(c) for c in command[:3] + [broken] + command[4:]], capture_output=True, text=True)
    message = result.stdout + result.stderr
    check.expect("a missing tensor fails naming the file and the tensor", result.returncode != 0 and broken in message and
                 "blip.text_encoder.encoder.layer.1.crossattention.self.key.weight" in message, message.strip()[:200])
    print(f"     ({time.time() - started:.1f} s)")
    check.finish()


if __name__ == "__main__":
    main()
