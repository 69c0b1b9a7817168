"""Deprecated names, in one place: each warns once per call site, at the caller's line.

Every rename of the public surface goes through :func:`deprecated_alias` (a function or class
kept under its old name) or :func:`warn_renamed` (an argument, attribute or option value), so the
warning always names the new spelling and the release that removes the old one, and points at
the user's code rather than at confroute. CHANGELOG.md lists every entry.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["REMOVED_IN", "warn_renamed", "deprecated_alias"]

#: The release that removes the names deprecated in 0.2 (listed in CHANGELOG.md).
REMOVED_IN = "0.3"

_F = TypeVar("_F", bound=Callable[..., Any])


def warn_renamed(old: str, new: str, *, stacklevel: int = 3, removed_in: str = REMOVED_IN) -> None:
    """Warn that ``old`` is deprecated in favour of ``new``.

    ``stacklevel=3`` points at the caller of the function that calls this (the user's line
    when a public function or property warns about its own argument or name).
    """
    warnings.warn(
        f"{old} is deprecated and will be removed in confroute {removed_in}; use {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def deprecated_alias(func: _F, old: str, new: str, *, removed_in: str = REMOVED_IN) -> _F:
    """``func`` under its old name: the same behaviour, plus a warning at the caller's line.

    Examples
    --------
    >>> import warnings
    >>> def choose(x):
    ...     return x
    >>> old = deprecated_alias(choose, "pick", "choose")
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     old(1), w[0].category.__name__
    (1, 'DeprecationWarning')
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        warn_renamed(old, new, removed_in=removed_in)
        return func(*args, **kwargs)

    wrapper.__name__ = old.rsplit(".", 1)[-1].split("(")[0]
    wrapper.__doc__ = f"Deprecated alias of :func:`{new}` (removed in {removed_in})."
    return wrapper  # type: ignore[return-value]
