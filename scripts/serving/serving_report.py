#!/usr/bin/env python3
"""Writes the serving report from scripts/serving/run_measurements.sh's results: docs/results/serving.md
(the table of every load point, the gain of batching at each load, the commands and the machine) and
docs/results/serving.png (images/s and median latency against concurrent clients, one line per
configuration). Separate from the shell script so that the numbers are computed and formatted in one
place, and so that a report can be rewritten from a kept results file without measuring again.

    python3 scripts/serving/serving_report.py --results results.jsonl --commands commands.txt --md serving.md \\
        [--png serving.png] --machine TEXT --threads TEXT --commit SHA --invocation TEXT
"""
import argparse
import datetime
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load_test import markdown_header, markdown_row  # noqa: E402


def gains(rows):
    """(method, clients) -> images/s with batching on / off, for the rows that have both."""
    by = {}
    for r in rows:
        method, _, batching = r["label"].rpartition(", batching ")
        by.setdefault((method, r["concurrency"]), {})[batching] = r
    out = []
    for (method, clients), pair in sorted(by.items()):
        if "on" in pair and "off" in pair and pair["off"]["images_per_s"] > 0:
            on, off = pair["on"], pair["off"]
            out.append((method, clients, on["images_per_s"], off["images_per_s"], on["images_per_s"] / off["images_per_s"],
                        on["latency_p50_s"], off["latency_p50_s"]))
    return out


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    for label in labels:
        points = sorted((r["concurrency"], r["images_per_s"], r["latency_p50_s"]) for r in rows if r["label"] == label)
        style = "-" if "batching on" in label else "--"
        marker = "o" if label.startswith("ILF") else "s"
        ax1.plot([p[0] for p in points], [p[1] for p in points], style, marker=marker, label=label)
        ax2.plot([p[0] for p in points], [p[2] for p in points], style, marker=marker, label=label)
    for ax, title, ylabel in ((ax1, "throughput", "images / s"), (ax2, "median latency", "seconds")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["concurrency"] for r in rows}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    ax2.set_yscale("log")
    ax2.get_yaxis().set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax2.get_yaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax1.legend(fontsize=8)
    fig.suptitle("ilf_serve on the embedded Fashion-MNIST model (32 x 32, one image per request)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", required=True)
    parser.add_argument("--commands", required=True)
    parser.add_argument("--md", required=True)
    parser.add_argument("--png")
    parser.add_argument("--machine", required=True)
    parser.add_argument("--threads", required=True)
    parser.add_argument("--commit", required=True)
    parser.add_argument("--invocation", required=True)
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.results) if line.strip()]
    if not rows:
        raise SystemExit("serving_report: no results")
    commands = [line.rstrip("\n") for line in open(args.commands) if line.strip()]
    duration = rows[0]["duration_s"]
    table = [markdown_header(), *[markdown_row(r) for r in rows]]
    lines = [
        "# Serving under load: ilf_serve with and without cross-request batching",
        "",
        "What batching requests that share a sampling plan buys the image server (`ilf_serve`, docs/serving.md)",
        "when many clients ask at once. The server runs the embedded class-to-image model",
        "(`configs/fashion_mnist.json`, 32 x 32 images); each client of `scripts/serving/load_test.py` sends",
        f"one-image requests (`{json.dumps(rows[0]['body'])}`, a new seed each) over a kept-alive",
        f"connection for {duration:g} s, then waits for its last answer. images/s is images received over the",
        "time from the first request to the last answer; latencies are those of the 200s. Batching on is",
        "`--max-batch 16`, off `--max-batch 1`; the 20-step baseline is set on the server",
        "(`--set sampling.method=baseline --set sampling.steps=20`), ILF is the model's default (11 steps,",
        "142 block forwards per image against the baseline's 240).",
        "",
        f"Written by `{args.invocation}` on commit {args.commit}, "
        f"{datetime.date.today().isoformat()}; machine: {args.machine}; {args.threads}.",
        "",
        *table,
        "",
        "## What batching gains at each load",
        "",
        "| sampler | clients | images/s batched | images/s one by one | gain | p50 s batched | p50 s one by one |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method, clients, on, off, gain, p50_on, p50_off in gains(rows):
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(f"| {method} | {clients} | {on:.2f} | {off:.2f} | {gain:.2f}x | {fmt(p50_on)} | {fmt(p50_off)} |")
    lines += ["", "## Commands", "", "```bash", args.invocation, "```", "", "which ran, per configuration:", "", "```"]
    lines += commands
    lines += ["```", ""]
    if args.png:
        plot(rows, args.png)
        lines += [f"![images/s and median latency against clients]({os.path.basename(args.png)})", ""]
    # The reading of the numbers is written by hand between the notes markers and kept when the report is
    # written again (the numbers it speaks of may then have moved: read it against the table).
    notes = ["<!-- notes begin -->", "", "## Reading", "", "(to be written from the table above)", "", "<!-- notes end -->"]
    if os.path.exists(args.md):
        old = open(args.md).read()
        if "<!-- notes begin -->" in old and "<!-- notes end -->" in old:
            kept = old[old.index("<!-- notes begin -->"):old.index("<!-- notes end -->") + len("<!-- notes end -->")]
            notes = kept.split("\n")
    lines += [*notes, ""]
    with open(args.md, "w") as f:
        f.write("\n".join(lines))
    print(f"serving_report: {len(rows)} load points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
