#!/usr/bin/env bash
# Install the built wheel as a user would, in a fresh venv OUTSIDE the repository, on every Python
# 3.10-3.13 found, and run the README's first example there (examples/quickstart.py: the README
# snippet word for word, with two tiny scikit-learn models), with the extra it needs (pandas, for
# `result.to_pandas()`).
#
#   bash tools/check_wheel.sh                  # 3.10 3.11 3.12 3.13, wheel built here first
#   bash tools/check_wheel.sh 3.12 3.13        # some versions only
#   WHEEL=dist/confroute-0.2.0-py3-none-any.whl bash tools/check_wheel.sh   # a wheel already built
#
# Interpreters: $PYENV_ROOT/versions/3.X*/bin/python (pyenv; ~/.pyenv by default), else python3.X on
# PATH. A version with no interpreter is reported and skipped; STRICT=1 makes that a failure.
# Each venv is made in a temporary folder (outside the repository, removed at the end) and the example
# runs from there, so `import confroute` can only find the installed wheel, never src/.
# Exit status: 0 every version found passed, 1 one failed, 3 none of the versions asked for was found.
# tests/test_install.py runs it (one test per version) when CONFROUTE_CHECK_WHEEL names a wheel, as
# `bash tools/run.sh test` does. Needs the network or a package index for numpy, scipy, scikit-learn
# and pandas; about 30-60 s per version on 2 cores.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EXTRA=${EXTRA:-pandas}
VERSIONS=("$@")
[ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(3.10 3.11 3.12 3.13)
export PIP_DISABLE_PIP_VERSION_CHECK=1

find_python() {  # find_python 3.X: print the path of a working Python 3.X, or nothing
  local candidate
  # (a pyenv shim on PATH exists for every installed version but fails unless that version is selected)
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/python "$(command -v "python$1" || true)"; do
    if [ -x "$candidate" ] && [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$1" ]; then
      echo "$candidate"
      return
    fi
  done
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/confroute-check-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
case "$WORK" in "$ROOT"/*) echo "the temporary folder $WORK is inside the repository" >&2; exit 1 ;; esac

if [ -z "${WHEEL:-}" ]; then  # build it with the first interpreter found (pip builds in isolation)
  for v in "${VERSIONS[@]}"; do
    builder=$(find_python "$v")
    [ -n "$builder" ] && break
  done
  [ -n "${builder:-}" ] || { echo "no Python ${VERSIONS[*]} found" >&2; exit 3; }
  "$builder" -m pip wheel -q --no-deps --wheel-dir "$WORK/dist" "$ROOT" >&2
  WHEEL=$(ls "$WORK"/dist/confroute-*.whl)
fi
WHEEL=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
VERSION=$(basename "$WHEEL" | cut -d- -f2)
cp "$ROOT/examples/quickstart.py" "$WORK/quickstart.py"
echo "wheel: $WHEEL (extra: $EXTRA)"

found=0 failed=0 missing=0
for v in "${VERSIONS[@]}"; do
  python=$(find_python "$v")
  if [ -z "$python" ]; then
    echo "Python $v: SKIPPED (no interpreter found)"
    missing=$((missing + 1))
    continue
  fi
  found=$((found + 1))
  start=$SECONDS
  venv="$WORK/venv-$v"
  log="$WORK/log-$v.txt"
  if (
    set -e
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --no-compile "$WHEEL[$EXTRA]"  # one run: compiling every module first costs more
    cd "$WORK"  # not the repository: only the installed wheel can be imported
    "$venv/bin/python" -c "
import sys, confroute
assert confroute.__version__ == '$VERSION', confroute.__version__
assert confroute.__file__.startswith('$venv/'), confroute.__file__
print('confroute', confroute.__version__, 'on Python', sys.version.split()[0], 'from', confroute.__file__)"
    "$venv/bin/confroute" --version
    "$venv/bin/python" quickstart.py
  ) >"$log" 2>&1; then
    versions=$("$venv/bin/python" -c "import numpy, scipy, sklearn, pandas; print(f'numpy {numpy.__version__}, scipy {scipy.__version__}, scikit-learn {sklearn.__version__}, pandas {pandas.__version__}')")
    echo "Python $v ($("$python" -c 'import sys; print(sys.version.split()[0])')): OK in $((SECONDS - start)) s ($versions)"
    grep -E "^chosen threshold|^quickstart OK" "$log" | sed 's/^/    /'
  else
    failed=$((failed + 1))
    echo "Python $v: FAILED in $((SECONDS - start)) s; its log:"
    sed 's/^/    /' "$log"
  fi
  rm -rf "$venv"
done

[ "$failed" -eq 0 ] || exit 1
[ "$found" -gt 0 ] || exit 3
if [ "$missing" -gt 0 ] && [ -n "${STRICT:-}" ]; then exit 1; fi
exit 0
