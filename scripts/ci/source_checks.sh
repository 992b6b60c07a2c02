#!/usr/bin/env bash
# CI: checks of the sources themselves, before anything is built (docs/design.md, "Layers"):
#  - no layer of the library includes a layer above it (scripts/ci/check_layers.py);
#  - no name defined at file scope in two files of a unity-built library (scripts/ci/check_unity_names.sh);
#  - no dynamic_cast to a model class and no family() string test outside the models layer (callers use
#    the Backbone interface; a cast to LibTorch's c10::Error, to shorten its message, is not one);
#  - no machine paths (/work/, /home/) in any tracked file;
#  - every C++ file is formatted with .clang-format (scripts/format.sh --check; installs Debian's
#    clang-format-14 when run as root without it).
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 scripts/ci/check_layers.py .
bash scripts/ci/check_unity_names.sh

outside_models=$(git ls-files 'src/*.cpp' 'src/*.h' 'include/*.h' 'tools/*.cpp' 'tools/*.h' |
                 grep -v -e '^src/models/' -e '^include/ilf/models/' || true)
if [ -n "$outside_models" ] &&
   grep -n -E 'dynamic_cast|family\(\) *[!=]=' $outside_models | grep -v -E 'dynamic_cast<const c10::Error\*>'; then
  echo "source_checks: the lines above downcast a backbone or test its family outside models/" >&2
  exit 1
fi
echo "source_checks: no dynamic_cast or family() test outside models/"

# No machine paths: the repository must not name the folders of the machines it was developed on.
if git grep -n -I -E '/work/|/home/' -- . ':!scripts/ci/source_checks.sh'; then
  echo "source_checks: the lines above name a machine path" >&2
  exit 1
fi

if ! command -v clang-format-14 >/dev/null; then
  [ "$(id -u)" -eq 0 ] || { echo "source_checks: install clang-format-14" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang-format-14
fi
bash scripts/format.sh --check
