#!/usr/bin/env bash
# CI: a virtual environment with the PyPI torch wheel (CUDA-enabled LibTorch inside) for the second
# build (scripts/build_with_pip_torch.sh). Both the wheels and the environment are cached under
# ~/.cache/ilf, so only the first run downloads (measured 2026-11-29: torch 2.11.0 and its 28 CUDA /
# Python dependency wheels, 2.6 GB, 62 s to download; the environment is 4.6 GB).
# It also gets the pinned libraries the exporter checks (tests/exporters/) compare against:
# scripts/ci/exporter_check_requirements.txt (diffusers, transformers, safetensors, sentencepiece, ...;
# measured 2026-11-29: 17 s to download, 33 s to install, nothing when already installed).
#   TORCH_SPEC      the pip requirement (default torch==2.11.0: the GPU machine's version, cu130)
#   ILF_TORCH_VENV  the environment (default ~/.cache/ilf/venv-<spec>); prints its python at the end
#   ILF_EXPORTER_CHECK_PACKAGES=0  skips the exporter-check libraries, the metric checks' packages
#   (scripts/ci/metric_check_requirements.txt, installed the same way) and the openai client of the
#   serving test (scripts/ci/serve_check_requirements.txt, likewise)
# And what tests/metrics/check_image_reward.py needs beyond them: image-reward 1.5 and openai-clip 1.0.1
# in the environment without their dependencies (their pins do not install on this Python; what they
# import comes from metric_check_requirements.txt), and the older transformers of
# scripts/ci/image_reward_requirements.txt in a folder of its own, ILF_CACHE/image-reward-site, which
# only that check puts on sys.path (the environment keeps transformers 5.24).
#   ILF_IMAGE_REWARD_PACKAGES=0  skips both
set -euo pipefail
REQUIREMENTS=$(cd "$(dirname "$0")" && pwd)/exporter_check_requirements.txt
METRIC_REQUIREMENTS=$(cd "$(dirname "$0")" && pwd)/metric_check_requirements.txt
SERVE_REQUIREMENTS=$(cd "$(dirname "$0")" && pwd)/serve_check_requirements.txt
IMAGE_REWARD_REQUIREMENTS=$(cd "$(dirname "$0")" && pwd)/image_reward_requirements.txt
TORCH_SPEC=${TORCH_SPEC:-torch==2.11.0}
CACHE=${ILF_CACHE:-$HOME/.cache/ilf}
VENV=${ILF_TORCH_VENV:-$CACHE/venv-$(echo "${TORCH_SPEC//==/-}" | tr -c 'A-Za-z0-9.\n-' _)}
WHEELS=$CACHE/wheels
IMAGE_REWARD_SITE=$CACHE/image-reward-site
PY=$VENV/bin/python
mkdir -p "$WHEELS"
if [ -x "$PY" ] && "$PY" - "$TORCH_SPEC" <<'PYEOF' 2>/dev/null
import sys, importlib.metadata as md
from pip._vendor.packaging.requirements import Requirement
req = Requirement(sys.argv[1])
sys.exit(0 if req.specifier.contains(md.version("torch"), prereleases=True) else 1)
PYEOF
then
  echo "install_pip_torch: cached environment $VENV"
else
  [ -x "$PY" ] || python3 -m venv "$VENV"
  start=$SECONDS
  before=$(du -sb "$WHEELS" | cut -f1)
  if ! "$VENV/bin/pip" install -q --no-index --find-links "$WHEELS" "$TORCH_SPEC" 2>/dev/null; then
    "$VENV/bin/pip" download -q -d "$WHEELS" "$TORCH_SPEC"
    after=$(du -sb "$WHEELS" | cut -f1)
    echo "install_pip_torch: downloaded $(( (after - before) / 1000000 )) MB in $((SECONDS - start)) s"
    "$VENV/bin/pip" install -q --no-index --find-links "$WHEELS" "$TORCH_SPEC"
  fi
  echo "install_pip_torch: installed in $((SECONDS - start)) s (wheel cache $(du -sh "$WHEELS" | cut -f1))"
fi
"$PY" -c 'import torch; print("install_pip_torch: torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>/dev/null

