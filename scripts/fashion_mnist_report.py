#!/usr/bin/env python3
"""Writes the Fashion-MNIST report from the ilf_eval results of scripts/reproduce_fashion_mnist.sh:
the table (paper Table 1 style), a same-seed image grid (paper Figure 9 style) and a plot of quality
against block forwards (paper Figure 8 style), as docs/results/fashion-mnist.md and two PNG files
next to it. A hand-written part of an existing report between the lines
"<!-- notes begin -->" and "<!-- notes end -->" is kept.

    /usr/bin/python3 scripts/fashion_mnist_report.py --metrics DIR --samples DIR --rows base20,... \
        --machine "..." --command "..." --report docs/results/fashion-mnist.md

Needs numpy and matplotlib (Debian python3-numpy python3-matplotlib).
"""
import argparse
import datetime
import json
import os
import struct
import sys

import numpy as np
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NOTES_BEGIN = "<!-- notes begin -->"
NOTES_END = "<!-- notes end -->"
CLASS_NAMES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
GRID_ROWS = ["base20", "base10", "cache20", "ilf10", "ilf11"]  # the Figure 9 rows (and the default), when present


def read_samples(path, count):
    """The first `count` images of an ilf_eval --write-samples file: (count, H, W) in [-1, 1]."""
    with open(path, "rb") as f:
        header_size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_size))
        entry = header.get("samples")
        if entry is None or entry["dtype"] != "F32" or len(entry["shape"]) != 4:
            sys.exit(f"{path}: expected a float32 tensor \"samples\" of shape (N, C, H, W)")
        n, c, h, w = entry["shape"]
        begin = entry["data_offsets"][0]
        f.seek(8 + header_size + begin)
        data = np.frombuffer(f.read(4 * min(count, n) * c * h * w), dtype="<f4")
    return data.reshape(min(count, n), c, h, w)[:, 0]


