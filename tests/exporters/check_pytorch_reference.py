"""The plain-PyTorch reference (scripts/bench_pytorch_reference.py) on torch 2.x, where its attention is
F.scaled_dot_product_attention, against our forward on the CPU.

The GPU comparison of ilf_bench with eager PyTorch / CUDA graphs / torch.compile times this reference, so
it must compute our function. ilf_bench --dump-forward writes the weights, inputs and our float32
forward of each test-size preset (DiT; PixArt-alpha; alpha-MS with size conditioning; sigma with q/k
LayerNorm and pe_interpolation 2; captions half masked) and of the embedded Fashion-MNIST DiT; the
reference's --check must agree within 1e-5 (max|ours - reference| / max|reference|) on every file.
Skipped where the Python has torch 1.x (no SDPA: the reference then runs the explicit softmax, which
the Debian build's tests do not need to re-prove).
"""
import json
import os
import sys

from common import SKIPPED, SOURCE_DIR, Check, python_script, run

TOLERANCE = 1e-5
PRESETS = ["dit-tiny", "pixart-tiny", "pixart-tiny-ms", "pixart-sigma-tiny"]


def main():
    check = Check(__doc__.splitlines()[0], ["torch", "numpy"])
    import torch
    import torch.nn.functional as F
    if not hasattr(F, "scaled_dot_product_attention"):
        print(f"SKIPPED: torch {torch.__version__} has no scaled_dot_product_attention (this check is for torch 2.x)")
        sys.exit(SKIPPED)
    work = check.work_dir("pytorch_reference")
    prefix = os.path.join(work, "dump_")
    command = [check.tool("ilf_bench"), "--device", "cpu", "--method", "baseline-1", "--warmup", "0", "--repeats", "1",
               "--dump-forward", prefix, "--config", os.path.join(SOURCE_DIR, "configs", "fashion_mnist.json")]
    for preset in PRESETS:
        command += ["--preset", preset]
    run(command, "ilf_bench --dump-forward")
    dumps = sorted(os.path.join(work, name) for name in os.listdir(work) if name.startswith("dump_"))
    check.expect("one dump per model", len(dumps) == len(PRESETS) + 1, ", ".join(os.path.basename(d) for d in dumps))

    results = os.path.join(work, "check.json")
    run(python_script("bench_pytorch_reference.py") + ["--check", *dumps, "--tol", str(TOLERANCE), "--json", results],
        "bench_pytorch_reference.py --check")
    with open(results) as f:
        rows = json.load(f)["checks"]
    for row in rows:
        check.expect(f"{row['model']}: max relative error {row['max_relative_error']:.2e} with SDPA (torch {row['torch']})",
                     row["max_relative_error"] <= TOLERANCE)
    check.expect("every dump checked", len(rows) == len(dumps))
    check.finish()


if __name__ == "__main__":
    main()
