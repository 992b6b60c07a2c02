"""What the exporter checks in tests/exporters/ share.

The checks prove that the project's exporters (scripts/export_weights.py,
scripts/export_pixart_model_folder.py) and its C++ readers agree with the real Python libraries the
weights come from: diffusers, transformers and safetensors. No weights can be downloaded where the tests
run, so every model is a tiny random one built here from a config, and the tokenizer a tiny SentencePiece
model trained here. Each check builds its models, runs the exporter as a user would, reads the result
back through the C++ side (ilf_forward, or tests/exporters/ilf_export_probe.cpp), and compares with what
the library itself computes. A check exits 77 (ctest: skipped) when this Python lacks a library, 1 when
a comparison fails, 0 when all pass; it prints every measured error.
"""
import argparse
import importlib
import io
import json
import os
import shutil
import subprocess
import sys

SKIPPED = 77
SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS_DIR = os.path.join(SOURCE_DIR, "scripts")
# The libraries every check's PixArt pipeline needs, with their pip names.
PIP_NAMES = {"torch": "torch", "diffusers": "diffusers", "transformers": "transformers", "safetensors": "safetensors",
             "sentencepiece": "sentencepiece", "google.protobuf": "protobuf", "numpy": "numpy"}


class Check:
    """Parses the command line, skips without the libraries, and collects the comparisons."""

    def __init__(self, description, needs, add_arguments=None):
        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("--build", required=True, help="the CMake build folder (ilf_forward, ilf_export_probe)")
        if add_arguments:
            add_arguments(parser)
        self.args = parser.parse_args()
        missing = []
        for module in needs:
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(PIP_NAMES.get(module, module))
        if missing:
            print(f"SKIPPED: {sys.executable} cannot import {', '.join(missing)} "
                  f"(pip install {' '.join(missing)}, or point ILF_TEST_PYTHON at a Python that has them)")
            sys.exit(SKIPPED)
        import torch
        torch.set_num_threads(1)
        self.build = os.path.abspath(self.args.build)
        self.failures = []
        versions = []
        for module in needs:
            m = importlib.import_module(module)
            versions.append(f"{PIP_NAMES.get(module, module)} {getattr(m, '__version__', '?')}")
        print(f"python {sys.version.split()[0]} ({sys.executable}); " + ", ".join(versions))

    def work_dir(self, name):
        """A fresh folder under the build tree for this check's files."""
        path = os.path.join(self.build, "test_scratch", "exporters", name)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path

    def tool(self, name):
        """A program of the build: the tools in its root, ilf_export_probe in tests/."""
        for path in (os.path.join(self.build, name), os.path.join(self.build, "tests", name)):
            if os.path.exists(path):
                return path
        sys.exit(f"FAILED: {name} is not built in {self.build}")

    def expect_close(self, what, ours, reference, tolerance):
        """max|ours - reference| / max|reference| must be <= tolerance."""
        error = relative_error(ours, reference)
        ok = error <= tolerance
        print(f"{'ok  ' if ok else 'FAIL'} {what}: max relative error {error:.2e} (tolerance {tolerance:.0e})")
        if not ok:
            self.failures.append(what)
        return error

    def expect(self, what, condition, detail=""):
        print(f"{'ok  ' if condition else 'FAIL'} {what}{': ' + detail if detail else ''}")
        if not condition:
            self.failures.append(what)

    def finish(self):
        if self.failures:
            print(f"FAILED: {len(self.failures)} comparison(s): {'; '.join(self.failures)}")
            sys.exit(1)
        print("PASSED")
        sys.exit(0)


def relative_error(ours, reference):
    """The project's parity metric: max|ours - reference| / max|reference| (float64)."""
    a, b = ours.detach().double(), reference.detach().double()
    if a.shape != b.shape:
        return float("inf")
    denominator = b.abs().max().item()
    numerator = (a - b).abs().max().item()
    return numerator / denominator if denominator else numerator


