"""Deprecated: ``confroute.predictors.export`` is now :mod:`confroute.export` (an export tool,
not a predictor), and ``python -m confroute.predictors.export`` is now ``confroute export``.

Importing this module warns once and gives :mod:`confroute.export` itself (the same module
object, so everything, monkeypatching included, behaves as before).
"""

from __future__ import annotations

import sys

from .. import export as _export
from ..core._deprecation import warn_renamed

if __name__ == "__main__":  # pragma: no cover - python -m confroute.predictors.export
    raise SystemExit(
        "python -m confroute.predictors.export is now a subcommand: confroute export MODEL_DIR OUTPUT_DIR "
        "[--quantize int8] [--check-texts FILE] (or python -m confroute export ...)"
    )

warn_renamed("confroute.predictors.export", "confroute.export", stacklevel=3)
sys.modules[__name__] = _export
