#!/usr/bin/env bash
# Look at the notebook's displays the way a user sees them: execute examples/routing_notebook.ipynb
# in a fresh kernel, render it to HTML with nbconvert (JupyterLab's look), and screenshot that page
# with headless Chromium (Debian package `chromium`).
#
#   bash tools/notebook_screenshot.sh [OUT_DIR]      (default OUT_DIR: docs/img)
#
# Writes OUT_DIR/notebook.png (the whole page, 1000 px wide: about a notebook cell on a laptop
# screen) and keeps the executed HTML next to it in a temporary folder (its path is printed).
# Python: $PYTHON, else .venv/bin/python, else python3; it needs the `test` extra (nbconvert,
# nbclient, ipykernel, matplotlib) and scikit-learn. This checkout's src/ goes first on the
# kernel's path. The SST-2 section runs only when the shared models are found
# ($CONFROUTE_SHARED, else ../shared of the checkout); otherwise it says it is skipped.
# Exit status: 0 done, 3 Chromium or nbconvert is missing (the message says which), other: failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/docs/img}
WIDTH=${SCREENSHOT_WIDTH:-1000}
PY=${PYTHON:-}
if [[ -z $PY ]]; then
  if [[ -x $ROOT/.venv/bin/python ]]; then PY=$ROOT/.venv/bin/python; else PY=python3; fi
fi
CHROME=""
for c in chromium chromium-browser google-chrome; do
  if command -v "$c" >/dev/null 2>&1; then CHROME=$(command -v "$c"); break; fi
done
if [[ -z $CHROME ]]; then
  echo "SKIPPED: no Chromium (Debian: apt-get install chromium)" >&2; exit 3
fi
if ! "$PY" -c "import nbconvert, nbclient, ipykernel" 2>/dev/null; then
  echo "SKIPPED: $PY lacks nbconvert/nbclient/ipykernel (pip install -e '.[test]')" >&2; exit 3
fi
if [[ -z ${CONFROUTE_SHARED:-} && -d $ROOT/../shared ]]; then
  export CONFROUTE_SHARED=$(cd "$ROOT/../shared" && pwd)
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/notebook_screenshot.XXXXXX")
mkdir -p "$OUT"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND=module://matplotlib_inline.backend_inline
# Execute in examples/ (as a user opening the notebook would) and render to HTML.
"$PY" -m nbconvert --to html --execute --ExecutePreprocessor.timeout=900 \
  --ExecutePreprocessor.kernel_name=python3 --output-dir "$WORK" --output notebook \
  "$ROOT/examples/routing_notebook.ipynb" >"$WORK/nbconvert.log" 2>&1 \
  || { cat "$WORK/nbconvert.log" >&2; exit 1; }
# Headless Chromium draws a window of WIDTH x 20000 px; the white space below the page is cut off.
"$CHROME" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
  --window-size="$WIDTH,20000" --virtual-time-budget=5000 \
  --screenshot="$WORK/full.png" "file://$WORK/notebook.html" >"$WORK/chromium.log" 2>&1 \
  || { cat "$WORK/chromium.log" >&2; exit 1; }
"$PY" - "$WORK/full.png" "$OUT/notebook.png" <<'PYEOF'
import sys
import numpy as np
from PIL import Image
img = Image.open(sys.argv[1]).convert("RGB")
a = np.asarray(img)
rows = np.nonzero((a < 250).any(axis=(1, 2)))[0]
bottom = int(rows[-1]) + 24 if rows.size else a.shape[0]
img = img.crop((0, 0, img.width, min(bottom, img.height)))
img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(sys.argv[2], optimize=True)
print(f"{sys.argv[2]}: {img.width} x {img.height} px")
PYEOF
echo "executed notebook: $WORK/notebook.html"
