"""Names kept for one release; each warns at the caller's line and runs the one entry point,
:func:`confroute.choose_thresholds` (so it gives the same answer)."""

from __future__ import annotations

from ..core._deprecation import deprecated_alias
from .choices import CascadeChoice
from .choose import choose_thresholds
from .per_class import choose_per_class_thresholds
from .thresholds import choose_threshold

__all__ = ["choose_cascade_thresholds", "choose_threshold", "choose_per_class_thresholds", "CascadeChoice"]

#: Deprecated: :func:`confroute.choose_thresholds` (on a two-stage evaluation it now runs the exact
#: two-stage sweep, as choose_thresholds does, instead of the grid search).
choose_cascade_thresholds = deprecated_alias(choose_thresholds, "choose_cascade_thresholds", "choose_thresholds")
