"""Checks for constructor parameters, so bad settings fail at construction with one clear message.

A wrong type raises ``TypeError`` and a value out of range ``ValueError``; both messages say what
is expected and what was given. ``bool`` is refused where a count or a number is expected
(``True`` is an ``int`` to Python, never a sensible retry count or timeout).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_int", "check_number"]


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
