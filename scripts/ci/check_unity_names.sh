#!/usr/bin/env bash
# CI: the library's sources are compiled in unity batches (CMakeLists.txt, ILF_UNITY_BUILD), so two files
# of one target must not define the same name at file scope (in an anonymous namespace or static): in
# one batch that is a redefinition, or worse, a call that silently picks the other file's overload.
# Lists every such name (universal-ctags) for the core library and for the experiments library.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v ctags > /dev/null || ! ctags --version | grep -q Universal; then
  [ "$(id -u)" -eq 0 ] || { echo "check_unity_names: install universal-ctags" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends universal-ctags
fi
clashes() {  # file-scope names defined in more than one of the files given
  ctags --c++-kinds=fvpsgcte --fields=+sK -f - "$@" |
    awk -F'\t' '$1 !~ /^__anon/ { scope = ""; for (i = 4; i <= NF; i++) if ($i ~ /^(namespace|class|struct|union|function|enum):/) scope = $i
                 if (scope ~ /__anon[0-9a-f]+$/ || ($0 ~ /\tfile:/ && scope !~ /^(function|class|struct|union|enum):/)) print $1 "\t" $2 }' |
    sort -u | awk -F'\t' '{ n[$1]++; f[$1] = f[$1] " " $2 } END { for (k in n) if (n[k] > 1) print "  " k ":" f[k] }' | sort
}
core=$(git ls-files 'src/*.cpp' | grep -v '^src/experiments/')
experiments=$(git ls-files 'src/experiments/*.cpp')
# shellcheck disable=SC2086
found=$( { clashes $core; clashes $experiments; } )
if [ -n "$found" ]; then
  echo "check_unity_names: names defined at file scope in more than one file of a unity-built library" \
       "(rename one, or share it through a header):" >&2
  echo "$found" >&2
  exit 1
fi
echo "check_unity_names: no file-scope name is defined twice in a library"
