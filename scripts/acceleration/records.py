#!/usr/bin/env python3
"""Keeps the finished points of the acceleration sweeps in the repository, so that the comparison
(docs/results/acceleration.md) can be run across sessions and machines: a 5000-sample row costs
minutes of CPU per point and the sweeps' output folder (runs/, not in git) does not outlive a machine.

    save:    every finished point of runs/acceleration/<sweep>/<point>/ (metrics.json + done_eval.json)
             -> docs/results/acceleration-points/<sweep>/<point>.json; the plain rows' PSNR against the
             20-step samples is computed here and stored with them (their samples stay behind in runs/).
    restore: the saved points -> runs/acceleration/..., where the folder has none, so that
             `ilf_sweep run` skips them (its completion marker holds the point's overrides and is checked
             against the sweep file). The 20-step plain point is restored only with its samples present:
             it is every other row's PSNR reference and must run again without them.

    /usr/bin/python3 scripts/acceleration/records.py save|restore [--runs runs/acceleration]
"""
import argparse
import glob
import json
import os
import platform
import struct

import numpy as np

RECORDS = "docs/results/acceleration-points"
REFERENCE = "baseline/samples_base20.safetensors"


def read_samples(path):
    """An ilf_eval --write-samples file: (N, C, H, W) float32."""
    with open(path, "rb") as f:
        header_size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_size))
        entry = header["samples"]
        f.seek(8 + header_size + entry["data_offsets"][0])
        data = np.frombuffer(f.read(entry["data_offsets"][1] - entry["data_offsets"][0]), dtype="<f4")
    return data.reshape(entry["shape"]).astype(np.float64)


def mean_psnr(images, reference):
    """As ilf_eval computes it (eval/metrics.cpp): per-image PSNR with peak-to-peak 2, averaged."""
    mse = ((images - reference) ** 2).reshape(len(images), -1).mean(1)
    mse = mse[mse > 0]
    return float("inf") if len(mse) == 0 else float(np.mean(10 * np.log10(4.0 / mse)))


def this_machine():
    """ILF_MACHINE, or what the CPU says of itself (the records say where each row was measured)."""
    if os.environ.get("ILF_MACHINE"):
        return os.environ["ILF_MACHINE"]
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return f"{os.cpu_count()}-core {platform.machine()} CPU" + (f" ({model})" if model else "")


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def save(runs, records):
    reference = os.path.join(runs, REFERENCE)
    saved = 0
    for marker_path in sorted(glob.glob(os.path.join(runs, "*", "p*", "done_eval.json"))):
        point_dir = os.path.dirname(marker_path)
        sweep, point = os.path.relpath(point_dir, runs).split(os.sep)
        with open(marker_path) as f:
            marker = json.load(f)
        with open(os.path.join(point_dir, "metrics.json")) as f:
            metrics = json.load(f)
        marker.pop("command", None)  # the tools' folder on this machine
        record_path = os.path.join(records, sweep, point + ".json")
        if os.path.exists(record_path):  # saved before (or restored): unchanged, keeps where it was measured
            with open(record_path) as f:
                if json.load(f)["marker"].get("finished_at") == marker.get("finished_at"):
                    saved += 1
                    continue
        settings = metrics.get("settings", {})
        if settings.get("method") == "baseline" and "psnr_vs_reference" not in metrics:
            samples = os.path.join(runs, "baseline", f"samples_base{settings['steps']}.safetensors")
            if settings["steps"] != 20 and os.path.exists(samples) and os.path.exists(reference):
                metrics["psnr_vs_reference"] = mean_psnr(read_samples(samples), read_samples(reference))
        write_json(record_path, {"machine": this_machine(), "marker": marker, "metrics": metrics})
        saved += 1
    print(f"saved {saved} finished points to {records}")


def restore(runs, records):
    restored = 0
    for record_path in sorted(glob.glob(os.path.join(records, "*", "p*.json"))):
        sweep = os.path.basename(os.path.dirname(record_path))
        point = os.path.splitext(os.path.basename(record_path))[0]
        point_dir = os.path.join(runs, sweep, point)
        if os.path.exists(os.path.join(point_dir, "done_eval.json")):
            continue
        with open(record_path) as f:
            record = json.load(f)
        if record["metrics"].get("settings", {}).get("method") == "baseline" and \
                record["metrics"]["settings"].get("steps") == 20 and not os.path.exists(os.path.join(runs, REFERENCE)):
            continue
        write_json(os.path.join(point_dir, "metrics.json"), record["metrics"])
        write_json(os.path.join(point_dir, "done_eval.json"), record["marker"])
        restored += 1
    print(f"restored {restored} finished points from {records}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["save", "restore"])
    parser.add_argument("--runs", default="runs/acceleration")
    parser.add_argument("--records", default=RECORDS)
    args = parser.parse_args()
    (save if args.action == "save" else restore)(args.runs, args.records)


if __name__ == "__main__":
    main()
