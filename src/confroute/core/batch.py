"""What counts as a batch of inputs, in one place.

A batch is anything scikit-learn accepts as ``X`` (a list or tuple, a numpy array, a scipy sparse
matrix, a pandas DataFrame or Series) or a list of texts. Routing needs three operations on it:
its number of rows, the rows at given positions, and a contiguous run of rows. This module gives
them for every kind of batch, so that no other module calls ``len()`` or indexes a batch itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["as_batch", "refuse_single_string", "n_rows", "take_rows", "slice_rows"]


def _is_sparse(x: Any) -> bool:
    return hasattr(x, "tocsr") and hasattr(x, "shape") and hasattr(x, "nnz")


def _is_frame(x: Any) -> bool:
    return hasattr(x, "iloc") and hasattr(x, "columns")


def refuse_single_string(inputs: Any) -> None:
    """A bare string is one input, not a batch (or a stream) of characters: refuse it."""
    if isinstance(inputs, (str, bytes)):
        raise TypeError("inputs must be a batch (list, array, ...), not a single string; wrap it: [text]")


def as_batch(inputs: Any) -> Any:
    """Check that ``inputs`` is a batch and return it in a form that supports row access.

    Lists, tuples, numpy arrays and DataFrames are returned as they are (a DataFrame keeps its
    column names, which a scikit-learn ``ColumnTransformer`` needs); a pandas Series becomes a
    numpy array; a sparse matrix becomes CSR (row indexing). A bare string is refused: it is one
    input, not a batch.

    Examples
    --------
    >>> as_batch(["a", "b"])
    ['a', 'b']
    >>> as_batch("one review")
    Traceback (most recent call last):
    ...
    TypeError: inputs must be a batch (list, array, ...), not a single string; wrap it: [text]
    """
    refuse_single_string(inputs)
    if _is_sparse(inputs):
        return inputs.tocsr()
    if _is_frame(inputs):
        return inputs
    if hasattr(inputs, "to_numpy") and not isinstance(inputs, np.ndarray):
        return inputs.to_numpy()
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 0:
            raise TypeError("inputs must be a batch with one row per input, got a 0-d array")
        return inputs
    if not hasattr(inputs, "__len__") or not hasattr(inputs, "__getitem__"):
        raise TypeError(
            "inputs must be a sized, indexable batch (list, tuple, ndarray, sparse matrix, DataFrame), "
            f"got {type(inputs).__name__}; materialise an iterator with list(...) or use route_stream"
        )
    return inputs


def n_rows(inputs: Any) -> int:
    """Number of inputs in a batch."""
    shape = getattr(inputs, "shape", None)
    if shape is not None and len(shape) >= 1 and not isinstance(inputs, (list, tuple)):
        return int(shape[0])
    return len(inputs)


def take_rows(inputs: Any, index: np.ndarray) -> Any:
    """The rows at integer positions ``index``, in that order, as a batch of the same kind."""
    if isinstance(inputs, np.ndarray) or _is_sparse(inputs):
        return inputs[index]
    if _is_frame(inputs):
        return inputs.iloc[index]
    return [inputs[int(i)] for i in index]


def slice_rows(inputs: Any, start: int, stop: int) -> Any:
    """Rows ``start`` to ``stop`` (exclusive) as a batch of the same kind."""
    if _is_frame(inputs):
        return inputs.iloc[start:stop]
    out: Sequence[Any] = inputs[start:stop]
    return out
