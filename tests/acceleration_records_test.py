#!/usr/bin/env python3
"""Checks scripts/acceleration/records.py, which carries the acceleration comparison's finished points
across machines: save -> restore into an empty runs folder gives back each point's metrics and a
completion marker that `ilf_sweep` accepts (its overrides), without the tools' folder; the plain rows
get their PSNR against the 20-step samples on save (computed here independently with numpy); the 20-step
point is not restored while its samples (every row's PSNR reference) are missing.

    python3 tests/acceleration_records_test.py SOURCE_DIR
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np


def write_samples(path, array):
    """An ilf_eval --write-samples file: one float32 tensor "samples" in safetensors."""
    data = array.astype("<f4").tobytes()
    header = json.dumps({"samples": {"dtype": "F32", "shape": list(array.shape), "data_offsets": [0, len(data)]}}).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + data)


def write_point(runs, sweep, point, metrics, overrides):
    folder = os.path.join(runs, sweep, point)
    os.makedirs(folder)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    with open(os.path.join(folder, "done_eval.json"), "w") as f:
        json.dump({"stage": "eval", "point": point, "overrides": overrides, "command": ["/somewhere/ilf_eval"],
                   "seconds": 1.5, "finished_at": "2026-12-08T04:00:00Z"}, f)


def main():
    source = sys.argv[1]
    script = os.path.join(source, "scripts", "acceleration", "records.py")
    work = tempfile.mkdtemp(prefix="acceleration_records_")
    runs, records, fresh = (os.path.join(work, d) for d in ("runs", "records", "fresh"))
    rng = np.random.default_rng(0)
    reference = rng.uniform(-1, 1, (4, 1, 3, 3)).astype(np.float32).astype(np.float64)
    noisy = (reference + rng.normal(0, 0.1, reference.shape)).astype(np.float32).astype(np.float64)
    write_point(runs, "baseline", "p000_sampling.steps=20", {"fid": 38.0, "settings": {"method": "baseline", "steps": 20}},
                ["sampling.method=baseline", "sampling.steps=20"])
    write_point(runs, "baseline", "p001_sampling.steps=12", {"fid": 39.0, "settings": {"method": "baseline", "steps": 12}},
                ["sampling.method=baseline", "sampling.steps=12"])
    write_point(runs, "fora", "p000_x", {"fid": 45.0, "psnr_vs_reference": 30.0, "settings": {"method": "fora", "steps": 20}},
                ["sampling.method=fora"])
    os.makedirs(os.path.join(runs, "fora", "p001_unfinished"))  # no marker: not saved
    write_samples(os.path.join(runs, "baseline", "samples_base20.safetensors"), reference)
    write_samples(os.path.join(runs, "baseline", "samples_base12.safetensors"), noisy)
    env = dict(os.environ, ILF_MACHINE="test machine")
    run = lambda *args, **kw: subprocess.run([sys.executable, script, *args, "--records", records], check=True, env=env, **kw)
    run("save", "--runs", runs)

    files = sorted(os.path.relpath(os.path.join(d, f), records) for d, _, fs in os.walk(records) for f in fs)
    assert files == ["baseline/p000_sampling.steps=20.json", "baseline/p001_sampling.steps=12.json", "fora/p000_x.json"], files
    with open(os.path.join(records, "baseline", "p001_sampling.steps=12.json")) as f:
        rec = json.load(f)
    mse = ((noisy - reference) ** 2).reshape(4, -1).mean(1)
    expected = float(np.mean(10 * np.log10(4.0 / mse)))
    assert abs(rec["metrics"]["psnr_vs_reference"] - expected) < 1e-9, (rec["metrics"], expected)
    assert "command" not in rec["marker"] and rec["machine"] == "test machine", rec

    # Restore into an empty folder without the reference samples: the 20-step point is left to run again.
    run("restore", "--runs", fresh)
    restored = sorted(os.path.relpath(d, fresh) for d, _, fs in os.walk(fresh) if "done_eval.json" in fs)
    assert restored == ["baseline/p001_sampling.steps=12", "fora/p000_x"], restored
    with open(os.path.join(fresh, "fora", "p000_x", "done_eval.json")) as f:
        assert json.load(f)["overrides"] == ["sampling.method=fora"]
    with open(os.path.join(fresh, "fora", "p000_x", "metrics.json")) as f:
        assert json.load(f)["fid"] == 45.0
    # With the samples there, it is restored too; a point already in the folder is left as it is.
    os.makedirs(os.path.join(fresh, "baseline"), exist_ok=True)
    write_samples(os.path.join(fresh, "baseline", "samples_base20.safetensors"), reference)
    with open(os.path.join(fresh, "fora", "p000_x", "metrics.json"), "w") as f:
        json.dump({"fid": 1.0}, f)
    run("restore", "--runs", fresh)
    assert os.path.exists(os.path.join(fresh, "baseline", "p000_sampling.steps=20", "done_eval.json"))
    with open(os.path.join(fresh, "fora", "p000_x", "metrics.json")) as f:
        assert json.load(f)["fid"] == 1.0
    # Saving again from another machine keeps where a point was measured.
    env["ILF_MACHINE"] = "another machine"
    run("save", "--runs", runs)
    with open(os.path.join(records, "fora", "p000_x.json")) as f:
        assert json.load(f)["machine"] == "test machine"
    print("acceleration records: save, restore and the PSNR of plain rows as expected")


if __name__ == "__main__":
    main()
