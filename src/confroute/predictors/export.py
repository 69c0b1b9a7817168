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
    warn_renamed("python -m confroute.predictors.export", "confroute export", stacklevel=2)
    from ..cli._main import main

    raise SystemExit(main(["export", *sys.argv[1:]]))

warn_renamed("confroute.predictors.export", "confroute.export", stacklevel=3)
sys.modules[__name__] = _export
