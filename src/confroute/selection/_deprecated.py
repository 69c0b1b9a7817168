"""Names kept for one release; each calls the one entry point, :func:`choose_thresholds`."""

from __future__ import annotations

import warnings
from typing import Any

from ._cascade_search import CascadeChoice, choose_cascade

__all__ = ["choose_cascade_thresholds"]


def choose_cascade_thresholds(data: Any, **kwargs: Any) -> CascadeChoice:
    """Deprecated: use :func:`confroute.choose_thresholds` (the joint grid search, which this
    also runs on two-stage evaluations)."""
    warnings.warn("choose_cascade_thresholds is deprecated; use choose_thresholds", DeprecationWarning, stacklevel=2)
    return choose_cascade(data, **kwargs)
