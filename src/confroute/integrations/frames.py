"""Route the rows of a pandas DataFrame or a pyarrow Table, in memory.

:func:`route_dataframe` reads the inputs from one column (texts, or any per-row object) or from
several numeric columns, routes them with ``router.route`` and returns the table with the
routing result appended as columns. :func:`confroute.integrations.ray.route_dataset` appends the very same
columns to a Ray Dataset, so code written against one works on the other.

Result columns
--------------
The columns of the one routing output schema, :mod:`confroute.core.schema`: ``label`` (the final
class in the user's label space, as scikit-learn's ``predict`` gives it; missing where
abstained), ``label_index`` (its column index, ``-1`` where abstained), ``confidence`` (float,
missing where abstained), ``stage`` (int64 index of the answering stage, ``-1`` where abstained),
``stage_name`` (its name), ``degraded`` (bool), ``error`` (str or missing), ``cost`` (float, only
when the router has a cost model), and for every stage ``<name>_label`` / ``<name>_label_index``
/ ``<name>_score``: that stage's own answer on the rows it saw (missing / ``-1`` / missing
elsewhere). Missing floats are NaN in pandas, missing class values and strings are ``None``
(``object`` columns: integer classes never turn into floats), and both are null in Arrow tables
(and so in Ray Datasets and the Parquet files written from them).

A table that already has one of these names (typically its own ``label`` column) keeps it:
:func:`route_dataframe` then writes every result column with the prefix ``route_``
(``route_label``, ``route_confidence``, ...); ``prefix=`` chooses the prefix yourself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import schema

__all__ = ["route_dataframe", "result_column_names"]

#: Prefix of the result columns when a plain name is already taken (see route_dataframe).
CLASH_PREFIX = "route_"

def result_column_names(stage_names: Sequence[str], has_cost: bool) -> list[str]:
    """Names of the columns routing appends, in order (:func:`confroute.core.schema.column_names`).

    Examples
    --------
    >>> result_column_names(["small", "big"], has_cost=True)[-6:]
    ['small_label', 'small_label_index', 'small_score', 'big_label', 'big_label_index', 'big_score']
    """
    return schema.column_names(stage_names, has_cost)


@dataclass(frozen=True)
class InputSpec:
    """Where a router's inputs live in a table: one column, or several numeric columns."""

    text_column: str | None = None
    feature_columns: tuple[str, ...] | None = None

    @classmethod
    def make(cls, text_column: str | None, feature_columns: Sequence[str] | None) -> InputSpec:
        if (text_column is None) == (feature_columns is None):
            raise ValueError(
                "give exactly one of text_column= (one column of inputs: texts, or any per-row "
                "object) and feature_columns= (numeric columns stacked into one feature vector per row)"
            )
        if feature_columns is not None:
            if isinstance(feature_columns, str):
                raise TypeError(
                    "feature_columns must be a list of column names; for one column use text_column="
                )
            feature_columns = tuple(feature_columns)
            if not feature_columns:
                raise ValueError("feature_columns is empty")
        return cls(text_column, feature_columns)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.text_column,) if self.text_column is not None else tuple(self.feature_columns or ())

    def check(self, available: Sequence[str], result_names: Sequence[str]) -> None:
        missing = [c for c in self.columns if c not in available]
        if missing:
            raise KeyError(f"input column(s) {missing} not found; the table has columns {list(available)}")
        clash = sorted(set(available) & set(result_names))
        if clash:
            raise ValueError(
                f"the table already has column(s) {clash} that routing would write; rename or drop them, "
                "or give route_dataframe another prefix= for the result columns"
            )

    def from_columns(self, get: Any) -> Any:
        """The router's inputs from ``get(column) -> ndarray``."""
        if self.text_column is not None:
            return _dense(get(self.text_column))
        return np.column_stack([get(c) for c in self.feature_columns or ()])


