#!/usr/bin/env python3
"""Writes docs/results/acceleration.md (and its plots) from the finished points of the acceleration
sweeps (configs/sweeps/acceleration/*.json, run by scripts/acceleration/run_all.sh, which keeps each
point in docs/results/acceleration-points/ as it finishes): one table row per point,
a per-budget comparison (0.4x-0.7x of the 20-step baseline's block forwards), and FID / class accuracy /
PSNR against block forwards with each method's points and the Pareto front. A hand-written part of an
existing report between "<!-- notes begin -->" and "<!-- notes end -->" is kept.

    /usr/bin/python3 scripts/acceleration/report.py --how "one thread per point, ..." --command "..."

Needs numpy and matplotlib (Debian python3-numpy python3-matplotlib).
"""
import argparse
import datetime
import glob
import json
import os

import numpy as np
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NOTES_BEGIN = "<!-- notes begin -->"
NOTES_END = "<!-- notes end -->"
BASELINE_COST = 240  # 20 plain steps x 12 blocks
BUDGETS = [0.4, 0.5, 0.6, 0.7]
METHODS = [  # (sampling.method [+ mode], label, plot style)
    ("baseline", "plain DPM-Solver++ (fewer steps)", "k-o"),
    ("cache", "caching (paper's baseline)", "-s"),
    ("fora", "FORA", "-^"),
    ("delta_dit", "Δ-DiT", "-v"),
    ("teacache", "TeaCache", "-D"),
    ("taylorseer", "TaylorSeer (order 2)", "-P"),
    ("l2c", "Learning-to-Cache", "-X"),
    ("ilf", "ILF", "r-*"),
    ("ilf_cache/alternate", "ILF + caching between feedback steps", "m--*"),
    ("ilf_cache/outside", "ILF + caching outside the loop", "c--*"),
    ("ilf_cache/forecast", "ILF + TaylorSeer forecasting", "g--*"),
]


def method_key(settings):
    m = settings["method"]
    if m == "ilf_cache":
        return m + "/" + settings["ilf_cache"]["mode"]
    return m


def describe(settings):
    m, s = settings["method"], settings
    steps = f"{s['steps']} steps"
    if m == "baseline":
        return steps
    if m == "cache":
        c = s["cache"]
        return f"{steps}, {c['location']} {c['num_blocks']} blocks every {c['interval']}"
    if m == "fora":
        return f"{steps}, full every {s['fora']['interval']}"
    if m == "delta_dit":
        d = s["delta_dit"]
        return f"{steps}, {d['num_blocks']} blocks, full every {d['interval']}, boundary {d['boundary']}"
    if m == "teacache":
        return f"{steps}, threshold {s['teacache']['threshold']}"
    if m == "taylorseer":
        t = s["taylorseer"]
        return f"{steps}, full every {t['interval']}, order {t['order']}"
    if m == "l2c":
        l = s["l2c"]  # the budget rule or the paper's threshold; full_every since the alternation
        rule = f"budget {l['budget']}" if "budget" in l else f"threshold {l['threshold']}"
        return f"{steps}, full every {l['full_every']}, {rule}" if "full_every" in l else f"{steps}, {rule}"
    if m == "ilf_cache" and s["ilf_cache"]["mode"] == "forecast":
        t = s["ilf_cache"]["taylorseer"]
        return f"{steps}, full every {t['interval']} between feedback steps, order {t['order']}"
    return steps  # ilf, ilf_cache: the loop and feedback steps are the sweep's (see the sweep file)


def load_rows(records):
    rows = []
    for path in sorted(glob.glob(os.path.join(records, "*", "p*.json"))):
        with open(path) as f:
            record = json.load(f)
        m = record["metrics"]
        m["key"] = method_key(m["settings"])
        m["what"] = describe(m["settings"])
        m["point"] = os.path.splitext(os.path.relpath(path, records))[0]
        m["machine"] = record.get("machine", "?")
        m["date"] = record["marker"].get("finished_at", "?")[:10]
        rows.append(m)
    return rows


def pareto(points):
    """Indices of the points no other point beats in both cost (lower) and value (lower)."""
    front = []
    for i, (c, v) in enumerate(points):
        if not any((c2 <= c and v2 < v) or (c2 < c and v2 <= v) for j, (c2, v2) in enumerate(points) if j != i):
            front.append(i)
    return front


