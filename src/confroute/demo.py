"""Deprecated: the demo moved under the command line, to :mod:`confroute.cli.demo`.

``confroute demo`` and ``python -m confroute demo`` are unchanged. Importing this module warns
once and gives :mod:`confroute.cli.demo` itself.
"""

from __future__ import annotations

import sys

from .cli import demo as _demo
from .core._deprecation import warn_renamed

warn_renamed("confroute.demo", "confroute.cli.demo", stacklevel=3)
sys.modules[__name__] = _demo
