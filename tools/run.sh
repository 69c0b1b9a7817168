#!/usr/bin/env bash
# One entry point for newcomers and CI: sets up what a job needs, then runs it.
#   bash tools/run.sh demo   # the embedded routing demo (no download): runs in a test venv when one is
#                            # already installed, else in a light core-only venv (.venv-demo, ~1 min)
#   bash tools/run.sh test   # the whole check, in two venvs (see "test" below): 15-20 min and 3.3 GB
#                            # the first time on a quiet 2-core machine (README.md, "Two commands")
#   bash tools/run.sh dist   # build the sdist and the wheel into dist/ and check them (twine, contents)
#   bash tools/run.sh study  # the SST-2 routing study (needs ../shared; see docs/sst2-study.md)
#   bash tools/run.sh int8   # the int8 MiniLM models (numpy-2 venv) for the benchmarks and the MPNet study
#   bash tools/run.sh bench  # int8 models, then benchmarks/bench_backends.py (docs/backends.md)
#   bash tools/run.sh study-mpnet  # int8 models, then examples/sst2_mpnet_pair.py (docs/sst2-study.md)
#   bash tools/run.sh confroute ARGS...  # the confroute CLI in the full venv (e.g. `evaluate ...`)
#   bash tools/run.sh venvs [full|numpy2]  # only build (or check) the test venvs
#
# The venvs (each installed once; see ensure_venv):
#   .venv           every extra of `all` + test, pinned by constraints/py311.txt (numpy < 2: DeepSparse)
#   .venv-quantize  numpy 2: the core tests again without DeepSparse, the int8 export tests (onnx >= 1.16),
#                   and MLServer for the serving tests (protobuf < 7); pinned by constraints/quantize-py311.txt
#   .venv-demo      core only, built by `demo` when neither test venv is installed
# The two test venvs store the files they share (torch, ...) once: tools/dedupe_venvs.py.
set -euo pipefail
shopt -s inherit_errexit  # a failed install inside $(full_venv) must stop the script
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
# DeepSparse calls home at import unless told not to; tests block sockets to prove no backend does.
export NM_DISABLE_ANALYTICS=1 PIP_DISABLE_PIP_VERSION_CHECK=1

pip_install() {  # pip_install PY ARGS...: a quiet install, its messages on stderr
  # (pip warns once per package about this machine's unused local index; the filter drops that
  # noise only, and a failed install still fails: pipefail)
  local py=$1
  shift
  "$py" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; } >&2
}

wanted() {  # wanted CONSTRAINTS SPEC...: the stamp of an install: pyproject.toml, the constraints, the spec
  { cat pyproject.toml "$1"; shift; echo "$*"; } | sha256sum | cut -d' ' -f1
}

