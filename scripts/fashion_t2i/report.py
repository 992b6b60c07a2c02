#!/usr/bin/env python3
"""Writes docs/results/fashion-mnist-t2i.md from the ilf_eval rows of scripts/fashion_t2i/report.sh: the
table and a same-seed grid (one held-out caption per class, the same noise in every line). A hand-written
part between "<!-- notes begin -->" and "<!-- notes end -->" of an existing report is kept.
Needs numpy and matplotlib (Debian python3-numpy python3-matplotlib).
"""
import argparse
import datetime
import json
import os
import struct

import numpy as np
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NOTES_BEGIN = "<!-- notes begin -->"
NOTES_END = "<!-- notes end -->"
NAMES = {"base20": "Baseline, 20 steps", "base12": "Baseline, 12 steps", "base10": "Baseline, 10 steps",
         "cache20": "Caching, 20 steps (inner 8 blocks, every 3rd step)",
         "ilf10": "ILF, 10 steps (feedback on the first and last 2), loop 4..7, t_post anneal"}


def read_samples(path, count):
    with open(path, "rb") as f:
        header_size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_size))
        entry = header["samples"]
        n, c, h, w = entry["shape"]
        f.seek(8 + header_size + entry["data_offsets"][0])
        data = np.frombuffer(f.read(4 * min(count, n) * c * h * w), dtype="<f4")
    return data.reshape(min(count, n), c, h, w)[:, 0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evals", required=True)
    parser.add_argument("--rows", required=True)
    parser.add_argument("--captions", default="models/fashion_mnist_t2i/captions_eval.txt")
    parser.add_argument("--report", default="docs/results/fashion-mnist-t2i.md")
    parser.add_argument("--machine", required=True)
    parser.add_argument("--command", required=True)
    args = parser.parse_args()
    rows = {}
    for name in args.rows.split(","):
        with open(os.path.join(args.evals, name + ".json")) as f:
            rows[name] = json.load(f)
    # The first caption of each class: what samples 0..9 were given (ilf_eval interleaves the classes).
    first = {}
    for line in open(args.captions):
        label, caption = line.rstrip("\n").split("\t", 1)
        first.setdefault(int(label), caption)
    grid_png = os.path.splitext(args.report)[0] + "-same-seed.png"
    names = list(rows)
    fig, axes = plt.subplots(len(names), 10, figsize=(11, len(names) * 1.15 + 0.6), squeeze=False)
    for i, name in enumerate(names):
        images = read_samples(os.path.join(args.evals, name + ".safetensors"), 10)
        for j in range(10):
            ax = axes[i][j]
            ax.imshow((images[j][2:-2, 2:-2] + 1) / 2, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("\n".join(first[j].split(" ", 2)[:2] + [" ".join(first[j].split(" ")[2:])]), fontsize=6)
            if j == 0:
                ax.set_ylabel(f"{name}\n{rows[name]['block_forwards']} bf", fontsize=7)
    fig.tight_layout(pad=0.3)
    fig.savefig(grid_png, dpi=110)
    plt.close(fig)

    n = sorted({r["num_samples"] for r in rows.values()})
    out = ["# Text-to-image on Fashion-MNIST: ILF on a PixArt-alpha trained here", "",
           "The embedded text-to-image model (`models/fashion_mnist_t2i/`, trained by `scripts/fashion_t2i/`): a",
           "12-block PixArt-alpha (width 64) on 4x8x8 latents of a VAE trained here, conditioned on a frozen",
           "T5-architecture encoder's features of captions; its feedback module trained by Fast Approximate",
           "Distillation (3000 steps, loop 4..7). Sampled with DPM-Solver++(2M) and guidance 3.0, the null",
           "caption PixArt-alpha's learned y_embedding. Scored by `ilf_eval --prompts-file",
           f"models/fashion_mnist_t2i/captions_eval.txt` on {', '.join(map(str, n))} samples per row: captions of",
           "12 templates never seen in training, the classes in turn, the same seeds in every row. FID and class",
           "accuracy use the project's Fashion-MNIST classifier on the decoded images (FID against the 10,000",
           "test images); PSNR compares with the same-seed 20-step samples. s/img is wall-clock with other work",
           "on the machine (indicative only).", "",
           f"Produced by `{args.command}` on {datetime.date.today().isoformat()}, machine: {args.machine}.", "",
           "| row | setting | block forwards | s/img | FID | class accuracy | PSNR vs 20 steps (dB) |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        psnr = f"{r['psnr_vs_reference']:.1f}" if "psnr_vs_reference" in r else "reference"
        out.append(f"| {name} | {NAMES.get(name, name)} | {r['block_forwards']} | {1000 * r['seconds_per_image']:.0f} ms | "
                   f"{r['fid']:.2f} | {100 * r['class_accuracy']:.1f}% | {psnr} |")
    out += ["", f"![same-seed samples]({os.path.basename(grid_png)})", "",
            "Same seeds in every line; column j has the first held-out caption of class j.", "",
            "## What the numbers say", ""]
    notes = [NOTES_BEGIN, "(notes to be written after reading the numbers)", NOTES_END]
    if os.path.exists(args.report):
        text = open(args.report).read()
        if NOTES_BEGIN in text and NOTES_END in text:
            notes = [text[text.index(NOTES_BEGIN):text.index(NOTES_END) + len(NOTES_END)]]
    out += notes + [""]
    with open(args.report, "w") as f:
        f.write("\n".join(out))
    print(f"wrote {args.report} and {grid_png}")


if __name__ == "__main__":
    main()
