"""The builder: :func:`evaluate` measures a routed system, for any number of stages.

Each model runs at most once per input; everything after that is array work on three things per
input: each stage's score, each stage's predicted class and whether each stage is right. The
result holds one table row per threshold candidate:

* **two stages** (the fast path): one row per *distinct* primary score, exact. One walk along
  :func:`confroute.core.decision.threshold_path` (one sort) and cumulative sums of "primary
  correct", "fallback correct" and the prices give every row in O(n log n)
  (:func:`threshold_sweep`); tied scores are accepted together, so they make one row.
* **N stages**: one row per combination of a grid of candidate thresholds per non-last stage
  (:func:`confroute.evaluation.grid.cascade_counts`).

Where things live: :func:`evaluate` here; the result :class:`~confroute.Evaluation` in
:mod:`confroute.evaluation.result` (its table and :class:`~confroute.OperatingPoint` in
:mod:`confroute.evaluation.table`, its text display in :mod:`confroute.evaluation.display`, its
figures in :mod:`confroute.evaluation.plotting`); the sweep in :mod:`confroute.evaluation.sweep`;
the arrays in :mod:`confroute.evaluation.build`. The names are re-exported here, so
``from confroute.evaluation.evaluate import evaluate, Evaluation`` keeps working.

Whatever the number of stages, :meth:`Evaluation.at` gives the exact figures at any thresholds
(global or per class) through the library's one decision rule
(:func:`confroute.core.decision.answering_stage`), and costs come from the
:class:`~confroute.CostModel` alone.

Labels are the user's own label values, matched to the stages' classes by value
(:func:`confroute.core.classes.label_indices`); stages are aligned by class name.

Conventions
-----------
* An input is accepted by a stage by :func:`confroute.core.decision.accepts` (``score >= threshold``);
  the last stage answers the rest.
* The first row of every table has threshold ``+inf`` everywhere: nothing accepted before the last
  stage. For two stages the last row accepts everything (the primary alone).
* ``accepted_accuracy`` (of the first stage) is ``nan`` where it accepts nothing.
* Cost follows :class:`~confroute.CostModel`: an input answered by stage ``s`` paid stages ``0..s``;
  ``savings = 1 - cost / cost of sending every input to the last stage alone``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..core._deprecation import deprecated_alias, warn_renamed
from .result import Evaluation
from .sweep import Sweep, pareto_front, threshold_sweep  # noqa: F401 - importable from here, as before the split
from .table import OperatingPoint, best_row, table_from_counts  # noqa: F401 - importable from here too

#: The builder; :class:`Evaluation` and the sweep live in their own modules (``result``, ``sweep``,
#: ``table``) and stay importable from here.
__all__ = ["evaluate"]

#: Deprecated names of :class:`Evaluation` (kept for one release; they warn on access).
RENAMED_CLASSES = {"EvaluationResult": "Evaluation", "CascadeEvaluation": "Evaluation"}


def __getattr__(name: str) -> Any:
    if name in RENAMED_CLASSES:
        warn_renamed(name, RENAMED_CLASSES[name])
        return Evaluation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def evaluate(
    router: Any = None,
    inputs: Any = None,
    labels: Any = None,
    *,
    primary: Any = None,
    fallback: Any = None,
    stages: Sequence[Any] | None = None,
    scores: Any = None,
    score: Any = "max_prob",
    calibrator: Any = None,
    cost_model: Any = None,
    stage_names: Sequence[str] | None = None,
    progress: bool | None = None,
    chunk_size: int = 4096,
    grid: int | Sequence[Any] = 20,
    per_class_thresholds: Any = None,
    table: bool = True,
) -> Evaluation:
    """Measure a routed system at every threshold candidate, running each model once.

    Two ways to call it (the same as :meth:`Evaluation.from_router` and
    :meth:`Evaluation.from_predictions`):

    * ``evaluate(router, inputs, labels)``: runs every stage of a router once on all inputs
      (calibrated and scored as the router does); prices from ``router.cost_model``.
    * ``evaluate(labels=y, stages=[...])`` or ``evaluate(labels=y, primary=..., fallback=...)``:
      from precomputed predictions, for when the models already ran (or run elsewhere).

    Parameters
    ----------
    router : Cascade or ThresholdRouter, optional
    inputs : batch, optional
        The router's inputs; with precomputed predictions, only needed by scores that read inputs.
    labels : array of shape (n,)
        True labels, in the stages' own label space: their class values (``1..4`` for a model
        trained on labels ``1..4``; names for a model with named classes), or column indices for
        models that do not name their classes. Matched by value; a label that is not a class is
        an error naming both sets.
    primary, fallback : Predictions, (n, k) array or (n,) labels, optional
        Two stages' predictions (``fallback=None``: system accuracy is ``nan``).
    stages : sequence, optional
        Every stage's predictions in cascade order, instead of ``primary``/``fallback``.
    scores, score, calibrator, stage_names, grid, per_class_thresholds, table
        See :meth:`Evaluation.from_predictions`.
    cost_model : CostModel or sequence of float, optional
        Per-input price of each stage.
    progress : bool or None, default None
        Progress bar over chunks of inputs when running a router (``None``: when tqdm is there).
    chunk_size : int, default 4096
        Inputs per ``stage_predictions`` call when running a router.

    Returns
    -------
    Evaluation

    Examples
    --------
    >>> import numpy as np
    >>> from confroute import Predictions
    >>> y = np.array([0, 1, 1, 0])
    >>> primary = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.45, 0.55]])
    >>> res = evaluate(labels=y, primary=primary, fallback=np.array([0, 1, 1, 1]),
    ...                cost_model=[1.0, 10.0])
    >>> res.stage_accuracy
    {'primary': 0.5, 'fallback': 0.75}
    >>> p = res.at(0.65)  # accepts 0.9 and 0.7 (both right); the fallback gets 1 of the other 2
    >>> p.coverage, p.accepted_accuracy, p.system_accuracy, p.cost, p.savings
    (0.5, 1.0, 0.75, 24.0, 0.4)

    Class names are matched by name, whatever each stage's column order:

    >>> a = Predictions.from_probs([[.9, .1], [.2, .8]], ["neg", "pos"])
    >>> b = Predictions.from_probs([[.1, .9], [.8, .2]], ["pos", "neg"])
    >>> evaluate(labels=["neg", "pos"], primary=a, fallback=b).stage_accuracy
    {'primary': 1.0, 'fallback': 1.0}
    """
    if router is not None:
        if primary is not None or fallback is not None or stages is not None or scores is not None:
            raise ValueError("give either a router (with inputs) or precomputed predictions, not both")
        if inputs is None or labels is None:
            raise ValueError("evaluate(router, inputs, labels): inputs and labels are required")
        if calibrator is not None:
            raise ValueError("a router applies its own calibrators; pass calibrator=None")
        if getattr(router, "n_stages", 0) < 2:
            raise ValueError("evaluate() needs a router with at least two stages")
        result = Evaluation.from_router(router, inputs, labels, cost_model=cost_model, grid=grid,
                                        progress=progress, chunk_size=chunk_size,
                                        per_class_thresholds=per_class_thresholds, table=table)
        if stage_names is not None:
            result = replace(result, stage_names=tuple(stage_names))
        return result
    if stages is not None:
        if primary is not None or fallback is not None:
            raise ValueError("give stages=[...] or primary/fallback, not both")
    else:
        if primary is None:
            raise ValueError("give a router, or precomputed predictions as stages=[...] or primary=... (and fallback=...)")
        stages = [primary, fallback]
    return Evaluation.from_predictions(
        labels, stages, scores=scores, score=score, calibrator=calibrator, cost_model=cost_model,
        stage_names=stage_names, grid=grid, inputs=inputs, per_class_thresholds=per_class_thresholds,
        table=table,
    )


#: Deprecated: :func:`evaluate` handles any number of stages (``table=False`` skips the table).
evaluate_cascade = deprecated_alias(evaluate, "evaluate_cascade", "evaluate")
