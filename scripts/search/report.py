#!/usr/bin/env python3
"""Writes docs/results/schedule-search.md and its plot from ilf_search output folders (state.json,
reference_*.json): for each search its settings, every candidate evaluated on the search seeds, the
Pareto front, the finalists on the held-out seeds next to the reference sampler on the same seeds,
and a plot of FID and class accuracy against block forwards. A hand-written part of an existing report
between "<!-- notes begin -->" and "<!-- notes end -->" is kept.

    /usr/bin/python3 scripts/search/report.py --search runs/search/fid_acc_144 --machine "..." --command "..."

Needs matplotlib (Debian python3-matplotlib).
"""
import argparse
import datetime
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NOTES_BEGIN = "<!-- notes begin -->"
NOTES_END = "<!-- notes end -->"


def number(v):
    return f"{v:g}"


def key(s):
    """The schedule's name as ilf_search's Schedule::key() writes it."""
    fb = s["feedback_steps"]
    if not fb:
        return f"{s['steps']} steps, no feedback"
    k = f"{s['steps']} steps, feedback {','.join(map(str, fb))}, {s['t_post']}"
    if "anneal" in s:
        k += f" (floor {number(s['anneal']['floor'])}, scale {number(s['anneal']['scale'])})"
    if s.get("cache"):
        k += f", cache {s['cache']}"
    if s.get("strength", 1) != 1:
        k += f", strength {number(s['strength'])}"
    return k


def cells(m):
    def f(name, scale=1.0, fmt="{:.2f}"):
        return fmt.format(m[name] * scale) if name in m else "-"
    return [f("fid"), f("class_accuracy", 100, "{:.1f}%"), f("psnr_vs_reference", 1, "{:.1f}"), str(m.get("num_samples", "-"))]


def pareto(cands):
    front = []
    for c in sorted(cands, key=lambda c: (c["block_forwards"], c["score"])):
        if not front or c["score"] < front[-1]["score"]:
            front.append(c)
    return front