def _dense(values: np.ndarray) -> np.ndarray:
    # A column of equal-length vectors (list or tensor column) becomes one 2-D array, as a
    # scikit-learn estimator expects; anything else (texts) stays as it is.
    if values.dtype == object and values.size and isinstance(values[0], (np.ndarray, list)):
        return np.stack([np.asarray(v) for v in values])
    return values


def arrow_column(table: Any, name: str) -> np.ndarray:
    column = table.column(name)
    try:
        return column.to_numpy()
    except (TypeError, NotImplementedError):  # pragma: no cover - exotic extension types
        return np.asarray(column.to_pylist(), dtype=object)


def route_dataframe(
    df: Any,
    router: Any,
    *,
    text_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    prefix: str | None = None,
) -> Any:
    """Route every row of a pandas DataFrame or pyarrow Table; append the result as columns.

    Parameters
    ----------
    df : pandas.DataFrame or pyarrow.Table
    router : Cascade or ThresholdRouter
    text_column : str, optional
        The column whose values are the inputs (texts, or any per-row object the stages take).
    feature_columns : list of str, optional
        Numeric columns stacked into one feature row per input (for scikit-learn stages).
    prefix : str, optional
        Put this before every result column's name. Default: the plain names, or ``"route_"``
        when the table already has a column of one of those names (e.g. your own ``label``);
        ``""`` insists on the plain names. A prefixed name that is taken too is an error.

    Returns
    -------
    pandas.DataFrame or pyarrow.Table
        A new table of the same kind: the input columns, in the input order (a DataFrame keeps
        its index), followed by the result columns listed in this module's docstring.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from confroute import CallablePredictor, ThresholdRouter
    >>> cheap = CallablePredictor(lambda xs: np.array([[1 - x, x] for x in xs]), classes=["neg", "pos"])
    >>> big = CallablePredictor(lambda xs: np.tile([0.2, 0.8], (len(xs), 1)), classes=["neg", "pos"])
    >>> df = pd.DataFrame({"x": [0.95, 0.5, 0.05]})
    >>> out = route_dataframe(df, ThresholdRouter(cheap, big, threshold=0.9), text_column="x")
    >>> out[["x", "label", "stage_name", "confidence"]]
          x label stage_name  confidence
    0  0.95   pos    primary        0.95
    1  0.50   pos   fallback        0.80
    2  0.05   neg    primary        0.95

    A table with its own ``label`` column keeps it; the result columns get the prefix ``route_``:

    >>> df["label"] = ["pos", "neg", "neg"]
    >>> route_dataframe(df, ThresholdRouter(cheap, big, threshold=0.9), text_column="x").columns[:5].tolist()
    ['x', 'label', 'route_label', 'route_label_index', 'route_confidence']
    """
    spec = InputSpec.make(text_column, feature_columns)
    names = result_column_names(router.names, router.cost_model is not None)
    if _is_arrow(df):
        available = list(df.column_names)
    elif hasattr(df, "columns") and hasattr(df, "assign"):
        available = list(df.columns)
    else:
        available = None
    if prefix is None:
        prefix = CLASH_PREFIX if available is not None and set(available) & set(names) else ""
    elif not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
    names = [prefix + n for n in names]
    if _is_arrow(df):
        spec.check(list(df.column_names), names)
        inputs = spec.from_columns(lambda c: arrow_column(df, c))
    elif available is not None:
        spec.check(available, names)
        inputs = spec.from_columns(lambda c: df[c].to_numpy())
    else:
        raise TypeError(
            f"route_dataframe takes a pandas DataFrame or a pyarrow Table, got {type(df).__name__}"
        )
    result = router.route(inputs)
    cols = result.columns()
    if _is_arrow(df):
        table = df
        for name, arr in schema.arrow_arrays(cols, result.classes).items():
            table = table.append_column(prefix + name, arr)
        return table
    out = df.copy()
    for name, frame_column in schema.pandas_frame(cols, index=out.index).items():
        out[prefix + name] = frame_column
    return out


def _is_arrow(obj: Any) -> bool:
    return type(obj).__module__.startswith("pyarrow") and hasattr(obj, "column_names")
