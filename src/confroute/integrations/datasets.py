"""Route or evaluate a Hugging Face ``datasets.Dataset`` with ``map(batched=True)``.

For users whose data lives in ``datasets``: the router runs batch by batch inside
``Dataset.map``, and the answers come back as new columns of the dataset (Arrow-backed, cached
by ``datasets`` like any other ``map``), in row order:

* :func:`route_dataset` adds the routed answer per row: the columns of the one routing output
  schema (:mod:`confroute.core.schema`: label, answering stage index and name, confidence,
  degraded flag and error, cost, each stage's own answer);
* :func:`predict_dataset` adds every stage's (calibrated) class probabilities, once per row;
* :func:`evaluate_dataset` evaluates every threshold from those columns (computing them first
  when they are missing), so re-evaluating with other prices or labels runs no model.

``datasets`` is an optional extra: ``pip install 'confroute[datasets]'``; it is imported only to
read a ``ClassLabel`` feature, the functions themselves take the dataset you pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import schema
from ..core.types import Predictions
from ..routing.stagewise import declared_classes
from .io import pick_text_columns

__all__ = ["route_dataset", "predict_dataset", "evaluate_dataset", "probability_columns"]


def _check_dataset(dataset: Any, input_column: str | None, where: str) -> str:
    if not (hasattr(dataset, "map") and hasattr(dataset, "column_names") and hasattr(dataset, "features")):
        raise TypeError(
            f"{where} takes a datasets.Dataset (pip install 'confroute[datasets]'), got "
            f"{type(dataset).__name__}; for lists and arrays call the router directly"
        )
    if isinstance(dataset.column_names, dict):
        raise TypeError(f"{where} takes one split (a Dataset), got a DatasetDict with splits "
                        f"{list(dataset.column_names)}: pass dataset[split]")
    return pick_text_columns(input_column, list(dataset.column_names), where)[0]


def _check_new_columns(dataset: Any, names: Sequence[str], where: str) -> None:
    clash = sorted(set(names) & set(dataset.column_names))
    if clash:
        raise ValueError(
            f"{where}: the dataset already has columns {clash}; pass another prefix= or "
            "dataset.remove_columns(...) first (nothing is overwritten)"
        )


def route_dataset(
    router: Any,
    dataset: Any,
    input_column: str | None = None,
    *,
    batch_size: int = 256,
    prefix: str = "route_",
    **map_kwargs: Any,
) -> Any:
    """Route every row of ``dataset`` and add the answers as columns.

    Parameters
    ----------
    router : Cascade or ThresholdRouter
    dataset : datasets.Dataset
    input_column : str, optional
        The column the router reads (default: the first usual text column, as
        :func:`~confroute.load_texts` picks it).
    batch_size : int, default 256
        Rows per ``map`` batch, and so per router call.
    prefix : str, default "route_"
        Prefix of the new columns: those of the one routing output schema
        (:mod:`confroute.core.schema`): ``label`` (class value, ``None`` where abstained),
        ``label_index`` (column index, ``-1`` where abstained), ``confidence``, ``stage`` (index
        of the answering stage, ``-1`` where abstained), ``stage_name``, ``degraded``, ``error``,
        ``cost`` (with a cost model), and each stage's ``<name>_label``, ``<name>_label_index``
        and ``<name>_score``. Their types are fixed (declared as the dataset's ``features`` when
        the stages declare their classes), whatever the rows of a batch.
    **map_kwargs
        Passed to ``Dataset.map`` (``num_proc``, ``load_from_cache_file``, ``desc``...).

    Returns
    -------
    datasets.Dataset
        The input columns plus the new ones, rows in the same order.
    """
    column = _check_dataset(dataset, input_column, "route_dataset")
    has_cost = getattr(router, "cost_model", None) is not None
    names = schema.column_names(router.names, has_cost)
    _check_new_columns(dataset, [prefix + n for n in names], "route_dataset")
    map_kwargs.setdefault("features", _features(dataset, router, has_cost, prefix))

    def route_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        lists = schema.json_columns(router.route(batch[column]).columns())
        return {prefix + k: v for k, v in lists.items()}

    return dataset.map(route_batch, batched=True, batch_size=batch_size, **_fingerprinted(map_kwargs))


def _fingerprinted(map_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``map_kwargs`` with a fresh ``new_fingerprint`` unless the caller gave one.

    The batch function holds the router (its models, locks, threads), which ``datasets`` cannot
    hash: it then logs a warning and uses a random fingerprint. Giving one ourselves does the same
    without the warning (the result is never taken from a cache of an earlier call).
    """
    if "new_fingerprint" in map_kwargs:
        return map_kwargs
    from datasets.fingerprint import generate_random_fingerprint

    return {**map_kwargs, "new_fingerprint": generate_random_fingerprint()}


def _features(dataset: Any, router: Any, has_cost: bool, prefix: str) -> Any:
    """The dataset's features plus the result columns' fixed types; ``None`` (inferred by
    ``datasets``) when no stage declares its classes (their type is known only once they answer)."""
    classes = declared_classes(router, router.n_stages - 1) if hasattr(router, "stages") else None
    if classes is None:
        return None
    import datasets

    features = dataset.features.copy()
    for name, kind in schema.value_types(router.names, has_cost, classes).items():
        features[prefix + name] = datasets.Value(kind)
    return features