def run(command, what):
    """Runs a command; on failure prints its output and exits 1."""
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout + result.stderr)
        sys.exit(f"FAILED: {what} exited with {result.returncode}: {' '.join(str(c) for c in command)}")
    return result.stdout + result.stderr


def python_script(name):
    return [sys.executable, os.path.join(SCRIPTS_DIR, name)]


def randomize(module, seed):
    """Every parameter drawn anew, N(0, 1/fan_in) for matrices and kernels, N(0, 0.2^2) for the rest:
    the libraries initialise some layers to zero (adaLN-Zero), which would hide a wrong mapping."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(module.named_parameters()):
            scale = p[0].numel() ** -0.5 if p.dim() > 1 else 0.2
            p.copy_(torch.randn(p.shape, generator=generator) * scale)
    return module


def train_sentencepiece(path, sentences, vocab_size=400, character_coverage=0.9995):
    """A tiny unigram SentencePiece model with T5's special ids (<pad> 0, </s> 1, <unk> 2, no <s>) and its
    default normaliser (nmt_nfkc), as T5's spiece.model; written to `path`. Characters below the coverage
    stay unknown (<unk>), as in the real model."""
    import sentencepiece
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, hard_vocab_limit=False,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=character_coverage,
        num_threads=1, minloglevel=2)
    with open(path, "wb") as f:
        f.write(model.getvalue())


TRAINING_CAPTIONS = [
    "a photo of a cat sitting on a window sill",
    "A Corgi wearing a red scarf, in the snow!",
    "an astronaut riding a horse on the moon, oil painting",
    "Tokyo at night: neon lights, rain and reflections (1984)",
    "a bowl of ramen with 2 eggs, chopsticks and steam",
    "portrait of an old man with a beard, 35mm film, f/1.8",
    "the quick brown fox jumps over the lazy dog",
    "café au lait on a wooden table; croissant, jam & butter",
    "a watercolor painting of Mount Fuji at sunrise",
    "Ein Hund läuft über die Straße, naïve résumé, São Paulo",
    "東京の夜景と富士山, 桜の花",
    "a red double-decker bus in London, 1960s postcard style",
    "\"hello world\" written on a chalkboard",
    "3D render of a glass cube, 8K, trending on artstation",
    "sneakers, T-shirts and ankle boots on a shelf",
]


def tokenizer_corpus():
    """Training sentences for the tiny SentencePiece models: the captions, repeated and recombined."""
    sentences = []
    for i, caption in enumerate(TRAINING_CAPTIONS):
        sentences.append(caption)
        sentences.append(caption.lower())
        sentences.append(caption + " " + TRAINING_CAPTIONS[(i + 3) % len(TRAINING_CAPTIONS)])
    return sentences * 4


# ---- a tiny PixArt pipeline, saved as a diffusers pipeline folder --------------------------------------

PIXART_CASES = {
    # PixArt-alpha 512 (PixArt-XL-2-512x512): no micro-conditions, pos-embed scale 1.
    "pixart_alpha_512": {"family": "pixart_alpha", "pipeline": "PixArtAlphaPipeline", "interpolation_scale": 1,
                         "use_additional_conditions": False, "latent_scale": 0.18215},
    # PixArt-alpha 1024 (PixArt-XL-2-1024-MS): resolution and aspect-ratio micro-conditions, scale 2.
    "pixart_alpha_1024": {"family": "pixart_alpha", "pipeline": "PixArtAlphaPipeline", "interpolation_scale": 2,
                          "use_additional_conditions": True, "latent_scale": 0.18215},
    # PixArt-Sigma 1024 (PixArt-Sigma-XL-2-1024-MS): no micro-conditions, scale 2, the SDXL VAE's scale.
    "pixart_sigma": {"family": "pixart_sigma", "pipeline": "PixArtSigmaPipeline", "interpolation_scale": 2,
                     "use_additional_conditions": False, "latent_scale": 0.13025},
}
TINY_T5_WIDTH = 32  # d_model of the tiny T5 = caption_channels of the tiny transformer


def tiny_pixart_transformer(case, seed=1):
    """Width 24: PixArt-alpha's micro-condition embedders take a third of it each (1152 / 3 in the real model)."""
    from diffusers import PixArtTransformer2DModel
    c = PIXART_CASES[case]
    model = PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=8, num_layers=2, sample_size=8,
        patch_size=2, cross_attention_dim=24, caption_channels=TINY_T5_WIDTH, norm_type="ada_norm_single",
        use_additional_conditions=c["use_additional_conditions"], interpolation_scale=c["interpolation_scale"])
    return randomize(model, seed).eval()


