#!/usr/bin/env bash
# Build (once) the virtualenv that runs MLServer for the serving tests and benchmark.
# MLServer pins protobuf<7 and fastapi<0.116, which clash with the full (DeepSparse, Ray Serve)
# environment, so it lives in the numpy-2 test venv, .venv-quantize, with the int8 export tools
# (pins in constraints/quantize-py311.txt). That venv holds confroute itself (editable) for the custom
# runtime in tools/mlserver/confroute_runtime.py. A no-op (no pip run) once the venv is installed.
set -euo pipefail
exec bash "$(dirname "$0")/run.sh" venvs numpy2
