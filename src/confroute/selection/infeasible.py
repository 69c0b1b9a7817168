"""How threshold selection says that a target cannot be met: one warning, at the user's line.

Every procedure returns the safe end with ``feasible=False`` and warns with
:class:`~confroute.exceptions.ThresholdWarning`; :func:`warn_infeasible` points the warning at the
first caller outside confroute, however many layers (entry point, aliases, cross-fitting) sit in
between.
"""

from __future__ import annotations

import inspect
import os
import warnings

from ..exceptions import ThresholdWarning

__all__ = ["warn_infeasible"]

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def warn_infeasible(message: str) -> None:
    """Warn with ``ThresholdWarning`` at the first frame outside the confroute package."""
    frame = inspect.currentframe()
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE + os.sep):
        frame = frame.f_back
        level += 1
    del frame
    warnings.warn(message, ThresholdWarning, stacklevel=level)