def probability_columns(router: Any, prefix: str = "probs_") -> list[str]:
    """Names of the per-stage probability columns :func:`predict_dataset` adds."""
    return [f"{prefix}{name}" for name in router.names]


def predict_dataset(
    router: Any,
    dataset: Any,
    input_column: str | None = None,
    *,
    batch_size: int = 256,
    prefix: str = "probs_",
    calibrated: bool = True,
    **map_kwargs: Any,
) -> Any:
    """Add every stage's class probabilities (one list column per stage) to ``dataset``.

    Each stage runs once on every row (as :func:`~confroute.evaluate` needs), calibrated as the
    router calibrates unless ``calibrated=False``. The columns are
    :func:`probability_columns` ``(router, prefix)``.
    """
    column = _check_dataset(dataset, input_column, "predict_dataset")
    cols = probability_columns(router, prefix)
    _check_new_columns(dataset, cols, "predict_dataset")

    def predict_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        preds = router.stage_predictions(batch[column], calibrated=calibrated)
        return {c: p.probs.tolist() for c, p in zip(cols, preds)}

    return dataset.map(predict_batch, batched=True, batch_size=batch_size, **_fingerprinted(map_kwargs))


def _labels(dataset: Any, label_column: str, classes: tuple[str, ...] | None) -> np.ndarray:
    """Gold labels as the stages' class names when both sides name classes (a ``ClassLabel``
    column and named stages), else as they are stored (class indices)."""
    if label_column not in dataset.column_names:
        raise KeyError(
            f"evaluate_dataset: no label column {label_column!r}; columns are {dataset.column_names}"
        )
    raw = np.asarray(dataset[label_column])
    feature = dataset.features[label_column]
    names = getattr(feature, "names", None)
    if names is not None and classes is not None:
        # Compare by name: the dataset's label order need not be the model's column order.
        if raw.size and (raw.min() < 0 or raw.max() >= len(names)):
            raise ValueError(f"label column {label_column!r} holds values outside its ClassLabel range "
                             f"(-1 marks unlabelled rows in many hub datasets: filter them out first)")
        unknown = sorted(set(names) - set(classes))
        if unknown:
            from ..exceptions import ClassMismatchError

            raise ClassMismatchError(
                f"label column {label_column!r} names classes {list(names)} but the router's classes are "
                f"{list(classes)} ({unknown} unknown); rename with dataset.cast_column or "
                "dataset.align_labels_with_mapping, or give the router classes=... that match"
            )
        return np.asarray(names, dtype=object)[raw]
    return raw


def evaluate_dataset(
    router: Any,
    dataset: Any,
    input_column: str | None = None,
    label_column: str = "label",
    *,
    batch_size: int = 256,
    prefix: str = "probs_",
    **evaluate_kwargs: Any,
) -> tuple[Any, Any]:
    """Evaluate ``router`` at every threshold on a labelled ``dataset``.

    The stages' probabilities come from the columns :func:`predict_dataset` adds; when they are
    missing they are computed first (each stage once per row, with ``map(batched=True)``).

    Parameters
    ----------
    router : Cascade or ThresholdRouter
    dataset : datasets.Dataset
    input_column : str, optional
        The column the router reads (only read when the probability columns are missing, or
        when a score reads the inputs).
    label_column : str, default "label"
        Gold labels: a ``ClassLabel`` column is compared by class name with named stages;
        otherwise the values are class indices or class names, as for
        :func:`~confroute.evaluate`.
    batch_size, prefix
        As for :func:`predict_dataset`.
    **evaluate_kwargs
        Passed to :func:`~confroute.evaluate` (``cost_model``, ``grid``, ``per_class_thresholds``...).

    Returns
    -------
    (Evaluation, datasets.Dataset)
        The evaluation, and the dataset with the probability columns (reuse it to evaluate
        again without running the models).
    """
    from ..evaluation.evaluate import evaluate

    cols = probability_columns(router, prefix)
    present = [c in dataset.column_names for c in cols]
    if not all(present):
        if any(present):
            raise ValueError(f"evaluate_dataset: some probability columns are missing: "
                             f"{[c for c, p in zip(cols, present) if not p]}")
        dataset = predict_dataset(router, dataset, input_column, batch_size=batch_size, prefix=prefix)
    classes = router.stages[0].classes if hasattr(router, "stages") else None
    stages = [Predictions.from_probs(np.asarray(dataset[c], dtype=np.float64), classes, source=c)
              for c in cols]
    y = _labels(dataset, label_column, classes)
    scores = list(router.score)[: len(cols) - 1]
    inputs = None
    if any(not isinstance(s, str) for s in scores):  # a score that may read the inputs
        inputs = dataset[_check_dataset(dataset, input_column, "evaluate_dataset")]
    evaluate_kwargs.setdefault("cost_model", getattr(router, "cost_model", None))
    evaluate_kwargs.setdefault("stage_names", tuple(router.names))
    if len(stages) == 2:
        result = evaluate(inputs=inputs, labels=y, primary=stages[0], fallback=stages[1], score=scores[0],
                          **evaluate_kwargs)
    else:
        result = evaluate(inputs=inputs, labels=y, stages=stages, score=scores, **evaluate_kwargs)
    return result, dataset
