"""From stages' predictions (or a router run once) to the arrays and table of an evaluation.

:func:`fields_from_predictions` and :func:`fields_from_router` return the fields of an
:class:`~confroute.Evaluation` (a plain dict), so this module never needs the result type:
:mod:`confroute.evaluation.result` builds the object from them. Two stages walk the threshold
path once (:func:`~confroute.evaluation.sweep.threshold_sweep`, exact); cascades count on a grid
(:func:`~confroute.evaluation.grid.cascade_counts`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..calibration import metrics
from ..core import decision
from ..core.batch import as_batch, n_rows, slice_rows
from ..core.classes import Classes, align, as_classes, label_indices
from ..core.cost import CostModel
from ..core.scores import checked_scores, resolve_score, score_name
from ..core.types import Predictions
from .grid import cascade_counts, grids_for
from .sweep import threshold_sweep
from .table import table_from_counts

__all__ = ["fields_from_predictions", "fields_from_router", "default_names"]


def default_names(k: int) -> list[str]:
    """Stage names when none are given: primary/fallback, or stage0..stageN-1."""
    return ["primary", "fallback"] if k == 2 else [f"stage{i}" for i in range(k)]


def _as_predictions(x: Any, name: str) -> Any:
    """Predictions stay; an (n, k) array becomes validated probabilities; (n,) labels stay."""
    if x is None or isinstance(x, Predictions):
        return x
    arr = np.asarray(x)
    if arr.ndim == 2:
        return Predictions.from_probs(arr, source=name)
    if arr.ndim == 1:
        return arr
    raise ValueError(f"{name} must be Predictions, an (n, k) probability matrix or (n,) labels; got {arr.shape}")


def _class_space(stages: list[Any], labels: np.ndarray, names: list[str]) -> tuple[list[Any], Classes | None, int]:
    """Align the stages that give probabilities by class name; the classes and their number."""
    classes: Classes | None = None
    k: int | None = None
    out = list(stages)
    for s, p in enumerate(stages):
        if isinstance(p, Predictions):
            out[s], classes = align(p, classes, k, names[s])
            k = out[s].n_classes
    if k is None:  # only label vectors: the classes are the values that occur
        try:
            values = np.unique(np.concatenate([np.asarray(v, dtype=object) for v in stages if v is not None]
                                              + [labels.astype(object)]))
        except TypeError:
            raise ValueError(
                "the labels and the stages' predicted labels mix types (e.g. numbers and strings); "
                "give them all in one label space"
            ) from None
        classes = as_classes(values)
        k = len(values)
    return out, classes, k


def _label_index(
    stages: list[Any], labels: Any, names: list[str]
) -> tuple[list[Any], Classes | None, int, np.ndarray, np.ndarray]:
    """Stages aligned; classes; their number; true labels and each stage's predictions as columns."""
    if labels is None:
        raise ValueError("labels are required")
    y_raw = np.asarray(labels)
    if y_raw.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {y_raw.shape}")
    n, n_stages = y_raw.shape[0], len(stages)
    if len(names) != n_stages or len(set(names)) != n_stages:
        raise ValueError(f"stage_names must name the {n_stages} stages distinctly, got {list(names)}")
    stages, classes, k = _class_space(stages, y_raw, names)
    y = label_indices(y_raw, classes, k, what="labels", owner=f"stage {names[0]!r}")
    pred_index = np.full((n_stages, n), -1, dtype=np.int64)
    for s, p in enumerate(stages):
        if p is None:
            continue
        if isinstance(p, Predictions):
            if len(p) != n:
                raise ValueError(f"stage {names[s]!r}: {len(p)} predictions for {n} labels")
            pred_index[s] = p.label_index
        else:
            if np.shape(p) != (n,):
                raise ValueError(f"stage {names[s]!r}: predicted labels must have shape ({n},), got {np.shape(p)}")
            pred_index[s] = label_indices(p, classes, k, what=f"predicted labels of stage {names[s]!r}",
                                          owner=f"stage {names[0]!r}")
    return stages, classes, k, y, pred_index


