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

__all__ = ["REMOVED_IN", "warn_renamed", "deprecated_alias", "renamed_keyword", "renamed_attribute"]

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


def renamed_keyword(old: str, new: str, *, removed_in: str = REMOVED_IN) -> Callable[[_F], _F]:
    """Decorator: the keyword argument ``old`` of ``func`` is the deprecated name of ``new``.

    Given by its old name, the value is passed as ``new`` with a warning at the caller's line;
    given by both names (or positionally and by the old name) it is a ``TypeError``.

    Examples
    --------
    >>> import warnings
    >>> @renamed_keyword("labels", "label_index")
    ... def ece(probs, label_index=None):
    ...     return label_index
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     ece([0.5], labels=[1]), str(w[0].message).split(";")[0]
    ([1], 'ece(labels=...) is deprecated and will be removed in confroute 0.3')
    """

    def decorate(func: _F) -> _F:
        import inspect

        position = list(inspect.signature(func).parameters).index(new)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if old in kwargs:
                if new in kwargs or len(args) > position:
                    raise TypeError(f"{func.__name__}() got {new} twice: give {new} only ({old} is its old name)")
                warn_renamed(f"{func.__name__}({old}=...)", f"{func.__name__}({new}=...)", removed_in=removed_in)
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


class renamed_attribute:  # noqa: N801 - used like ``property``
    """A class attribute that is the deprecated name of another: reading it warns at the caller's
    line and gives the new attribute.

    Examples
    --------
    >>> import warnings
    >>> class Table:
    ...     row_thresholds = (0.9, 0.5)
    ...     thresholds = renamed_attribute("row_thresholds")
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     Table().thresholds, str(w[0].message).split(";")[1]
    ((0.9, 0.5), ' use Table.row_thresholds')
    """

    def __init__(self, new: str, note: str = "", *, removed_in: str = REMOVED_IN) -> None:
        self.new, self.note, self.removed_in = new, note, removed_in
        self.old = "?"

    def __set_name__(self, owner: type, name: str) -> None:
        self.old = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        cls = type(obj).__name__
        warn_renamed(f"{cls}.{self.old}", f"{cls}.{self.new}{self.note}", removed_in=self.removed_in)
        return getattr(obj, self.new)
