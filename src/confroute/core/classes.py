"""The class/label model, in one place.

A stage's *classes* are the values its user knows: scikit-learn's ``classes_`` as they are
(integers stay integers, strings stay strings), a transformer's ``id2label`` names, or whatever
``classes=`` declares. A model that names none has the classes ``0 .. k-1``: its column indices,
as for a scikit-learn model trained on labels encoded that way.

Every place that accepts labels (evaluation, calibrators, the judge, threshold selection,
per-class thresholds, the command line, Ray, data frames) matches them to the classes *by value*
with :func:`label_indices`; stages are put in a common column order *by name* with
:func:`align`; results turn column indices back into class values with :func:`class_labels`.
A label or class set that does not match raises :class:`~confroute.exceptions.ClassMismatchError`
naming both sets and the fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

from ..exceptions import ClassMismatchError

__all__ = ["as_classes", "class_values", "label_indices", "class_labels", "align", "same_classes"]

Classes = tuple[Hashable, ...]


class _Columns(Protocol):
    """What :func:`align` needs of a stage's predictions (a :class:`~confroute.Predictions`)."""

    @property
    def probs(self) -> np.ndarray: ...

    @property
    def logits(self) -> np.ndarray | None: ...

    @property
    def classes(self) -> Classes | None: ...

    @property
    def n_classes(self) -> int: ...


_P = TypeVar("_P", bound=_Columns)


def _py(value: Any) -> Any:
    """A numpy scalar as the equivalent Python scalar (``np.int64(1)`` -> ``1``)."""
    return value.item() if isinstance(value, np.generic) else value


def as_classes(classes: Sequence[Any] | np.ndarray | None, k: int | None = None, *, source: str = "classes") -> Classes | None:
    """Validate class values (unique, hashable, ``k`` of them) and return them as a tuple.

    Numpy scalars become Python scalars; integers stay integers, strings stay strings.

    Examples
    --------
    >>> as_classes(np.array([1, 2, 3]))
    (1, 2, 3)
    >>> as_classes(["neg", "pos"], 3, source="model")
    Traceback (most recent call last):
    ...
    confroute.exceptions.ClassMismatchError: model names 2 classes ['neg', 'pos'] but returns 3 columns
    """
    if classes is None:
        return None
    values = tuple(_py(c) for c in (classes.tolist() if isinstance(classes, np.ndarray) else classes))
    for v in values:
        if not isinstance(v, Hashable) or v is None:
            raise ClassMismatchError(f"{source}: class values must be hashable and not None, got {v!r}")
    if len(set(values)) != len(values):
        raise ClassMismatchError(f"{source}: class values must be unique, got {list(values)}")
    if k is not None and len(values) != k:
        raise ClassMismatchError(f"{source} names {len(values)} classes {list(values)} but returns {k} columns")
    return values


def class_values(classes: Classes | None, k: int) -> Classes:
    """The classes, or ``0 .. k-1`` when the model does not name them."""
    return tuple(range(k)) if classes is None else classes


def _mismatch(bad: list[Any], classes: Classes | None, k: int, what: str, owner: str) -> ClassMismatchError:
    shown = bad[:8] + (["..."] if len(bad) > 8 else [])
    if classes is None:
        return ClassMismatchError(
            f"{what} {shown} are not column indices of {owner}, which does not name its classes "
            f"(so its classes are 0..{k - 1}); declare the model's classes (classes=[...]) to match "
            "labels by value"
        )
    values = list(classes)
    if all(isinstance(b, int) and 0 <= b < k for b in bad) and not any(isinstance(c, int) for c in values):
        return ClassMismatchError(
            f"{what} {shown} look like column indices, but {owner} names its classes {values}: labels are "
            "matched by value. Give the class values (e.g. np.asarray(classes)[labels])"
        )
    as_text = {str(c) for c in values}
    if all(str(b) in as_text for b in bad):
        kinds = sorted({type(b).__name__ for b in bad})
        ckinds = sorted({type(c).__name__ for c in values})
        return ClassMismatchError(
            f"{what} {shown} ({'/'.join(kinds)}) do not match the classes of {owner} {values} "
            f"({'/'.join(ckinds)}) by type; convert one to the other (e.g. labels.astype(int), or "
            "classes=[str(c) for c in ...])"
        )
    return ClassMismatchError(
        f"{what} {shown} are not among the classes of {owner} {values}; give labels in the model's "
        "own label space (the values it was trained on), or map them first (label_map=...)"
    )