def _counts(
    scores: list[np.ndarray], correct: np.ndarray, grid: Any, full_table: bool, cm: CostModel | None
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Grids, row thresholds, answered and correct counts per row, the path order (two stages)
    and the exact cost per row (two stages with prices)."""
    n_stages = correct.shape[0]
    if n_stages == 2 and isinstance(grid, (int, np.integer)):
        sweep = threshold_sweep(scores[0], correct[0], correct[1], cost_model=cm)
        assert sweep.system_correct is not None
        m = sweep.n_accepted
        n = correct.shape[1]
        answered = np.stack([m, n - m], axis=1)
        right = np.stack([sweep.primary_correct, sweep.system_correct - sweep.primary_correct], axis=1)
        return (sweep.row_thresholds,), sweep.row_thresholds[:, None], answered, right, sweep.order, sweep.cost
    grid_list = grids_for(grid, scores)
    cost = None
    if full_table:
        answered, right = cascade_counts(scores, list(correct), grid_list)
        thresholds = np.array(list(itertools.product(*grid_list)), dtype=np.float64).reshape(-1, n_stages - 1)
        if cm is not None and cm.input_prices is not None:
            # Prices per input: stage s's answers weighted by what each input costs when s answers it.
            price = cm.answered_by(correct.shape[1])
            cost = np.sum([cascade_counts(scores, list(correct), grid_list, weights=price[s])[0][:, s]
                           for s in range(n_stages)], axis=0)
    else:
        answered = right = np.zeros((0, n_stages), dtype=np.int64)
        thresholds = np.zeros((0, n_stages - 1))
    return tuple(grid_list), thresholds, answered, right, None, cost


def measure(
    stages: list[Any], labels: Any, score_list: list[np.ndarray], score_names: list[str],
    names: list[str], cost_model: Any, grid: Any, *, raw: Predictions | None = None,
    full_table: bool = True,
) -> dict[str, Any]:
    """The fields of an evaluation from every stage's predictions and every non-last stage's scores."""
    n_stages = len(stages)
    last_known = stages[-1] is not None
    stages, classes, k, y, pred_index = _label_index(stages, labels, names)
    n = y.shape[0]
    correct = pred_index == y[None, :]
    scores = [checked_scores(s, n, names[i]) if np.shape(s) == (n,) else _shape_error(s, n)
              for i, s in enumerate(score_list)]
    cm = CostModel.coerce(cost_model, n_stages)
    grids, thresholds, answered, right, order, cost = _counts(scores, correct, grid, full_table, cm)
    exhaustive = order is not None
    table = table_from_counts(thresholds, answered, right, n, cm, last_known, cost=cost)

    stage_accuracy = {names[s]: float(correct[s].mean()) if n else float("nan")
                      for s in range(n_stages) if s < n_stages - 1 or last_known}
    reliability = reliability_raw = None
    if isinstance(stages[0], Predictions) and n:
        reliability = metrics.reliability_table(stages[0].probs, y)
        if raw is not None:
            reliability_raw = metrics.reliability_table(raw.probs, y)
    s0, c0 = scores[0], correct[0]
    if order is None:
        _, order, ends = decision.threshold_path(s0)
    else:  # the two-stage sweep walked the path already: its accepted counts are the path's ends
        ends = answered[:, 0]
    aurc = metrics.aurc_sorted(s0[order], ~c0[order], ends) if n else float("nan")
    eaurc = aurc - metrics.optimal_aurc(n, int((~c0).sum())) if n else float("nan")
    return dict(
        n=n, stage_names=tuple(names), score=tuple(score_names[: n_stages - 1]), classes=classes,
        exhaustive=exhaustive, grids=grids, table=table, stage_accuracy=stage_accuracy, cost_model=cm,
        stage_scores=np.stack(scores) if scores else np.empty((0, n)), correct=correct,
        stage_label_index=pred_index, label_index=y, n_classes=k, last_known=last_known,
        aurc=aurc, eaurc=eaurc,
        ece=None if reliability is None else reliability.ece,
        ece_before_calibration=None if reliability_raw is None else reliability_raw.ece,
        reliability=reliability, reliability_before_calibration=reliability_raw,
    )


def _shape_error(s: Any, n: int) -> np.ndarray:
    raise ValueError(f"scores must have shape ({n},) to match the labels, got {np.shape(s)}")


def _scores_of(
    preds: list[Any], scores: Any, score: Any, inputs: Any
) -> tuple[list[np.ndarray], list[str]]:
    """Every non-last stage's scores (given, or ``score`` applied to its predictions) and names."""
    n_scored = len(preds) - 1
    score_fns = list(score) if isinstance(score, (list, tuple)) else [score] * n_scored
    if len(score_fns) < n_scored:
        raise ValueError(f"give one score per non-last stage ({n_scored}), got {len(score_fns)}")
    if scores is not None:
        arr = np.asarray(scores, dtype=np.float64)
        score_list = [arr] if arr.ndim == 1 else list(arr)
        if len(score_list) != n_scored:
            raise ValueError(f"give scores for the {n_scored} non-last stage(s), got {len(score_list)}")
        return score_list, ["scores"] * n_scored
    score_list = []
    for s in range(n_scored):
        if not isinstance(preds[s], Predictions):
            raise ValueError(f"stage {s} is a label vector: give its confidence as scores=...")
        score_list.append(np.asarray(resolve_score(score_fns[s])(preds[s], inputs), dtype=np.float64))
    return score_list, [score_name(f) for f in score_fns[:n_scored]]


def fields_from_predictions(
    labels: Any, stages: Sequence[Any], *, scores: Any = None, score: Any = "max_prob",
    calibrator: Any = None, cost_model: Any = None, stage_names: Sequence[str] | None = None,
    grid: Any = 20, inputs: Any = None, table: bool = True,
) -> dict[str, Any]:
    """The fields of :meth:`Evaluation.from_predictions <confroute.Evaluation.from_predictions>`."""
    stages = list(stages)
    if len(stages) < 2:
        raise ValueError(f"give the predictions of at least 2 stages, got {len(stages)}")
    names = list(stage_names) if stage_names is not None else default_names(len(stages))
    preds = [_as_predictions(p, default_names(len(stages))[i] if stage_names is None else stage_names[i])
             for i, p in enumerate(stages)]
    raw = None
    if calibrator is not None:
        if not isinstance(preds[0], Predictions):
            raise ValueError("calibrator needs the first stage's probabilities or logits, not labels")
        raw = preds[0]
        preds[0] = Predictions.from_probs(calibrator.transform(raw.log_scores()), raw.classes,
                                          source="calibrator")
    score_list, score_names = _scores_of(preds, scores, score, inputs)
    return measure(preds, labels, score_list, score_names, names, cost_model, grid, raw=raw, full_table=table)


def fields_from_router(
    router: Any, inputs: Any, labels: Any, *, cost_model: Any = None, grid: Any = 20,
    progress: bool | None = None, chunk_size: int = 4096, table: bool = True,
) -> dict[str, Any]:
    """The fields of :meth:`Evaluation.from_router <confroute.Evaluation.from_router>`."""
    stage_preds, scores, raw = router_arrays(router, inputs, int(chunk_size), progress)
    cm = CostModel.coerce(cost_model if cost_model is not None else getattr(router, "cost_model", None),
                          router.n_stages)
    if cm is not None and cm.token_stages:
        # Every stage ran on every input: price each input by the tokens it used at each stage.
        batch = as_batch(inputs)
        cm = cm.with_usage([router.stage_usage(s, batch, always=True) if s in cm.token_stages else None
                            for s in range(router.n_stages)])
    score_names = [score_name(s) for s in router.score[:-1]]
    return measure(stage_preds, labels, scores, score_names, list(router.names), cm, grid, raw=raw,
                   full_table=table)


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, n)) for i in range(0, n, size)] or [(0, 0)]


