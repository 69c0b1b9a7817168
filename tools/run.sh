#!/usr/bin/env bash
# One entry point for newcomers and CI: sets up what a job needs, then runs it.
#   bash tools/run.sh demo   # core-only venv, then the embedded routing demo (no download)
#   bash tools/run.sh test   # full venv (every extra, pinned), the whole test suite,
#                            # then the core tests again under numpy 2 without the heavy extras,
#                            # then the int8-export tests in the quantize venv (numpy 2, onnx>=1.16)
#   bash tools/run.sh study  # the SST-2 routing study (needs ../shared; see docs/sst2-study.md)
#   bash tools/run.sh int8   # the int8 MiniLM models (quantize venv) for the benchmarks and the MPNet study
#   bash tools/run.sh bench  # int8 models, then benchmarks/bench_backends.py (docs/backends.md)
#   bash tools/run.sh study-mpnet  # int8 models, then examples/sst2_mpnet_pair.py (docs/sst2-study.md)
#   bash tools/run.sh confroute ARGS...  # the confroute CLI in the full venv (e.g. `evaluate ...`)
set -euo pipefail
shopt -s inherit_errexit  # a failed install inside $(full_venv) must stop the script
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
# DeepSparse calls home at import unless told not to; tests block sockets to prove no backend does.
export NM_DISABLE_ANALYTICS=1 PIP_DISABLE_PIP_VERSION_CHECK=1

venv() {  # venv DIR: create once, print its python
  [ -x "$1/bin/python" ] || "$PY" -m venv "$1"
  echo "$1/bin/python"
}

pip_install() {  # pip_install PY ARGS...: a quiet install, its messages on stderr
  # (pip warns once per package about this machine's unused local index; the filter drops that
  # noise only, and a failed install still fails: pipefail)
  local py=$1
  shift
  "$py" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; } >&2
}

installed_for() {  # installed_for DIR FILES...: true when DIR was installed for exactly these files
  # The stamp holds a hash of pyproject.toml and the constraints: pip runs again only when they
  # change (a check by pip itself costs ~13 s on this machine, every call).
  local dir=$1
  shift
  [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$(cat "$@" | sha256sum | cut -d' ' -f1)" ]
}

stamp() {  # stamp DIR FILES...: record what DIR was installed for
  local dir=$1
  shift
  cat "$@" | sha256sum | cut -d' ' -f1 >"$dir/.stamp"
}

full_venv() {  # the venv with every extra, pinned; prints its python
  local py
  py=$(venv .venv)
  if ! installed_for .venv pyproject.toml constraints/py311.txt; then
    # torch==2.13.0 (CPU) is pinned in the constraints: a looser spec pulls a multi-GB CUDA build.
    pip_install "$py" -c constraints/py311.txt -e ".[all,test]"
    stamp .venv pyproject.toml constraints/py311.txt
  fi
  echo "$py"
}

quantize_venv() {  # numpy 2 + ONNX Runtime's quantisation tools (cannot live with deepsparse); prints its python
  local py
  py=$(venv .venv-quantize)
  # torch (CPU, 2.13.0 in the constraints) builds the tiny test model; the constraints pin the rest.
  "$py" -m pip install -q -c constraints/quantize-py311.txt -e ".[test,quantize,export]" 2>&1 | { grep -v "^WARNING: Location" || true; } >&2
  echo "$py"
}

case "${1:-}" in
  demo)
    py=$(venv .venv-demo)
    pip_install "$py" -e .
    "$py" -m confroute demo "${@:2}"
    ;;
  test)
    py=$(full_venv)
    # MLServer (the real model server the serving tests start) lives in its own venv: built once.
    bash tools/mlserver_venv.sh
    # The llama.cpp OpenAI-compatible server (SmolLM2-135M) for the LLM-stage tests: its venv is
    # built once from the llama-cpp-python sdist (the wheel is cached in ~/.cache/confroute/wheels).
    bash tools/llama_server.sh
    "$py" -m pytest -q "${@:2}"
    # The architecture and the types are checked too: layers (import-linter) and mypy.
    "$(dirname "$py")/lint-imports"
    "$py" -m mypy src/confroute
    # The core must also work with numpy 2 when the deepsparse extra is absent.
    py2=$(venv .venv-numpy2)
    pip_install "$py2" -e ".[test]" "numpy>=2"
    "$py2" -c "import numpy; assert numpy.__version__ >= '2', numpy.__version__; print('numpy', numpy.__version__)"
    "$py2" -m pytest -q -p no:cacheprovider "${@:2}"
    # int8 export: ONNX Runtime's quantisation tools need onnx>=1.16 and numpy 2, so these tests
    # skip in the full venv and run here, on a really quantised tiny BERT.
    py3=$(quantize_venv)
    "$py3" -m pytest -q -p no:cacheprovider -m quantize tests/predictors
    ;;
  int8)
    py=$(quantize_venv)
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
    echo "usage: bash tools/run.sh demo|test|study|int8|bench|study-mpnet|confroute [extra args]" >&2
    exit 2
    ;;
esac
