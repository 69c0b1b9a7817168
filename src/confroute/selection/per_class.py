"""Per-class thresholds: one threshold per predicted class, each class meeting the target.

One global threshold lets an easy class subsidise a hard one: the accepted set can be 99%
accurate overall while the inputs predicted as the hard class are accepted at 90%. Choosing a
threshold per *predicted* class (the router indexes per-class thresholds by the stage's
predicted class) makes the target hold for each class's accepted inputs, and usually accepts more
of the easy classes.

``choose_thresholds(evaluation, target_accuracy=..., per_class=True)`` runs the guaranteed
``target_accuracy`` procedure of :mod:`.two_stage` (Clopper–Pearson bounds tested in fixed
sequences from doubling start points) separately on the inputs predicted as each class
(:func:`select_per_class`). For the ``K`` per-class guarantees to
hold *simultaneously* with probability ``1 - delta``, each class is tested at level ``delta / K``
(Bonferroni). The per-class samples are disjoint, so given the class counts they are independent
and Šidák's ``1 - (1 - delta)^(1/K)`` would also be valid; it is larger than ``delta / K`` by less
than ``delta^2 / 2`` overall, which is not worth a second rule. ``correction="none"`` tests each
class at ``delta``: each class's own guarantee then holds with probability ``1 - delta``, but not
all of them at once.

:func:`compare_thresholds` puts a global and a per-class rule side by side on the same data:
coverage, accuracy, cost, and each class's coverage and accepted accuracy.

References
----------
Geifman & El-Yaniv (2017). Selective classification for deep neural networks. NeurIPS.
Šidák (1967). Rectangular confidence regions for the means of multivariate normal distributions.
JASA.
Sadinle, Lei & Wasserman (2019). Least ambiguous set-valued classifiers with bounded error levels.
JASA (class-conditional guarantees).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import decision
from ..core._deprecation import deprecated_alias
from ..core._json import json_value as _json
from ..core._optional import import_pandas
from ..core._params import DELTA
from ..core.choice import Choice, stage_thresholds
from ..core.classes import as_classes
from ..evaluation.evaluate import Evaluation, OperatingPoint
from ..exceptions import ThresholdWarning
from .choices import PerClassChoice, ThresholdChoice
from .infeasible import warn_infeasible
from .objectives import OBJECTIVES
from .two_stage import select_threshold

__all__ = ["select_per_class", "choose_per_class_thresholds", "PerClassChoice", "compare_thresholds",
           "ThresholdComparison"]


def select_per_class(
    scores: Any,
    predicted_index: Any = None,
    correct: Any = None,
    target_accuracy: float | None = None,
    *,
    delta: float | None = 0.05,
    n_classes: int | None = None,
    classes: Sequence[Any] | None = None,
    correction: str = "bonferroni",
    upper: float = math.inf,
    n_starts: int | None = None,
) -> PerClassChoice:
    """One threshold per predicted class so each class's accepted inputs meet the target.

    The procedure behind ``choose_thresholds(evaluation, target_accuracy=..., per_class=True)``.

    Parameters
    ----------
    scores : array of shape (n,) or Evaluation
        The primary's confidence on calibration data, or an :func:`~confroute.evaluate` result
        made from the primary's predictions (then omit ``predicted_index`` and ``correct``).
    predicted_index : array of int, shape (n,)
        The primary's predicted column per input (what the router indexes thresholds by).
    correct : array of bool, shape (n,)
        Whether the primary is right.
    target_accuracy : float
        Minimum accuracy on the accepted inputs of *each* predicted class.
    delta : float or None, default 0.05
        Failure probability of the guarantee (``None``: empirical, no guarantee).
    n_classes : int, optional
        Number of classes (default: from ``classes``, else the largest index + 1).
    classes : sequence, optional
        Class values, for display and :meth:`PerClassChoice.as_dict`.
    correction : {"bonferroni", "none"}, default "bonferroni"
        ``"bonferroni"``: all classes' guarantees hold together with probability ``1 - delta``
        (each class tested at ``delta / K``, ``K`` the classes predicted at least once).
        ``"none"``: each class's guarantee holds with probability ``1 - delta`` on its own.
    upper : float, default inf
        Threshold given to a class with no feasible threshold: ``inf`` accepts nothing of that
        class (not even a score of exactly 1.0); it survives ``to_dict``/JSON (as ``null``).
        A finite ``upper`` also caps the feasible classes' thresholds.
    n_starts : int, optional
        Fixed-sequence chains per class (default: as many as fit, at most 8).

    Returns
    -------
    PerClassChoice

    Examples
    --------
    Class 1 is harder: at the same confidence it is right less often.

    >>> rng = np.random.default_rng(0)
    >>> n = 6000
    >>> pred = rng.integers(0, 2, n)
    >>> score = rng.uniform(0.5, 1.0, n)
    >>> correct = rng.random(n) < np.where(pred == 0, score, score - 0.05)
    >>> c = select_per_class(score, pred, correct, 0.85, delta=0.05)
    >>> c.feasible, c.class_feasible.tolist(), c.threshold.round(2).tolist()  # optima: 0.7, 0.8
    (True, [True, True], [0.76, 0.87])
    >>> [bool(correct[(pred == k) & (score >= c.threshold[k])].mean() >= 0.85) for k in (0, 1)]
    [True, True]
    """
    DELTA.check(delta, "delta")
    evaluation = scores if isinstance(scores, Evaluation) else None
    if evaluation is not None:
        if predicted_index is not None or correct is not None:
            raise ValueError("with an Evaluation, do not pass predicted_index / correct")
        if evaluation.stage_label_index.size == 0:
            raise ValueError("the Evaluation has no predicted classes; evaluate from predictions")
        s, pred, ok = evaluation.stage_scores[0], evaluation.stage_label_index[0], evaluation.correct[0]
        classes = classes if classes is not None else evaluation.classes
        n_classes = n_classes if n_classes is not None else evaluation.n_classes
    else:
        if predicted_index is None or correct is None:
            raise ValueError("give scores, predicted_index and correct (or an Evaluation)")
        s = np.asarray(scores, dtype=np.float64)
        pred = np.asarray(predicted_index)
        ok = np.asarray(correct)
    if target_accuracy is None:
        raise ValueError("target_accuracy is required")
    target = OBJECTIVES["target_accuracy"].check_target(target_accuracy)
    if s.ndim != 1 or pred.shape != s.shape or ok.shape != s.shape:
        raise ValueError(
            f"scores, predicted_index and correct must have the same shape (n,), got "
            f"{s.shape}, {pred.shape}, {ok.shape}"
        )
    if pred.dtype.kind not in "iu":
        raise ValueError(f"predicted_index must be class indices (integers), got dtype {pred.dtype}")
    if pred.size and pred.min() < 0:
        raise ValueError("predicted_index must be >= 0")
    class_values = as_classes(classes)
    k = n_classes if n_classes is not None else (len(class_values) if class_values else int(pred.max(initial=-1)) + 1)
    if class_values is not None and len(class_values) != k:
        raise ValueError(f"{len(class_values)} class names for {k} classes")
    if pred.size and pred.max() >= k:
        raise ValueError(f"predicted index {int(pred.max())} is out of range for {k} classes")
    if correction not in ("bonferroni", "none"):
        raise ValueError(f"correction must be 'bonferroni' or 'none', got {correction!r}")

    counts = np.bincount(pred, minlength=k)
    tested = int((counts > 0).sum())
    level = None if delta is None else (delta / max(tested, 1) if correction == "bonferroni" else delta)
    thresholds = np.full(k, float(upper))
    feasible = np.zeros(k, dtype=bool)
    choices: list[ThresholdChoice | None] = [None] * k
    for c in range(k):
        mask = pred == c
        if not mask.any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ThresholdWarning)
            ch = select_threshold(s[mask], ok[mask], objective=OBJECTIVES["target_accuracy"], target=target,
                                  delta=level, n_starts=n_starts)
        choices[c] = ch
        feasible[c] = ch.feasible
        if ch.feasible:
            thresholds[c] = min(ch.threshold, float(upper)) if np.isfinite(upper) else ch.threshold
    bad = [c for c in range(k) if counts[c] and not feasible[c]]
    if bad:
        names = [class_values[c] if class_values else c for c in bad]
        warn_infeasible(
            f"no threshold meets accuracy {target:g} for predicted classes {names}"
            + ("" if level is None else f" at level {level:.3g}")
            + f"; they get threshold {upper:g}"
        )
    return _per_class_choice(thresholds, feasible, class_values, target, delta, level, choices, counts,
                             correction, s, pred, evaluation)


def _per_class_choice(
    thresholds: np.ndarray, feasible: np.ndarray, class_values: Any, target: float, delta: float | None,
    level: float | None, choices: list[ThresholdChoice | None], counts: np.ndarray, correction: str,
    scores: np.ndarray, pred: np.ndarray, evaluation: Evaluation | None,
) -> PerClassChoice:
    """The choice with the figures every choice reports (on the whole data)."""
    predicted = [c for c in choices if c is not None]
    all_ok = bool(feasible[counts > 0].all())
    bounds = [c.guaranteed for c in predicted]
    guaranteed = float(min(bounds)) if predicted and all_ok and not np.isnan(bounds).any() else float("nan")
    inner = predicted[0].procedure if predicted else "empirical_loosest"
    procedure = f"per_class_{correction}+{inner}" if delta is not None else f"per_class+{inner}"
    figures: dict[str, Any] = {"coverage": float(decision.accepts(scores, pred, thresholds).mean()) if scores.size else float("nan")}
    if evaluation is not None:
        point = evaluation.at([thresholds])
        figures = {"coverage": point.coverage}
        for name in ("system_accuracy", "cost_per_input", "savings"):
            value = getattr(point, name)
            figures[name] = float("nan") if value is None else float(value)
    return PerClassChoice(
        threshold=thresholds, class_feasible=feasible, classes=class_values, target=float(target), delta=delta,
        level=level, choices=choices, n_predicted=counts, feasible=all_ok, guaranteed=guaranteed,
        procedure=procedure, **figures,
    )


def _choose_per_class_thresholds(
    scores: Any, predicted_labels: Any = None, correct: Any = None, target_accuracy: float | None = None,
    **kwargs: Any,
) -> PerClassChoice:
    return select_per_class(scores, predicted_labels, correct, target_accuracy, **kwargs)


#: Deprecated: ``choose_thresholds(evaluation, target_accuracy=..., per_class=True)``.
choose_per_class_thresholds = deprecated_alias(
    _choose_per_class_thresholds, "choose_per_class_thresholds", "choose_thresholds(..., per_class=True)")


# --------------------------------------------------------------------------- comparison
@dataclass(frozen=True, repr=False)
class ThresholdComparison:
    """Threshold rules side by side on the same data.

    Attributes
    ----------
    overall : dict of str to OperatingPoint
        One operating point per rule (coverage, accuracy, system accuracy, cost, savings).
    by_class : dict of str to dict of str to ndarray
        Per rule: ``n_predicted``, ``n_accepted``, ``coverage`` and ``accepted_accuracy`` per
        predicted class.
    class_values : tuple of str
    """

    overall: dict[str, OperatingPoint]
    by_class: dict[str, dict[str, np.ndarray]]
    class_values: tuple[str, ...]

    def to_pandas(self) -> Any:
        """One row per rule and class (class ``"all"`` is the whole data)."""
        pd = import_pandas()
        return pd.DataFrame(self._rows())

    def _rows(self) -> list[dict[str, Any]]:
        rows = []
        for rule, p in self.overall.items():
            rows.append({"rule": rule, "class": "all", "n_predicted": None, "coverage": p.coverage,
                         "accepted_accuracy": p.accepted_accuracy, "system_accuracy": p.system_accuracy,
                         "cost": p.cost, "savings": p.savings})
            b = self.by_class[rule]
            for c, name in enumerate(self.class_values):
                rows.append({"rule": rule, "class": name, "n_predicted": int(b["n_predicted"][c]),
                             "coverage": float(b["coverage"][c]),
                             "accepted_accuracy": float(b["accepted_accuracy"][c]),
                             "system_accuracy": None, "cost": None, "savings": None})
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [{k: _json(v) for k, v in r.items()} for r in self._rows()]}

    def __repr__(self) -> str:
        lines = ["ThresholdComparison"]
        lines.append(f"  {'rule':<12} {'class':<12} {'coverage':>9} {'acc(accepted)':>14} {'system acc':>11}")
        for r in self._rows():
            sys_acc = "" if r["system_accuracy"] is None else f"{r['system_accuracy']:.4f}"
            lines.append(f"  {r['rule']:<12} {r['class']:<12} {r['coverage']:>9.1%} "
                         f"{r['accepted_accuracy']:>14.4f} {sys_acc:>11}")
        return "\n".join(lines)


def compare_thresholds(result: Evaluation, rules: Mapping[str, Any]) -> ThresholdComparison:
    """Compare threshold rules (global floats, per-class arrays or mappings) on one evaluation.

    Parameters
    ----------
    result : Evaluation
        From :func:`~confroute.evaluate` with the primary's predictions (so predicted class_values
        are known).
    rules : mapping of str to threshold
        E.g. ``{"global": choice.threshold, "per-class": per_class_choice}``.

    Returns
    -------
    ThresholdComparison

    Examples
    --------
    >>> from confroute import evaluate
    >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    >>> res = evaluate(labels=[0, 1, 1, 1], primary=probs, fallback=np.array([0, 1, 1, 1]))
    >>> cmp = compare_thresholds(res, {"global": 0.75, "per-class": [0.85, 0.65]})
    >>> round(cmp.overall["global"].accepted_accuracy, 4), cmp.overall["per-class"].accepted_accuracy
    (0.6667, 1.0)
    >>> cmp.by_class["per-class"]["coverage"].tolist()
    [0.5, 1.0]
    """
    if result.stage_label_index.size == 0:
        raise ValueError(
            "compare_thresholds needs the primary's predicted class_values; evaluate from predictions"
        )
    pred = result.stage_label_index[0]
    k = result.n_classes
    names = tuple(str(c) for c in (result.classes or range(k)))
    overall: dict[str, OperatingPoint] = {}
    by_class: dict[str, dict[str, np.ndarray]] = {}
    for rule, thr in rules.items():
        unwrapped = stage_thresholds(thr, f"rule {rule!r}")  # refuses an Evaluation
        thr = unwrapped[0] if isinstance(thr, Choice) else unwrapped
        resolved = decision.resolve_threshold(decision.check_threshold(thr, None, f"rule {rule!r}"), result.classes,
                                              k, f"rule {rule!r}")
        overall[rule] = result.at([resolved])
        accept = decision.accepts(result.stage_scores[0], pred, resolved)
        n_pred = np.bincount(pred, minlength=k)
        n_acc = np.bincount(pred[accept], minlength=k)
        n_ok = np.bincount(pred[accept & result.correct[0]], minlength=k)
        with np.errstate(invalid="ignore", divide="ignore"):
            by_class[rule] = {
                "n_predicted": n_pred,
                "n_accepted": n_acc,
                "coverage": np.where(n_pred > 0, n_acc / np.maximum(n_pred, 1), np.nan),
                "accepted_accuracy": np.where(n_acc > 0, n_ok / np.maximum(n_acc, 1), np.nan),
            }
    return ThresholdComparison(overall, by_class, tuple(names))
