"""Numbers in JSON: the one place where non-finite floats become ``null``."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["json_float", "json_value", "json_tree"]


def json_float(x: Any) -> float | None:
    """``float(x)``, or ``None`` for NaN and infinities (JSON has neither)."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def json_value(x: Any) -> Any:
    """A numpy or Python scalar as a JSON-ready value (non-finite floats become ``None``)."""
    if isinstance(x, (np.floating, float)):
        return json_float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.generic):
        return x.item()
    return x


def json_tree(x: Any) -> Any:
    """:func:`json_value` through nested dicts, lists and tuples (and numpy arrays).

    Examples
    --------
    >>> json_tree({"a": [1.0, float("nan")], "b": (np.int64(2), {"c": float("inf")})})
    {'a': [1.0, None], 'b': [2, {'c': None}]}
    """
    if isinstance(x, dict):
        return {str(k): json_tree(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_tree(v) for v in x]
    if isinstance(x, np.ndarray):
        return [json_tree(v) for v in x.tolist()]
    return json_value(x)