# The exporter-check libraries, the metric checks' reference packages (tests/metrics/,
# scripts/ci/metric_check_requirements.txt) and the openai client (tests/serve/openai_client_test.py,
# scripts/ci/serve_check_requirements.txt), at their pinned versions (cached like torch: nothing to do
# when present).
if [ "${ILF_EXPORTER_CHECK_PACKAGES:-1}" = 1 ]; then
  for requirements in "$REQUIREMENTS" "$METRIC_REQUIREMENTS" "$SERVE_REQUIREMENTS"; do
    what=$(basename "$requirements" _requirements.txt | tr _ -)
    if "$PY" - "$requirements" <<'PYEOF' 2>/dev/null
import sys, importlib.metadata as md
from pip._vendor.packaging.requirements import Requirement
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        req = Requirement(line)
        if not req.specifier.contains(md.version(req.name), prereleases=True):
            sys.exit(1)
PYEOF
    then
      echo "install_pip_torch: $what libraries already installed"
    else
      start=$SECONDS
      if ! "$VENV/bin/pip" install -q --no-index --find-links "$WHEELS" -r "$requirements" 2>/dev/null; then
        "$VENV/bin/pip" wheel -q -w "$WHEELS" -r "$requirements"  # sdists built into wheels here, with their build dependencies from the index
        "$VENV/bin/pip" install -q --no-index --find-links "$WHEELS" -r "$requirements"
      fi
      echo "install_pip_torch: $what libraries installed in $((SECONDS - start)) s"
    fi
  done
  "$PY" -c 'import importlib.metadata as md; print("install_pip_torch:", ", ".join(p + " " + md.version(p) for p in ("diffusers", "transformers", "safetensors", "sentencepiece", "openai")))'
fi

# image-reward and openai-clip without their dependencies, and image-reward's transformers 4.x beside the
# environment (cached like the rest: nothing to do when present).
if [ "${ILF_IMAGE_REWARD_PACKAGES:-1}" = 1 ]; then
  start=$SECONDS
  if "$PY" -c 'import importlib.metadata as md, sys; sys.exit(0 if md.version("image-reward") == "1.5" and md.version("openai-clip") == "1.0.1" else 1)' 2>/dev/null; then
    echo "install_pip_torch: image-reward and openai-clip already installed"
  else
    if ! "$VENV/bin/pip" install -q --no-deps --no-index --find-links "$WHEELS" image-reward==1.5 openai-clip==1.0.1 2>/dev/null; then
      "$VENV/bin/pip" wheel -q --no-deps -w "$WHEELS" image-reward==1.5 openai-clip==1.0.1  # openai-clip is an sdist
      "$VENV/bin/pip" install -q --no-deps --no-index --find-links "$WHEELS" image-reward==1.5 openai-clip==1.0.1
    fi
  fi
  if "$PY" - "$IMAGE_REWARD_REQUIREMENTS" "$IMAGE_REWARD_SITE" <<'PYEOF' 2>/dev/null
import sys, importlib.metadata as md
from pip._vendor.packaging.requirements import Requirement
installed = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in md.distributions(path=[sys.argv[2]])}
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        req = Requirement(line)
        version = installed.get(req.name.lower().replace("_", "-"))
        if version is None or not req.specifier.contains(version, prereleases=True):
            sys.exit(1)
PYEOF
  then
    echo "install_pip_torch: image-reward's transformers already in $IMAGE_REWARD_SITE"
  else
    rm -rf "$IMAGE_REWARD_SITE"
    if ! "$VENV/bin/pip" install -q --no-deps --no-index --find-links "$WHEELS" --target "$IMAGE_REWARD_SITE" -r "$IMAGE_REWARD_REQUIREMENTS" 2>/dev/null; then
      "$VENV/bin/pip" wheel -q --no-deps -w "$WHEELS" -r "$IMAGE_REWARD_REQUIREMENTS"
      rm -rf "$IMAGE_REWARD_SITE"
      "$VENV/bin/pip" install -q --no-deps --no-index --find-links "$WHEELS" --target "$IMAGE_REWARD_SITE" -r "$IMAGE_REWARD_REQUIREMENTS"
    fi
    echo "install_pip_torch: image-reward's transformers installed in $IMAGE_REWARD_SITE"
  fi
  echo "install_pip_torch: image-reward packages ready in $((SECONDS - start)) s"
fi
