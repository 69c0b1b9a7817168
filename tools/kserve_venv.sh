#!/usr/bin/env bash
# Build (once) the virtualenv that holds KServe's Python client (kserve==0.21.0) for
# tests/test_serve_binary.py. kserve pulls its own server stack (fastapi, grpcio, kubernetes, ...),
# which clashes with the pins of the main venv, so it lives apart: the test runs the client in this
# venv as a subprocess against the confroute service. A no-op once installed.
# Usage: tools/kserve_venv.sh [VENV]  (default: .cache/kserve-venv under the repository root)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/.cache/kserve-venv}"
python="${PYTHON:-python3.11}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import kserve, httpx" 2>/dev/null; then
    exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "kserve==0.21.0" "numpy<3"
"$venv/bin/python" -c "import kserve; from kserve import InferenceRESTClient; print('kserve', kserve.__version__ if hasattr(kserve, '__version__') else '0.21.0')"
