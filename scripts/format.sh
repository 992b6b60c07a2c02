#!/usr/bin/env bash
# The project's C++ formatting: .clang-format applied by clang-format 14 (Debian's clang-format-14; other
# versions break lines differently, so the check insists on 14) to every tracked .cpp and .h file.
#   scripts/format.sh           rewrite the files in place
#   scripts/format.sh --check   list the files that differ and exit 1 (CI runs this); change nothing
# CLANG_FORMAT=/path/to/clang-format-14 picks the program.
set -euo pipefail
cd "$(dirname "$0")/.."
program=${CLANG_FORMAT:-$(command -v clang-format-14 || command -v clang-format || true)}
if [ -z "$program" ]; then
  echo "format.sh: clang-format 14 not found (Debian: apt-get install clang-format-14)" >&2
  exit 2
fi
version=$("$program" --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p')
if [ "$version" != 14 ]; then
  echo "format.sh: $program is clang-format $version; the project's style is checked with 14" >&2
  exit 2
fi
[ -f .clang-format ] || { echo "format.sh: .clang-format is missing" >&2; exit 2; }
mapfile -t files < <(git ls-files '*.cpp' '*.h')
if [ "${1:-}" = --check ]; then
  differ=()
  for f in "${files[@]}"; do
    "$program" --style=file "$f" | cmp -s - "$f" || differ+=("$f")
  done
  if [ ${#differ[@]} -gt 0 ]; then
    printf 'format.sh: not formatted (run scripts/format.sh): %s\n' "${differ[@]}" >&2
    exit 1
  fi
  echo "format.sh: ${#files[@]} files formatted"
else
  "$program" --style=file -i "${files[@]}"
fi
