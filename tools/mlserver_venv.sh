#!/usr/bin/env bash
# Build (once) the separate virtualenv that runs MLServer for the serving tests and benchmark.
# MLServer pins protobuf<7 and fastapi<0.116, which clash with the main (DeepSparse, Ray Serve)
# environment, so it lives in .cache/mlserver-venv with its own pins (constraints/mlserver.txt).
# It holds confroute itself (editable, core + onnxruntime + tokenizers) for the custom runtime in
# tools/mlserver/confroute_runtime.py. Re-running is a no-op once the venv works.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
VENV=.cache/mlserver-venv
if [ -x "$VENV/bin/mlserver" ] && "$VENV/bin/python" -c "import mlserver, onnxruntime, tokenizers, confroute" 2>/dev/null; then
  exit 0
fi
mkdir -p .cache
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -c constraints/mlserver.txt mlserver onnxruntime tokenizers -e . 2>&1 \
  | { grep -v "^WARNING: Location" || true; } >&2
"$VENV/bin/mlserver" --version >&2