is_installed() {  # is_installed DIR CONSTRAINTS SPEC...: DIR holds exactly this install (no pip run)
  local dir=$1
  shift
  [ -x "$dir/bin/python" ] && [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$(wanted "$@")" ]
}

ensure_venv() {  # ensure_venv DIR CONSTRAINTS SPEC...: DIR installed with SPEC under CONSTRAINTS; prints its python
  # The stamp file holds a hash of pyproject.toml, the constraints and the spec: pip runs only when
  # one of them changed (a no-op `pip install` still costs ~13 s on a 2-core machine, every call).
  # The package is installed editable, so edits under src/ need no reinstall.
  local dir=$1 constraints=$2
  if ! is_installed "$@"; then
    [ -x "$dir/bin/python" ] || "$PY" -m venv "$dir"
    rm -f "$dir/.stamp"
    pip_install "$dir/bin/python" -c "$constraints" "${@:3}"
    wanted "${@:2}" >"$dir/.stamp"
  fi
  echo "$dir/bin/python"
}

# The two test venvs: their specs are here only.
FULL=(.venv constraints/py311.txt -e ".[all,test]")
# torch (CPU, 2.13.0 in the constraints) builds the tiny test model for the export tests.
NUMPY2=(.venv-quantize constraints/quantize-py311.txt -e ".[test,quantize,export]" mlserver)
DEMO=(.venv-demo constraints/quantize-py311.txt -e .)

full_venv() { ensure_venv "${FULL[@]}"; }      # every extra, numpy < 2 (DeepSparse); prints its python
numpy2_venv() { ensure_venv "${NUMPY2[@]}"; }  # numpy 2, quantize + export + MLServer; prints its python

dedupe() {  # the files the venvs hold at the same release (torch, numpy, ...) are stored once
  [ -x .venv/bin/python ] || return 0
  local other
  for other in .venv-quantize .cache/kserve-venv .cache/llama-venv; do
    [ -x "$other/bin/python" ] && .venv/bin/python tools/dedupe_venvs.py .venv "$other"
  done
  return 0
}

demo_venv() {  # an installed test venv if there is one (no pip run), else the core-only venv
  if is_installed "${FULL[@]}"; then echo .venv/bin/python
  elif is_installed "${NUMPY2[@]}"; then echo .venv-quantize/bin/python
  else ensure_venv "${DEMO[@]}"
  fi
}

dist() {  # dist PY: build the sdist and the wheel (the wheel from the sdist) into dist/ and check them
  local py=$1
  local log
  log=$(mktemp)
  rm -rf dist
  "$py" -m build --outdir dist . >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; return 1; }
  rm -f "$log"
  "$py" -m twine check --strict dist/*
  "$py" tools/check_dist.py dist
}

case "${1:-}" in
  demo)
    py=$(demo_venv)
    "$py" -m confroute demo "${@:2}"
    ;;
  venvs)  # venvs [full|numpy2]: both by default
    case "${2:-both}" in full | both) full_venv >/dev/null ;; esac
    case "${2:-both}" in numpy2 | both) numpy2_venv >/dev/null ;; esac
    dedupe
    ;;
  dist)
    dist "$(full_venv)"
    ;;
  test)
    py=$(full_venv)
    py2=$(numpy2_venv)  # also the MLServer the serving tests start (tools/mlserver/launch.py)
    dedupe
    for old in .venv-numpy2 .cache/mlserver-venv; do  # venvs of 0.1 no longer used
      [ ! -d "$old" ] || echo "note: $old is no longer used; rm -rf $old frees its disk" >&2
    done
    # The release artefacts first (cheap): sdist + wheel, twine check, what each one holds. Then the
    # built wheel is installed in a fresh venv outside the repository on every Python 3.10-3.13
    # found (tests/test_install.py, tools/check_wheel.sh) and runs the README example.
    # The llama.cpp OpenAI-compatible server (SmolLM2-135M) for the LLM-stage tests: its venv is
    # built once from the llama-cpp-python sdist (the wheel is cached in ~/.cache/confroute/wheels).
    bash tools/llama_server.sh
    # KServe's Python client (kserve 0.21.0) for tests/test_serve_binary.py: its own venv (its pins
    # clash with the full venv's), built once.
    bash tools/kserve_venv.sh
    dedupe
    dist "$py"
    CONFROUTE_CHECK_WHEEL=$(ls "$PWD"/dist/confroute-*.whl) "$py" -m pytest -q "${@:2}"
    # The architecture and the types are checked too: layers (import-linter) and mypy.
    "$(dirname "$py")/lint-imports"
    "$py" -m mypy src/confroute
    # The whole suite again under numpy 2, without DeepSparse: the core, the ONNX / Hugging Face
    # backends and the int8 export (quantize-marked tests, which skip in the full venv).
    "$py2" -c "import numpy; assert numpy.__version__ >= '2', numpy.__version__; print('numpy', numpy.__version__)"
    "$py2" -m pytest -q -p no:cacheprovider "${@:2}"
    ;;
  int8)
    py=$(numpy2_venv)
    "$py" benchmarks/make_int8.py "${@:2}"
    ;;
  bench)
    bash tools/run.sh int8
    py=$(full_venv)
    "$py" benchmarks/bench_backends.py "${@:2}"
    ;;
  study-mpnet)
    bash tools/run.sh int8
    py=$(full_venv)
    "$py" examples/sst2_mpnet_pair.py "${@:2}"
    ;;
  study)
    py=$(full_venv)
    "$py" examples/sst2_routing.py "${@:2}"
    ;;
  confroute)
    py=$(full_venv)
    "$py" -m confroute "${@:2}"
    ;;
  *)
    echo "usage: bash tools/run.sh demo|test|dist|study|int8|bench|study-mpnet|confroute|venvs [extra args]" >&2
    exit 2
    ;;
esac