def _progress(iterable: Any, total: int, progress: bool | None, desc: str) -> Any:
    if progress is False:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if progress:
            raise ImportError("progress=True needs tqdm: pip install 'confroute[progress]'") from None
        return iterable
    return tqdm(iterable, total=total, desc=desc, unit="chunk", disable=None if progress is None else False)


def router_arrays(
    router: Any, inputs: Any, chunk_size: int, progress: bool | None
) -> tuple[list[Predictions], list[np.ndarray], Predictions | None]:
    """Run each stage once on every input (in chunks, for a progress bar) and score it.

    Returns the stages' calibrated predictions, every non-last stage's scores, and the first
    stage's uncalibrated predictions when it has a calibrator.
    """
    inputs = as_batch(inputs)
    n = n_rows(inputs)
    n_stages = router.n_stages
    raw_ok = router.calibrators[0] is not None
    calibrate = router.calibrated
    parts: list[list[Predictions]] = [[] for _ in range(n_stages)]
    raw_parts: list[Predictions] = []
    score_parts: list[list[np.ndarray]] = [[] for _ in range(n_stages - 1)]
    slices = _chunks(n, chunk_size)
    for lo, hi in _progress(slices, len(slices), progress, "evaluate"):
        chunk = slice_rows(inputs, lo, hi)
        uncalibrated = router.stage_predictions(chunk, calibrated=False)
        raw_parts.append(uncalibrated[0])
        preds = [calibrate(s, p) for s, p in enumerate(uncalibrated)]
        for s in range(n_stages):
            parts[s].append(preds[s])
        for s in range(n_stages - 1):
            score_parts[s].append(np.asarray(router.stage_score(s, preds[s], chunk), dtype=np.float64))
    stage_preds = [Predictions.concat(p) for p in parts]
    raw = Predictions.concat(raw_parts) if raw_ok else None
    return stage_preds, [np.concatenate(p) for p in score_parts], raw
