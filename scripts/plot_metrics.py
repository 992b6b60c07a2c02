#!/usr/bin/env python3
"""Plots an ilf_train metrics file (metrics.jsonl) as one PNG: the loss terms, learning rate,
gradient norm, throughput and memory against the step. Several runs can be overlaid.

    python3 scripts/plot_metrics.py runs/tiny/metrics.jsonl [more/metrics.jsonl ...] -o metrics.png
    python3 scripts/plot_metrics.py runs/tiny  # a run folder works too

Needs matplotlib (Debian: python3-matplotlib). Lines that are not valid JSON (a run killed while
writing) are skipped; when a step appears twice (a resumed run), the later line wins.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PANELS = [
    ("loss", ["loss", "loss_rec", "loss_dist"], True),
    ("learning rate", ["lr"], False),
    ("gradient norm", ["grad_norm"], True),
    ("samples / s", ["samples_per_s"], False),
    ("memory (MiB)", ["memory_mb"], False),
]


def read_metrics(path):
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    by_step = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "step" in entry:
                by_step[entry["step"]] = entry
    return path, [by_step[s] for s in sorted(by_step)]


def smooth(values, window):
    if window <= 1:
        return values
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", nargs="+", help="metrics.jsonl files or run folders")
    parser.add_argument("-o", "--output", default="metrics.png", help="PNG to write (default metrics.png)")
    parser.add_argument("--smooth", type=int, default=1, help="moving-average window for the loss curves")
    args = parser.parse_args()

    runs = [read_metrics(p) for p in args.metrics]
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(9, 2.6 * len(PANELS)), sharex=True)
    for ax, (title, keys, log_scale) in zip(axes, PANELS):
        for path, entries in runs:
            label_prefix = os.path.basename(os.path.dirname(os.path.abspath(path))) if len(runs) > 1 else ""
            for key in keys:
                points = [(e["step"], e[key]) for e in entries if key in e]
                if not points:
                    continue
                steps, values = zip(*points)
                values = smooth(list(values), args.smooth if title == "loss" else 1)
                label = f"{label_prefix} {key}".strip()
                ax.plot(steps, values, label=label, linewidth=1)
        ax.set_ylabel(title)
        if log_scale:
            ax.set_yscale("log")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output} ({sum(len(e) for _, e in runs)} points from {len(runs)} run(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
