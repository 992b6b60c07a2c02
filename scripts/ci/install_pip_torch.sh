#!/usr/bin/env bash
# CI: a virtual environment with the PyPI torch wheel (CUDA-enabled LibTorch inside) for the second
# build (scripts/build_with_pip_torch.sh). Both the wheels and the environment are cached under
# ~/.cache/ilf, so only the first run downloads (measured 2026-11-29: torch 2.11.0 and its 28 CUDA /
# Python dependency wheels, 2.6 GB, 62 s to download; the environment is 4.6 GB).
#   TORCH_SPEC      the pip requirement (default torch==2.11.0: the GPU machine's version, cu130)
#   ILF_TORCH_VENV  the environment (default ~/.cache/ilf/venv-<spec>); prints its python at the end
set -euo pipefail
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
