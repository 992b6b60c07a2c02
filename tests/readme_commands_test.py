#!/usr/bin/env python3
"""Runs every command the README shows, so that the docs cannot drift from the tools.

Every line of every ```bash block of README.md (continuations joined, comments stripped) is a command.
It runs in a scratch folder holding copies of configs/ and models/ (commands write there, e.g.
ilf_calibrate writes models/fashion_mnist/teacache.json), with build/ and tests/ linked in, in README
order (later commands use what earlier ones wrote: a router, reference samples, a run to resume).
A command runs as written unless a rule below matches it: long ones get smaller sizes (the flags and
values they take are unchanged), and the few that cannot run here are skipped with the reason printed.
A rule that matches no README command is an error too, so the table cannot go stale.

    python3 tests/readme_commands_test.py BUILD_DIR SOURCE_DIR [--only SUBSTRING] [--keep]
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

# (pattern searched in the command, what to do): "skip: reason", or a list of (regex, replacement)
# applied in order. The first matching rule wins.
RULES = [
    (r"build-pip/", "skip: needs the pip-torch build; CI's pip-torch-cuda-check and pip-torch-tests stages run these"),
    (r"^ctest ", "skip: the test suite itself (it runs this test)"),
    (r"^pip install torch", "skip: a 2.6 GB download; CI's pip-torch-install stage installs it (scripts/ci/install_pip_torch.sh)"),
    (r"^bash scripts/build_with_pip_torch.sh", "skip: CI's pip-torch-build stage runs it (a second full build)"),
    (r"--device cuda", "skip: needs a CUDA GPU (docs/results/gpu.md has the GPU runs)"),
    (r"ilf_sample --config configs/pixart_alpha_512\.json .*--plan", []),  # a plan reads no weights: runs as written
    (r"configs/(train/)?pixart_(alpha|sigma)_\d+\.json", "skip: needs the real PixArt weights, which cannot be downloaded here"),
    (r"^bash scripts/setup.sh && ", [(r"^bash scripts/setup.sh && ", "")]),  # CI's first stage runs setup.sh
    (r"^bash scripts/ci/sanitizers.sh", "skip: CI's sanitizers stage runs it (a clang build of several minutes)"),
    (r"^bash scripts/fuzz.sh", "skip: fuzzing takes an hour; CI replays the corpora it grows"),
    (r"^cmake --install build --prefix /opt/ilf", [(r"/opt/ilf", "install-prefix")]),
    (r"ilf_forward --weights W --inputs I --out O",
     [(r"--weights W --inputs I --out O \[--config C\] \[--set (\S+)\]",
       r"--weights tests/data/dit_tiny.weights.safetensors --inputs tests/data/dit_tiny.io.safetensors "
       r"--out forward.safetensors --set model.num_heads=2")]),
    (r"ilf_train .*training.mode=l2c", [(r"training.steps=\d+", "training.steps=1"),
                                        (r"training.batch_size=\d+", "training.batch_size=2"),
                                        (r"l2c.trajectories=\d+", "l2c.trajectories=2")]),
    (r"ilf_train .*training.mode=ilf", [(r"$", " --set training.steps=2 --set training.checkpoint_every=1")]),
    (r"ilf_train --config configs/fashion_mnist.json", [(r"$", " --set training.steps=2")]),
    (r"ilf_eval ", [(r"--num-samples \d+", "--num-samples 16"), (r"--batch \d+", "--batch 8")]),
    (r"ilf_search |runs/search/best.json",
     "skip: run by the test Search.ReadmeCommandsSearchResumeAndTheBestConfigSamples (a two-candidate search)"),
    (r"ilf_bench --config", [(r"--batch \d+", "--batch 2 --repeats 1 --warmup 0")]),
    (r"ilf_calibrate ", [(r"$", " --num-samples 8 --batch 8")]),
    # The server runs in the background on a free port (saved in serve.port) until the README's kill.
    (r"ilf_serve --config configs/fashion_mnist\.json --port 8080 &$",
     [(r"--port 8080 &$", "--port 0 > serve.log 2>&1 & echo $! > serve.pid; for i in $(seq 600); do "
                          "grep -o 'listening on http://127.0.0.1:[0-9]*' serve.log | grep -o '[0-9]*$' > serve.port "
                          "&& exit 0; sleep 0.1; done; cat serve.log; exit 1")]),
    (r"127\.0\.0\.1:8080", [(r"127\.0\.0\.1:8080", "127.0.0.1:$(cat serve.port)")]),
    # ... and must exit after it (gone, or a zombie: its parent shell has exited already).
    (r"^kill %1$", [(r"%1$", "$(cat serve.pid); for i in $(seq 300); do state=$(awk '{ print $3 }' /proc/$(cat serve.pid)/stat "
                             "2> /dev/null); [ -z \"$state\" ] || [ \"$state\" = Z ] && exit 0; sleep 0.1; done; "
                             "echo 'ilf_serve did not exit after SIGTERM'; exit 1")]),
]


def readme_commands(readme):
    commands, block = [], None
    for line in open(readme, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("```"):
            block = [] if block is None and line.strip() == "```bash" else None
            continue
        if block is None:
            continue
        if commands and commands[-1].endswith("\\"):
            commands[-1] = commands[-1][:-1].rstrip() + " " + line.strip()
        else:
            commands.append(line.strip())
    cleaned = []
    for c in commands:
        c = re.sub(r"\s+#.*$", "", c).strip()  # trailing comments ("# -> models/...")
        if c and not c.startswith("#"):
            cleaned.append(c)
    return cleaned


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    if only:
        args.remove(only)
    build, source = (os.path.abspath(a) for a in args)
    work = tempfile.mkdtemp(prefix="ilf-readme-")
    for folder in ("configs", "models"):
        shutil.copytree(os.path.join(source, folder), os.path.join(work, folder))
    os.symlink(build, os.path.join(work, "build"))
    os.symlink(os.path.join(source, "tests"), os.path.join(work, "tests"))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")

    commands = readme_commands(os.path.join(source, "README.md"))
    used, failures, ran, skipped = set(), [], 0, 0
    for command in commands:
        rule = next((i for i, (pattern, _) in enumerate(RULES) if re.search(pattern, command)), None)
        action = RULES[rule][1] if rule is not None else []
        if rule is not None:
            used.add(rule)
        if only and only not in command:
            continue
        if isinstance(action, str):
            print(f"SKIP {command}\n     ({action[len('skip: '):]})")
            skipped += 1
            continue
        run = command
        for pattern, replacement in action:
            run = re.sub(pattern, replacement, run)
        start = time.time()
        result = subprocess.run(["bash", "-c", run], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        ran += 1
        status = "ok  " if result.returncode == 0 else f"FAIL (exit {result.returncode})"
        print(f"{status} {time.time() - start:5.1f} s  {run}")
        if result.returncode != 0:
            print("     " + "\n     ".join(result.stdout.strip().splitlines()[-15:]))
            failures.append(command)
    stale = [RULES[i][0] for i in range(len(RULES)) if i not in used]
    for pattern in stale:
        print(f"FAIL a rule matches no README command (remove it): {pattern}")
    print(f"readme commands: {ran} ran, {skipped} skipped, {len(failures)} failed")
    if "--keep" in sys.argv:
        print(f"scratch folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures or (stale and not only) else 0


if __name__ == "__main__":
    sys.exit(main())