def same_seed_grid(rows, samples_dir, out_png, crop=2):
    """One line per method, one column per class (the first 10 samples: same seeds, classes 0..9)."""
    names = [r for r in GRID_ROWS if r in rows]
    fig, axes = plt.subplots(len(names), 10, figsize=(10 * 0.9, len(names) * 1.0 + 0.3), squeeze=False)
    for i, name in enumerate(names):
        images = read_samples(os.path.join(samples_dir, name + ".safetensors"), 10)
        for j in range(10):
            ax = axes[i][j]
            image = images[j][crop:-crop, crop:-crop] if crop else images[j]
            ax.imshow((image + 1) / 2, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(CLASS_NAMES[j], fontsize=8)
            if j == 0:
                m = rows[name]
                ax.set_ylabel(f"{short_label(name)}\n{m['block_forwards']} bf", fontsize=7)
    fig.tight_layout(pad=0.3)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def short_label(name):
    return {"base20": "20 steps", "base10": "10 steps", "cache20": "caching", "ilf10": "ILF 10", "ilf11": "ILF 11 (default)"}.get(name, name)


def quality_plot(rows, out_png):
    """FID and class accuracy against block forwards: the baseline curve, caching and ILF points."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    groups = {
        "baseline (plain steps)": lambda n, m: m["settings"]["method"] == "baseline",
        "caching": lambda n, m: m["settings"]["method"] == "cache",
        "ILF (paper schedule, t_post anneal, 3000-step feedback)": lambda n, m: m["settings"]["method"] == "ilf"
        and m["settings"]["t_post"] == "anneal" and "fb1000" not in n and n != "ilf11",
        "ILF, other t_post / training": lambda n, m: m["settings"]["method"] == "ilf"
        and (m["settings"]["t_post"] != "anneal" or "fb1000" in n),
        "ILF, ilf_search's schedule (the default)": lambda n, m: n == "ilf11",
    }
    styles = ["o-", "s", "^-", "x", "*"]
    for ax, key, title in [(axes[0], "fid", "FID (classifier features, lower is better)"),
                           (axes[1], "class_accuracy", "class accuracy (higher is better)")]:
        # Outliers (e.g. a broken t_post rule) would flatten the rest: FIDs above 1.6x the median are
        # drawn on the top edge with their value.
        values = sorted(m[key] for m in rows.values())
        ceiling = 1.6 * values[len(values) // 2] if key == "fid" else None
        for (group, member), style in zip(groups.items(), styles):
            points = sorted((m["block_forwards"], m[key], n) for n, m in rows.items() if member(n, m))
            if ceiling is not None:
                points = [(x, min(y, ceiling), n if y <= ceiling else f"{n} (FID {y:.0f}, off the scale)")
                          for x, y, n in points]
            if not points:
                continue
            xs, ys, ns = zip(*points)
            if style.endswith("-") and len(points) > 1:
                ax.plot(xs, ys, style, label=group)
            else:
                ax.plot(xs, ys, style.rstrip("-"), linestyle="none", label=group)
            for x, y, n in points:
                ax.annotate(n, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
        if ceiling is not None:
            ax.set_ylim(top=ceiling * 1.03)
        ax.set_xlabel("block forwards per image")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def table(rows, order):
    lines = ["| row | setting | block forwards | s/img | FID | class accuracy | PSNR vs 20 steps (dB) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name in order:
        m = rows[name]
        psnr = m.get("psnr_vs_reference")
        psnr_text = "reference" if name == "base20" else (f"{psnr:.1f}" if psnr is not None else "-")
        lines.append(f"| {name} | {m['label']} | {m['block_forwards']} | {m['seconds_per_image'] * 1000:.1f} ms | "
                     f"{m['fid']:.2f} | {100 * m['class_accuracy']:.1f}% | {psnr_text} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--metrics", required=True, help="folder of the rows' ilf_eval JSON files")
    parser.add_argument("--samples", required=True, help="folder of the rows' samples (safetensors)")
    parser.add_argument("--rows", required=True, help="row names in table order, comma-separated")
    parser.add_argument("--machine", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--report", required=True)
    args = parser.parse_args()

    order = args.rows.split(",")
    rows = {}
    for name in order:
        path = os.path.join(args.metrics, name + ".json")
        if not os.path.exists(path):
            sys.exit(f"{path}: missing (row {name} was not evaluated)")
        with open(path) as f:
            rows[name] = json.load(f)
    num_samples = sorted({m["num_samples"] for m in rows.values()})

    out_dir = os.path.dirname(os.path.abspath(args.report))
    os.makedirs(out_dir, exist_ok=True)
    grid_png = os.path.join(out_dir, "fashion-mnist-same-seed.png")
    plot_png = os.path.join(out_dir, "fashion-mnist-quality-vs-cost.png")
    same_seed_grid(rows, args.samples, grid_png)
    quality_plot(rows, plot_png)

    notes = "(No notes yet.)"
    if os.path.exists(args.report):
        text = open(args.report).read()
        if NOTES_BEGIN in text and NOTES_END in text:
            notes = text.split(NOTES_BEGIN, 1)[1].split(NOTES_END, 1)[0].strip()

    report = f"""# Inner Loop Feedback on Fashion-MNIST

The embedded model (`configs/fashion_mnist.json`: a 12-block class-conditional pixel-space DiT,
inner loop 4..7) sampled with DPM-Solver++(2M) and classifier-free guidance 2.0, evaluated by
`ilf_eval` on {", ".join(map(str, num_samples))} samples per row (classes balanced, the same seeds in
every row). FID uses the features of the project's Fashion-MNIST classifier
(`models/fashion_mnist/classifier.pt`) against the 10,000 test images; class accuracy is that
classifier's agreement with the requested class; PSNR compares each sample with the same-seed
20-step baseline sample. Block forwards count every transformer block evaluated per image (the
feedback block included); s/img is the wall-clock sampling time per image, measured in the same run.

Produced by `{args.command}` on {datetime.date.today().isoformat()}, machine: {args.machine}.

{table(rows, order)}

![same-seed samples](fashion-mnist-same-seed.png)

Same seeds and classes in every line (paper Figure 9 style).

![quality against block forwards](fashion-mnist-quality-vs-cost.png)

Quality against cost (paper Figure 8 style).

## What the numbers say

{NOTES_BEGIN}
{notes}
{NOTES_END}
"""
    tmp = args.report + ".tmp"
    with open(tmp, "w") as f:
        f.write(report)
    os.replace(tmp, args.report)
    print(table(rows, order))
    print(f"wrote {args.report}, {grid_png}, {plot_png}")


if __name__ == "__main__":
    main()