def section(folder, index, model):
    state = json.load(open(os.path.join(folder, "state.json")))
    st = state["settings"]
    refs = {}
    for name in ("reference_search", "reference_heldout"):
        p = os.path.join(folder, name + ".json")
        if os.path.exists(p):
            refs[name] = json.load(open(p))
    obj = st["objective"]
    terms = [t for t in (f"{obj['fid']}*FID" if obj["fid"] else "", f"- {obj['accuracy']}*accuracy%" if obj["accuracy"] else "",
                         f"- {obj['psnr']}*PSNR" if obj["psnr"] else "") if t]
    out = [f"## Search {index}: {model}, budget {st['budget']} block forwards, objective {' '.join(terms)}", "",
           f"Output folder `{os.path.relpath(folder)}`; steps {st['min_steps']}-{st['max_steps']}, t_post rules "
           f"{', '.join(st['t_post_rules'])}"
           + (f"; anneal floors {', '.join(map(number, st['anneal_floors']))}" if "anneal_floors" in st else "")
           + (f"; anneal scales {', '.join(map(number, st['anneal_scales']))}" if "anneal_scales" in st else "")
           + (f"; cache modes {', '.join(m or 'none' for m in st['cache_modes'])}" if "cache_modes" in st else "")
           + (f"; feedback strengths {', '.join(map(number, st['strengths']))}" if "strengths" in st else "")
           + f"; {len(state['candidates'])} candidates ({st['initial']} structured "
           f"starting points, then mutations; seed {st['seed']}).", ""]
    out += ["Every candidate on the search seeds, in evaluation order (**bold**: on the Pareto front of block forwards "
            "vs score):", "",
            "| # | schedule | block forwards | score | FID | class accuracy | PSNR dB | samples |",
            "|---:|---|---:|---:|---:|---:|---:|---:|"]
    front_keys = {key(c["schedule"]) for c in pareto(state["candidates"])}
    for i, c in enumerate(state["candidates"]):
        k = key(c["schedule"])
        name = f"**{k}**" if k in front_keys else k
        out.append(f"| {i} | {name} | {c['block_forwards']} | {c['score']:.2f} | " + " | ".join(cells(c["metrics"])) + " |")
    if "reference_search" in refs:
        r = refs["reference_search"]
        out.append(f"| ref | 20 steps, no feedback (the reference) | {r.get('block_forwards', '-')} | - | " +
                   " | ".join(cells(r)) + " |")
    out += ["", "The finalists on the held-out seeds, best first, and the reference on the same seeds:", "",
            "| schedule | block forwards | score | FID | class accuracy | PSNR dB | samples |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for c in state["finalists"]:
        out.append(f"| {key(c['schedule'])} | {c['block_forwards']} | {c['score']:.2f} | " + " | ".join(cells(c["metrics"])) + " |")
    if "reference_heldout" in refs:
        r = refs["reference_heldout"]
        out.append(f"| 20 steps, no feedback (the reference) | {r.get('block_forwards', '-')} | - | " + " | ".join(cells(r)) + " |")
    return out, state, refs


def plot(searches, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for (folder, state, refs), marker in zip(searches, "osD^"):
        cands = state["candidates"]
        name = os.path.basename(folder.rstrip("/"))
        for ax, metric, scale in ((axes[0], "fid", 1), (axes[1], "class_accuracy", 100)):
            ax.scatter([c["block_forwards"] for c in cands], [c["metrics"][metric] * scale for c in cands], marker=marker,
                       alpha=0.5, label=f"{name}: candidates")
            front = pareto(cands)
            ax.plot([c["block_forwards"] for c in front], [c["metrics"][metric] * scale for c in front], "-", linewidth=1,
                    label=f"{name}: Pareto front (score)")
            if "reference_search" in refs:
                r = refs["reference_search"]
                ax.scatter([r["block_forwards"]], [r[metric] * scale], marker="*", s=160, color="black",
                           label="20 plain steps" if marker == "o" else None)
    top = 130  # a few broken candidates (FID in the hundreds) would flatten the rest
    if any(c["metrics"]["fid"] > top for _, state, _ in searches for c in state["candidates"]):
        axes[0].set_ylim(top=top)
        axes[0].set_title(f"candidates with FID > {top} are above the plot", fontsize=8)
    axes[0].set_ylabel("FID (search seeds; lower is better)")
    axes[1].set_ylabel("class accuracy % (search seeds)")
    for ax in axes:
        ax.set_xlabel("block forwards per image")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--search", action="append", required=True,
                    help="an ilf_search output folder, optionally FOLDER:MODEL naming the model (repeatable)")
    ap.add_argument("--report", default="docs/results/schedule-search.md")
    ap.add_argument("--machine", required=True)
    ap.add_argument("--command", action="append", default=[], help="the commands that produced the folders")
    args = ap.parse_args()
    plot_png = os.path.splitext(args.report)[0] + ".png"
    out = ["# Schedule search on the embedded Fashion-MNIST models", "",
           f"Generated {datetime.date.today()} by `scripts/search/report.py` on {args.machine}, from:", "", "```bash"]
    out += args.command + ["```", "",
                           "Scores are lower-is-better (FID minus weighted class accuracy in percent); every candidate was "
                           "priced by the sampler's plan before sampling, so none exceeds the budget.", "",
                           f"![FID and class accuracy of every candidate against block forwards]({os.path.basename(plot_png)})", ""]
    searches = []
    for i, spec in enumerate(args.search, 1):
        folder, _, model = spec.partition(":")
        lines, state, refs = section(folder, i, model or "class-to-image DiT")
        out += lines + [""]
        searches.append((folder, state, refs))
    plot(searches, plot_png)
    notes = [NOTES_BEGIN, "(notes to be written after reading the numbers)", NOTES_END]
    if os.path.exists(args.report):
        text = open(args.report).read()
        if NOTES_BEGIN in text and NOTES_END in text:
            notes = [text[text.index(NOTES_BEGIN):text.index(NOTES_END) + len(NOTES_END)]]
    out += ["## What the numbers say", ""] + notes + [""]
    with open(args.report, "w") as f:
        f.write("\n".join(out))
    print(f"wrote {args.report} and {plot_png}")


if __name__ == "__main__":
    main()