def plot(rows, out_png):
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    panels = [("fid", "FID (lower is better)", 1), ("class_accuracy", "class accuracy (%)", 100),
              ("psnr_vs_reference", "PSNR vs 20 plain steps (dB)", 1)]
    for ax, (metric, title, scale) in zip(axes, panels):
        for key, label, style in METHODS:
            pts = sorted((r["block_forwards"], r[metric] * scale) for r in rows if r["key"] == key and metric in r)
            pts = [p for p in pts if np.isfinite(p[1])]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label, markersize=6, linewidth=1)
        if metric == "fid":
            everything = [(r["block_forwards"], r["fid"]) for r in rows if r["block_forwards"] < BASELINE_COST]
            front = sorted(everything[i] for i in pareto(everything))
            ax.plot([p[0] for p in front], [p[1] for p in front], color="gold", linewidth=6, alpha=0.35, zorder=0,
                    label="Pareto front (FID)")
        for b in BUDGETS:
            ax.axvline(b * BASELINE_COST, color="grey", linewidth=0.5, linestyle=":")
        ax.set_xlabel("block forwards per image (20 plain steps: 240)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def fmt(r, metric):
    if metric not in r:
        return "–"
    v = r[metric]
    if metric == "class_accuracy":
        return f"{100 * v:.1f}%"
    if metric == "psnr_vs_reference":
        return "reference" if not np.isfinite(v) else f"{v:.1f}"
    return f"{v:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="docs/results/acceleration-points")
    parser.add_argument("--report", default="docs/results/acceleration.md")
    parser.add_argument("--how", required=True, help="how the points ran (threads, points at a time)")
    parser.add_argument("--command", required=True)
    args = parser.parse_args()
    rows = load_rows(args.records)
    order = {k: i for i, (k, _, _) in enumerate(METHODS)}
    rows.sort(key=lambda r: (order.get(r["key"], 99), r["block_forwards"]))
    labels = {k: l for k, l, _ in METHODS}
    plot_png = os.path.splitext(args.report)[0] + "-pareto.png"
    plot(rows, plot_png)
    n = sorted({r["num_samples"] for r in rows})

    out = ["# ILF against the acceleration methods, on Fashion-MNIST", ""]
    out += [
        "Every method samples the embedded class-conditional DiT (`configs/fashion_mnist.json`: 12 blocks,",
        "DPM-Solver++(2M), guidance 2.0) and is scored by `ilf_eval` on the same seeds and classes in every",
        f"row ({', '.join(map(str, n))} samples per row). FID uses the features of the project's Fashion-MNIST",
        "classifier against the 10,000 test images; class accuracy is that classifier's agreement with the",
        "requested class; PSNR compares each sample with the same-seed 20-step plain sample. Cost: block",
        "forwards per image, the unit every method's `--plan` and the sampler's counter share (the feedback",
        "block counts as one; TeaCache's cost is what it decided while sampling, averaged over the batches of",
        "100). s/img is wall-clock, measured with other work on the machine: read it as indicative only.",
        "",
        f"Produced by `{args.command}` ({args.how}); report written on {datetime.date.today().isoformat()}.",
        "Rows measured on " + "; ".join(
            f"{machine} ({', '.join(sorted({r['date'] for r in rows if r['machine'] == machine}))}, "
            f"{sum(r['machine'] == machine for r in rows)} rows)" for machine in sorted({r["machine"] for r in rows})) + ".",
        "",
        "## At each budget",
        "",
        "The row of each method closest to 0.4x, 0.5x, 0.6x and 0.7x of the 240 block forwards of 20 plain",
        "steps (within 0.05x), FID / class accuracy / PSNR (dB):",
        "",
        "| method | " + " | ".join(f"{b:.1f}x ({round(b * BASELINE_COST)})" for b in BUDGETS) + " |",
        "|---|" + "---:|" * len(BUDGETS),
    ]
    for key, label, _ in METHODS:
        cells = []
        for b in BUDGETS:
            cands = [r for r in rows if r["key"] == key and abs(r["block_forwards"] / BASELINE_COST - b) <= 0.05]
            if not cands:
                cells.append("–")
                continue
            r = min(cands, key=lambda r: abs(r["block_forwards"] / BASELINE_COST - b))
            cells.append(f"{r['fid']:.1f} / {100 * r['class_accuracy']:.1f}% / {fmt(r, 'psnr_vs_reference')}"
                         f" ({r['block_forwards']:.0f})")
        if any(c != "–" for c in cells):
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", f"![quality against cost]({os.path.basename(plot_png)})", "", "## Every row", "",
            "| method | setting | block forwards | x of 240 | s/img | FID | class accuracy | PSNR vs 20 steps (dB) | point |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        bf = r["block_forwards"]
        out.append(f"| {labels.get(r['key'], r['key'])} | {r['what']} | {bf:.0f} | {bf / BASELINE_COST:.2f} | "
                   f"{1000 * r['seconds_per_image']:.0f} ms | {r['fid']:.2f} | {fmt(r, 'class_accuracy')} | "
                   f"{fmt(r, 'psnr_vs_reference')} | `{r['point']}` |")
    notes = [NOTES_BEGIN, "(notes to be written after reading the numbers)", NOTES_END]
    if os.path.exists(args.report):
        text = open(args.report).read()
        if NOTES_BEGIN in text and NOTES_END in text:
            notes = [text[text.index(NOTES_BEGIN):text.index(NOTES_END) + len(NOTES_END)]]
    out += ["", "## What the numbers say", ""] + notes + [""]
    with open(args.report, "w") as f:
        f.write("\n".join(out))
    print(f"wrote {args.report} and {plot_png} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
