#!/usr/bin/env python3
"""Fails when a layer of the library includes a layer above it (docs/design.md, "Layers").

Layers, lowest first; a file may include its own layer and the ones below:
  0 base        ilf/error.h, ilf/util/
  1 io          ilf/io/
  2 models      ilf/models/, ilf/text/
  3 feedback    ilf/feedback/
  4 accel       ilf/accel/
  5 sampling    ilf/sampling/
  6 training    ilf/training/, ilf/eval/
  7 config      ilf/config/
  8 pipelines   ilf/pipelines/
  9 experiments ilf/experiments/
 10 serve       ilf/serve/
Files under include/ilf/<dir>/ and src/<dir>/ belong to <dir>'s layer; tools/ and tests/ may include
anything. Usage: python3 scripts/ci/check_layers.py [repository root]
"""
import os
import re
import sys

LAYERS = {
    "util": 0, "io": 1, "models": 2, "text": 2, "feedback": 3, "accel": 4, "sampling": 5,
    "training": 6, "eval": 6, "config": 7, "pipelines": 8, "experiments": 9, "serve": 10,
}
INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]ilf/([^">]+)[">]', re.M)


def layer_of_include(path):
    """ilf/<dir>/... -> its layer; ilf/error.h -> 0."""
    first = path.split("/", 1)[0]
    if "/" not in path:
        return 0
    if first not in LAYERS:
        raise ValueError(f"unknown library folder ilf/{first}/ (add it to scripts/ci/check_layers.py and docs/design.md)")
    return LAYERS[first]


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    problems, checked = [], 0
    for base in ("include/ilf", "src"):
        for folder, _, files in os.walk(os.path.join(root, base)):
            rel = os.path.relpath(folder, os.path.join(root, base))
            if rel == ".":
                continue
            own = rel.split(os.sep)[0]
            if own not in LAYERS:
                problems.append(f"{base}/{rel}: unknown library folder (add it to scripts/ci/check_layers.py and docs/design.md)")
                continue
            for name in files:
                if not name.endswith((".h", ".cpp")):
                    continue
                path = os.path.join(folder, name)
                checked += 1
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                for included in INCLUDE.findall(text):
                    try:
                        target = layer_of_include(included)
                    except ValueError as e:
                        problems.append(f"{os.path.relpath(path, root)}: {e}")
                        continue
                    if target > LAYERS[own]:
                        problems.append(f"{os.path.relpath(path, root)} (layer {own}, {LAYERS[own]}) includes ilf/{included} "
                                        f"(layer {target}): a lower layer must not include a higher one")
    for p in problems:
        print("check_layers:", p)
    print(f"check_layers: {checked} files, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
