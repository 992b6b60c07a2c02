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
#   ILF_EXPORTER_CHECK_PACKAGES=0  skips the exporter-check libraries
set -euo pipefail
REQUIREMENTS=$(cd "$(dirname "$0")" && pwd)/exporter_check_requirements.txt
TORCH_SPEC=${TORCH_SPEC:-torch==2.11.0}
CACHE=${ILF_CACHE:-$HOME/.cache/ilf}
VENV=${ILF_TORCH_VENV:-$CACHE/venv-$(echo "${TORCH_SPEC//==/-}" | tr -c 'A-Za-z0-9.\n-' _)}
WHEELS=$CACHE/wheels
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

# The exporter-check libraries, at their pinned versions (cached like torch: nothing to do when present).
if [ "${ILF_EXPORTER_CHECK_PACKAGES:-1}" = 1 ]; then
  if "$PY" - "$REQUIREMENTS" <<'PYEOF' 2>/dev/null
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
    echo "install_pip_torch: exporter-check libraries already installed"
  else
    start=$SECONDS
    if ! "$VENV/bin/pip" install -q --no-index --find-links "$WHEELS" -r "$REQUIREMENTS" 2>/dev/null; then
      "$VENV/bin/pip" download -q -d "$WHEELS" -r "$REQUIREMENTS"
      "$VENV/bin/pip" install -q --no-index --find-links "$WHEELS" -r "$REQUIREMENTS"
    fi
    echo "install_pip_torch: exporter-check libraries installed in $((SECONDS - start)) s"
  fi
  "$PY" -c 'import importlib.metadata as md; print("install_pip_torch:", ", ".join(p + " " + md.version(p) for p in ("diffusers", "transformers", "safetensors", "sentencepiece")))'
fi
