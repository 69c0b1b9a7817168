"""Names kept for one release; each warns at the caller's line and runs the one entry point's
procedure (:func:`confroute.choose_thresholds`)."""

from __future__ import annotations

from ..core._deprecation import deprecated_alias
from .cascade import choose_cascade
from .choices import CascadeChoice
from .per_class import choose_per_class_thresholds
from .thresholds import choose_threshold

__all__ = ["choose_cascade_thresholds", "choose_threshold", "choose_per_class_thresholds", "CascadeChoice"]

#: Deprecated: :func:`confroute.choose_thresholds` (the joint grid search, which this also runs
#: on two-stage evaluations).
choose_cascade_thresholds = deprecated_alias(choose_cascade, "choose_cascade_thresholds", "choose_thresholds")
