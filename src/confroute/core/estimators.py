"""scikit-learn estimator conventions, shared by calibrators, the judge and the drift monitor."""

from __future__ import annotations

from typing import Any

from ..exceptions import NotFittedError

__all__ = ["check_is_fitted"]


def check_is_fitted(estimator: Any, attribute: str) -> None:
    """Raise :class:`~confroute.exceptions.NotFittedError` (a scikit-learn ``NotFittedError``)
    when ``estimator`` has no fitted ``attribute`` yet."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with appropriate "
            "arguments before using this estimator."
        )
