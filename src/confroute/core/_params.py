"""Checks for constructor parameters, so bad settings fail at construction with one clear message.

A wrong type raises ``TypeError`` and a value out of range ``ValueError``; both messages say what
is expected and what was given. ``bool`` is refused where a count or a number is expected
(``True`` is an ``int`` to Python, never a sensible retry count or timeout).
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = ["check_int", "check_number", "Interval", "validate_params", "check_param"]


def check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an ``int`` >= ``minimum``.

    Examples
    --------
    >>> check_int(3, "retries", 0)
    3
    >>> check_int(1.5, "retries", 0)
    Traceback (most recent call last):
    ...
    TypeError: retries must be an integer >= 0, got 1.5
    """
    expected = f"{name} must be an integer >= {minimum}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(expected)
    if value < minimum:
        raise ValueError(expected)
    return int(value)


def check_number(value: Any, name: str, minimum: float, *, strict: bool = False) -> float:
    """``value`` as a finite ``float`` >= ``minimum`` (> ``minimum`` when ``strict``).

    Examples
    --------
    >>> check_number(0.5, "backoff", 0)
    0.5
    >>> check_number(float("nan"), "backoff", 0)
    Traceback (most recent call last):
    ...
    ValueError: backoff must be a finite number >= 0, got nan
    """
    expected = f"{name} must be a finite number {'>' if strict else '>='} {minimum:g}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(expected)
    v = float(value)
    if not math.isfinite(v) or v < minimum or (strict and v == minimum):
        raise ValueError(expected)
    return v


@dataclass(frozen=True)
class Interval:
    """A declared range for a real parameter, as scikit-learn's ``_param_validation`` declares them.

    ``closed`` is one of ``"neither"``, ``"left"``, ``"right"``, ``"both"``; ``none_ok`` lets
    ``None`` through (e.g. ``delta=None``: an empirical choice).

    Examples
    --------
    >>> DELTA.check(0.05, "delta")
    0.05
    >>> DELTA.check(1.0, "delta")
    Traceback (most recent call last):
    ...
    ValueError: delta must lie in (0, 1) or be None, got 1.0
    """

    low: float
    high: float
    closed: str = "neither"
    none_ok: bool = False

    def __str__(self) -> str:
        left = "[" if self.closed in ("left", "both") else "("
        right = "]" if self.closed in ("right", "both") else ")"
        return f"{left}{self.low:g}, {self.high:g}{right}" + (" or be None" if self.none_ok else "")

    def check(self, value: Any, name: str) -> float | None:
        if value is None and self.none_ok:
            return None
        expected = f"{name} must lie in {self}, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(expected)
        v = float(value)
        lo_ok = v >= self.low if self.closed in ("left", "both") else v > self.low
        hi_ok = v <= self.high if self.closed in ("right", "both") else v < self.high
        if math.isnan(v) or not (lo_ok and hi_ok):
            raise ValueError(expected)
        return v


#: The error level of every guarantee: ``delta`` in (0, 1), or ``None`` for no guarantee.
DELTA = Interval(0.0, 1.0, "neither", none_ok=True)
#: A proportion strictly inside (0, 1], e.g. a target accuracy or coverage.
PROPORTION = Interval(0.0, 1.0, "right")


def check_param(value: Any, name: str, spec: Interval) -> Any:
    """Check one parameter against its declared :class:`Interval` (the function form)."""
    return spec.check(value, name)


def validate_params(specs: Mapping[str, Interval]) -> Callable[[_F], _F]:
    """Decorator: check the named parameters of every call against their declared ranges.

    Examples
    --------
    >>> @validate_params({"delta": DELTA})
    ... def certify(x, delta=0.05):
    ...     return delta
    >>> certify(1, delta=0.1)
    0.1
    >>> certify(1, delta=2)
    Traceback (most recent call last):
    ...
    ValueError: delta must lie in (0, 1) or be None, got 2
    """

    def decorate(func: _F) -> _F:
        signature = inspect.signature(func)
        unknown = set(specs) - set(signature.parameters)
        if unknown:
            raise TypeError(f"validate_params: {func.__qualname__} has no parameters {sorted(unknown)}")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind_partial(*args, **kwargs)
            for name, spec in specs.items():
                if name in bound.arguments:
                    spec.check(bound.arguments[name], name)
                elif signature.parameters[name].default is not inspect.Parameter.empty:
                    spec.check(signature.parameters[name].default, name)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
