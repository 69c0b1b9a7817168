"""The output schema of routing, in one place: column names, their types, how rows are built.

Every output of routing has these columns, in this order, with these types, whatever writes it
(:meth:`RoutingResult.to_pandas <confroute.RoutingResult.to_pandas>` and
:meth:`~confroute.RoutingResult.to_dict`, :func:`~confroute.integrations.frames.route_dataframe`
on pandas and Arrow, Hugging Face ``datasets``, Ray Data, the Ray Serve JSON and its Open
Inference Protocol answer):

=====================  ==============  ============================================================
column                 type            meaning
=====================  ==============  ============================================================
``label``              class values    the final class in the user's label space; missing where
                                       abstained
``label_index``        int64           its column index; ``-1`` where abstained
``confidence``         float64         the answering stage's score; missing where abstained
``stage``              int64           *index* of the answering stage; ``-1`` where abstained
``stage_name``         str             *name* of the answering stage; missing where abstained
``degraded``           bool            a stage failed on the input
``error``              str             the failure's message; missing where none
``cost``               float64         per-input cost (only with a cost model)
``<name>_label``       class values    each stage's own class; missing where it did not answer
``<name>_label_index`` int64           each stage's own column index; ``-1`` there
``<name>_score``       float64         each stage's own score; missing there
=====================  ==============  ============================================================

Missing values: a float is NaN in numpy and pandas, null in Arrow and JSON; a class value or a
string is ``None`` in an ``object`` column in numpy and pandas (never NaN: a column of integer
classes does not turn into floats because some input never reached a stage), null in Arrow and
JSON. The Arrow type of a class-value column comes from the classes, not from the values of one
batch: ``int64`` for integer classes (and for unnamed classes, whose values are the column
indices), ``string`` otherwise, so that every batch of a distributed job has the same schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._json import json_value
from ._optional import import_pandas
from .classes import class_labels

__all__ = [
    "BASE_COLUMNS",
    "STAGE_COLUMNS",
    "column_names",
    "result_columns",
    "json_columns",
    "json_rows",
    "integer_classes",
    "value_types",
    "pandas_frame",
    "arrow_arrays",
    "label_arrow_type",
    "oip_datatype",
]

#: The per-input columns, name and kind (``"label"``: class values, else a numpy dtype).
BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("label", "label"),
    ("label_index", "int64"),
    ("confidence", "float64"),
    ("stage", "int64"),
    ("stage_name", "str"),
    ("degraded", "bool"),
    ("error", "str"),
)
#: The cost column, present when the router has a cost model.
COST_COLUMN = ("cost", "float64")
#: Per stage ``<name>``: the suffix and kind of its own columns.
STAGE_COLUMNS: tuple[tuple[str, str], ...] = (("_label", "label"), ("_label_index", "int64"), ("_score", "float64"))


def column_kinds(stage_names: Sequence[str], has_cost: bool) -> list[tuple[str, str]]:
    """``(name, kind)`` of every column, in order."""
    out = list(BASE_COLUMNS) + ([COST_COLUMN] if has_cost else [])
    for s in stage_names:
        out += [(f"{s}{suffix}", kind) for suffix, kind in STAGE_COLUMNS]
    return out


def column_names(stage_names: Sequence[str], has_cost: bool) -> list[str]:
    """Names of the columns routing writes, in order.

    Examples
    --------
    >>> column_names(["small", "big"], has_cost=True)[5:]
    ['degraded', 'error', 'cost', 'small_label', 'small_label_index', 'small_score', 'big_label', 'big_label_index', 'big_score']
    """
    return [name for name, _ in column_kinds(stage_names, has_cost)]


def _labels(index: np.ndarray, classes: Sequence[Any] | None) -> np.ndarray:
    """Class values as an object array, ``None`` where the index is ``-1``."""
    values = class_labels(np.asarray(index, dtype=np.int64), None if classes is None else tuple(classes))
    out = np.empty(values.shape, dtype=object)
    out[:] = [v.item() if isinstance(v, np.generic) else v for v in values.tolist()]
    return out


def result_columns(
    rows: Any, stage_names: Sequence[str], classes: Sequence[Any] | None, has_cost: bool
) -> dict[str, np.ndarray]:
    """The columns (numpy arrays of the fixed types) from anything with a routing result's
    per-row fields: ``label_index``, ``confidence``, ``stage``, ``degraded``, ``errors``,
    ``cost``, ``stage_label_index`` and ``stage_scores`` (a :class:`~confroute.RoutingResult`,
    or the stage-wise path's row state)."""
    stage = np.asarray(rows.stage, dtype=np.int64)
    stage_name = np.full(stage.shape, None, dtype=object)
    stage_name[stage >= 0] = np.asarray(list(stage_names), dtype=object)[stage[stage >= 0]]
    errors = np.full(stage.shape, None, dtype=object)
    errors[:] = [None if e is None else str(e) for e in np.asarray(rows.errors, dtype=object).tolist()]
    cols: dict[str, np.ndarray] = {
        "label": _labels(rows.label_index, classes),
        "label_index": np.asarray(rows.label_index, dtype=np.int64),
        "confidence": np.asarray(rows.confidence, dtype=np.float64),
        "stage": stage,
        "stage_name": stage_name,
        "degraded": np.asarray(rows.degraded, dtype=bool),
        "error": errors,
    }
    if has_cost:
        cols["cost"] = np.asarray(rows.cost, dtype=np.float64)
    stage_index = np.asarray(rows.stage_label_index, dtype=np.int64)
    for s, name in enumerate(stage_names):
        cols[f"{name}_label"] = _labels(stage_index[s], classes)
        cols[f"{name}_label_index"] = stage_index[s]
        cols[f"{name}_score"] = np.asarray(rows.stage_scores[s], dtype=np.float64)
    return cols


def json_columns(cols: dict[str, np.ndarray]) -> dict[str, list[Any]]:
    """Each column as a list of JSON-ready values (non-finite floats become ``None``)."""
    return {name: [json_value(v) for v in values.tolist()] for name, values in cols.items()}


def json_rows(cols: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One JSON-ready dict per input (non-finite floats become ``None``)."""
    lists = json_columns(cols)
    return [dict(zip(lists, values)) for values in zip(*lists.values())]


def integer_classes(classes: Sequence[Any] | None) -> bool:
    """Whether class values are integers (unnamed classes are: their values are column indices)."""
    return classes is None or all(
        isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) for c in classes
    )


def value_types(stage_names: Sequence[str], has_cost: bool, classes: Sequence[Any] | None) -> dict[str, str]:
    """Each column's value type by name: ``int64``, ``float64``, ``bool`` or ``string``
    (class-value columns: ``int64`` for integer classes, else ``string``), e.g. for the
    ``features`` of a Hugging Face dataset.

    >>> value_types(["a"], False, ("neg", "pos"))["a_label"], value_types(["a"], False, None)["stage"]
    ('string', 'int64')
    """
    label = "int64" if integer_classes(classes) else "string"
    return {name: label if kind == "label" else "string" if kind == "str" else kind
            for name, kind in column_kinds(stage_names, has_cost)}


def pandas_frame(cols: dict[str, np.ndarray], index: Any = None) -> Any:
    """A DataFrame with the columns' own dtypes (object columns keep ``None``)."""
    pd = import_pandas()
    return pd.DataFrame({n: pd.Series(v, dtype=v.dtype, index=index) for n, v in cols.items()}, index=index)


def label_arrow_type(classes: Sequence[Any] | None) -> Any:
    """The Arrow type of a class-value column: ``int64`` for integer (or unnamed) classes, else
    ``string``."""
    import pyarrow as pa

    return pa.int64() if integer_classes(classes) else pa.string()


def _kind(name: str, values: np.ndarray) -> str:
    if name == "label" or name.endswith("_label"):
        return "label"
    return "str" if values.dtype == object else str(values.dtype)


def arrow_arrays(cols: dict[str, np.ndarray], classes: Sequence[Any] | None) -> dict[str, Any]:
    """The columns as pyarrow arrays of fixed types; a missing float (NaN) becomes null."""
    import pyarrow as pa

    label_type = label_arrow_type(classes)
    out = {}
    for name, values in cols.items():
        kind = _kind(name, values)
        if kind == "label":
            items = values.tolist()
            if label_type == pa.string():
                items = [None if v is None else str(v) for v in items]
            out[name] = pa.array(items, type=label_type)
        elif kind == "str":
            out[name] = pa.array(values.tolist(), type=pa.string())
        elif kind == "float64":
            out[name] = pa.array(values, type=pa.float64(), from_pandas=True)
        else:
            out[name] = pa.array(values)
    return out


_OIP_TYPES = {"int64": "INT64", "float64": "FP64", "bool": "BOOL", "str": "BYTES"}


def oip_datatype(name: str, values: np.ndarray, classes: Sequence[Any] | None) -> str:
    """The Open Inference Protocol datatype of a column (class values: ``INT64`` or ``BYTES``)."""
    kind = _kind(name, values)
    if kind == "label":
        return "INT64" if integer_classes(classes) else "BYTES"
    return _OIP_TYPES[kind]