def tiny_t5_encoder(vocab_size, seed=2):
    """T5 v1.1-style (gated GELU, no tied heads, relative position buckets), as PixArt's t5-v1_1-xxl."""
    import torch
    from transformers import T5Config, T5EncoderModel
    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab_size, d_model=TINY_T5_WIDTH, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16,
                      feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6, tie_word_embeddings=False)
    return T5EncoderModel(config).eval()


def tiny_vae(latent_scale, seed=3):
    """An AutoencoderKL with the SD / SDXL VAE's structure (4 levels: 8x down, 4 latent channels, a
    mid-block with attention), tiny widths."""
    import torch
    from diffusers import AutoencoderKL
    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4, sample_size=64, scaling_factor=latent_scale)
    return randomize(vae, seed).eval()


def save_tiny_pixart_pipeline(case, folder):
    """A diffusers pipeline folder (model_index.json, transformer/, text_encoder/, tokenizer/, vae/,
    scheduler/) as the PixArt repositories on the Hugging Face hub lay it out: the tokenizer folder holds
    T5's spiece.model (not a tokenizer.json), which transformers converts when it loads it."""
    import diffusers
    from diffusers import DPMSolverMultistepScheduler
    from transformers import T5Tokenizer
    c = PIXART_CASES[case]
    os.makedirs(os.path.join(folder, "tokenizer"), exist_ok=True)
    spiece = os.path.join(folder, "tokenizer", "spiece.model")
    train_sentencepiece(spiece, tokenizer_corpus())
    tokenizer = T5Tokenizer.from_pretrained(os.path.join(folder, "tokenizer"))
    pipeline = getattr(diffusers, c["pipeline"])(
        tokenizer=tokenizer, text_encoder=tiny_t5_encoder(len(tokenizer)), vae=tiny_vae(c["latent_scale"]),
        transformer=tiny_pixart_transformer(case), scheduler=DPMSolverMultistepScheduler())
    pipeline.save_pretrained(folder)
    # Back to the hub layout: spiece.model and the config, no tokenizer.json.
    for name in os.listdir(os.path.join(folder, "tokenizer")):
        if name not in ("spiece.model", "tokenizer_config.json", "special_tokens_map.json"):
            os.remove(os.path.join(folder, "tokenizer", name))
    return pipeline


def export_model_folder(pipeline_folder, out, extra=()):
    """scripts/export_pixart_model_folder.py on the CPU; returns its model.json."""
    run(python_script("export_pixart_model_folder.py") + [pipeline_folder, "--out", out, "--device", "cpu", *extra],
        "export_pixart_model_folder.py")
    with open(os.path.join(out, "model.json")) as f:
        return json.load(f)


def tiny_model_folder(work, case, keep):
    """A tiny random `case` pipeline saved by diffusers into work/pipeline and exported into
    work/model_folder with only the parts in `keep` (of "backbone", "text_encoder", "vae");
    returns (pipeline folder, model folder, its model.json)."""
    pipeline_folder = os.path.join(work, "pipeline")
    save_tiny_pixart_pipeline(case, pipeline_folder)
    folder = os.path.join(work, "model_folder")
    skip = [part for part in ("backbone", "text_encoder", "vae") if part not in keep]
    return pipeline_folder, folder, export_model_folder(pipeline_folder, folder, ["--skip", *skip] if skip else [])