def label_indices(
    labels: Any, classes: Classes | None, k: int, *, what: str = "labels", owner: str = "the model"
) -> np.ndarray:
    """Column index of each label: labels are matched to the classes by value.

    Parameters
    ----------
    labels : array-like of shape (n,)
        The user's labels: the same values as the classes (``1..4`` for a model whose classes are
        ``1..4``, ``"pos"`` for a model whose classes are names). For a model that does not
        name its classes, column indices ``0 .. k-1``.
    classes : tuple or None
    k : int
        Number of columns.

    Returns
    -------
    ndarray of int64, shape (n,)

    Raises
    ------
    ClassMismatchError
        When a label is not a class; the message names the labels, the classes and the fix, and
        the error's ``unknown`` attribute lists the labels that matched no class.

    Examples
    --------
    >>> label_indices([4, 1, 4], (1, 2, 3, 4), 4).tolist()
    [3, 0, 3]
    >>> label_indices(["pos", "neg"], ("neg", "pos"), 2).tolist()
    [1, 0]
    >>> label_indices([1, 2], ("1", "2"), 2)
    Traceback (most recent call last):
    ...
    confroute.exceptions.ClassMismatchError: labels [1, 2] (int) do not match the classes of the model ['1', '2'] (str) by type; convert one to the other (e.g. labels.astype(int), or classes=[str(c) for c in ...])
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional (one per input), got shape {y.shape}")
    values = class_values(classes, k)
    lookup = {v: i for i, v in enumerate(values)}
    try:
        uniq, inverse = np.unique(y, return_inverse=True)
        uniq_list = [_py(u) for u in uniq.tolist()]
    except TypeError:  # mixed types in an object array: no order, match one by one
        uniq_list = list(dict.fromkeys(_py(v) for v in y.tolist()))
        position = {v: i for i, v in enumerate(uniq_list)}
        inverse = np.array([position[_py(v)] for v in y.tolist()], dtype=np.int64)
    found = []
    for u in uniq_list:
        try:
            found.append(lookup.get(u, -1) if u == u else -1)  # NaN is never a class
        except TypeError:  # unhashable label
            found.append(-1)
    index = np.asarray(found, dtype=np.int64)
    if (index < 0).any():
        unknown = [u for u, i in zip(uniq_list, found) if i < 0]
        error = _mismatch(unknown, classes, k, what, owner)
        error.unknown = unknown  # type: ignore[attr-defined]  # the labels that matched no class
        raise error
    return index[np.asarray(inverse, dtype=np.int64).reshape(-1)] if y.size else np.zeros(0, dtype=np.int64)


def class_labels(index: np.ndarray, classes: Classes | None, k: int | None = None) -> np.ndarray:
    """Class values for column indices; ``-1`` (no answer) becomes ``None``.

    The result has the classes' own dtype (integers stay integers) unless some index is ``-1``,
    in which case it is an object array holding ``None`` there.

    Examples
    --------
    >>> class_labels(np.array([1, 0]), ("neg", "pos")).tolist()
    ['pos', 'neg']
    >>> class_labels(np.array([2, -1]), (1, 2, 3)).tolist()
    [3, None]
    """
    index = np.asarray(index, dtype=np.int64)
    if classes is None:
        if (index < 0).any():
            out = index.astype(object)
            out[index < 0] = None
            return out
        return index.copy()
    table = np.empty(len(classes), dtype=object)
    table[:] = list(classes)
    if (index < 0).any():
        out = np.full(index.shape, None, dtype=object)
        ok = index >= 0
        out[ok] = table[index[ok]]
        return out
    typed = np.asarray(list(classes))
    if typed.dtype.kind in "iufb":
        return typed[index]
    return table[index]


def same_classes(a: Classes | None, b: Classes | None) -> bool:
    """Whether two stages' classes can be matched (equal sets; unnamed matches anything)."""
    return a is None or b is None or set(a) == set(b)


def align(
    preds: _P, classes: Classes | None, n_classes: int | None, stage: str
) -> tuple[_P, Classes | None]:
    """Put a stage's columns in the reference class order, by name when both sides name them.

    ``classes`` / ``n_classes`` describe the reference (the earlier stages); ``None`` when not
    known yet. A stage that does not name its classes is taken in column order, and must have
    as many columns. Returns the aligned predictions and the reference classes from now on.
    (The predictions are rebuilt with :func:`dataclasses.replace`, so this module needs no
    import of :mod:`confroute.core.types`, which imports it.)
    """

    if classes is not None and preds.classes is not None:
        if preds.classes == classes:
            return preds, classes
        if set(preds.classes) != set(classes):
            raise ClassMismatchError(
                f"stage {stage!r} predicts classes {list(preds.classes)} but the earlier stages' classes "
                f"are {list(classes)}; they cannot be matched by name. Give every stage the same class "
                "values (classes=[...] on the predictor)"
            )
        order = np.array([preds.classes.index(c) for c in classes])
        logits = None if preds.logits is None else preds.logits[:, order]
        return dataclasses.replace(preds, probs=preds.probs[:, order], logits=logits, classes=classes), classes  # type: ignore[type-var]
    if n_classes is not None and preds.n_classes != n_classes:
        raise ClassMismatchError(
            f"stage {stage!r} returns {preds.n_classes} classes but earlier stages return {n_classes}"
        )
    if classes is not None and preds.classes is None:
        return dataclasses.replace(preds, classes=classes), classes  # type: ignore[type-var]
    return preds, classes if classes is not None else preds.classes
