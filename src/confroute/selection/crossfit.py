"""Cross-fitted calibration and threshold choice on the evaluation data itself.

When there is no labelled split the models never saw, the data you evaluate on has to serve
for calibration and threshold choice too. Doing all three on the same inputs flatters the
result: the threshold is tuned to those very labels. :func:`cross_fit_thresholds` splits the data
into ``K`` stratified folds; for each fold it fits the calibrator (temperature scaling by
default) and chooses the threshold with :func:`confroute.choose_thresholds` on the other
``K - 1`` folds, then applies both to the held-out fold. It is a thin wrapper: every fold's
threshold comes from the one selection path, with the same objective, the same procedure and the
same guarantee (``target_relative_accuracy`` is the paired certificate on every fold). Every input is therefore
scored, accepted or deferred by a rule chosen without its own label, and the pooled held-out
figures estimate what the procedure delivers on new data from the same source (cross-fitting,
Chernozhukov et al. 2018; for the K-fold estimate of a tuned procedure, Hastie, Tibshirani &
Friedman 2009, sec. 7.10).

The rule to deploy is the same procedure refitted on all the data (``final``). The held-out
figures describe that procedure, not this one threshold; they are the check that the target is
met on inputs the choice did not see.

Why not calibrate on the training data? Models fitted on it are more confident and more
accurate there than anywhere else, so a temperature fitted on it barely moves (SST-2: T = 1.03
on train against 1.9 on held-out dev) and a threshold chosen there is far too loose: see
``docs/calibration.md``.

References
----------
Chernozhukov, Chetverikov, Demirer, Duflo, Hansen, Newey & Robins (2018). Double/debiased
machine learning for treatment and structural parameters. The Econometrics Journal 21(1).
Hastie, Tibshirani & Friedman (2009). The Elements of Statistical Learning, 2nd ed., sec. 7.10.
Clopper & Pearson (1934). Biometrika 26(4) (the bounds behind ``needed_n``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..calibration.calibrators import TemperatureScaler
from ..core import decision
from ..core._deprecation import deprecated_alias
from ..core._json import json_value as _json
from ..core._params import DELTA, check_int
from ..core.classes import label_indices
from ..core.types import Predictions
from ..evaluation.evaluate import Evaluation, evaluate
from ..exceptions import ThresholdWarning
from .bounds import clopper_pearson
from .choices import ThresholdChoice
from .choose import choose_thresholds
from .objectives import KEYWORDS, Objective, objective_in, objective_of
from .certificate import path_counts
from .paired import select_paired
from .planner import plan_labels

__all__ = [
    "CrossFitResult",
    "CrossFittedCalibrator",
    "FoldResult",
    "cross_fit_calibration",
    "cross_fit_thresholds",
    "cross_fit_threshold",
]


class CrossFittedCalibrator:
    """Each fold's calibrator applied to its own held-out rows.

    ``transform`` takes the log-scores of the very inputs :func:`cross_fit_thresholds` ran on, in
    the same order, and calibrates row ``i`` with the calibrator fitted without row ``i``. Pass
    it as ``calibrator=`` to :func:`~confroute.evaluate` on those inputs to get the out-of-fold
    table, ECE and reliability diagram. For new inputs use the result's ``final_calibrator``.
    """

    def __init__(self, calibrators: list[Any | None], folds: np.ndarray) -> None:
        self.calibrators = calibrators
        self.folds = folds

    @property
    def n_folds(self) -> int:
        return len(self.calibrators)

    @property
    def temperatures(self) -> list[float | None]:
        """Each fold's fitted temperature (``None`` for calibrators without one)."""
        return [_temperature(c) for c in self.calibrators]

    def split(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the inputs fold ``j``'s calibrator was fitted on, and of fold ``j``."""
        return np.flatnonzero(self.folds != j), np.flatnonzero(self.folds == j)

    def __repr__(self) -> str:
        temps = ", ".join("-" if t is None else f"{t:.3f}" for t in self.temperatures)
        return f"CrossFittedCalibrator({self.n_folds} folds on {self.folds.shape[0]} inputs; T = [{temps}])"

    def transform(self, log_scores: Any) -> np.ndarray:
        z = log_scores.log_scores() if isinstance(log_scores, Predictions) else np.asarray(log_scores, float)
        if z.ndim != 2 or z.shape[0] != self.folds.shape[0]:
            raise ValueError(
                f"CrossFittedCalibrator: fitted by cross-fitting on {self.folds.shape[0]} inputs and "
                f"applies to those inputs only (same order), got shape {z.shape}; use final_calibrator "
                "for new inputs"
            )
        out = np.empty(z.shape, dtype=np.float64)
        for j, cal in enumerate(self.calibrators):
            rows = self.folds == j
            if cal is None:
                raise ValueError("CrossFittedCalibrator: built without a calibrator (calibrator=None)")
            out[rows] = cal.transform(z[rows])
        return out


@dataclass(frozen=True)
class FoldResult:
    """One fold: what was fitted on the other folds and what it gave on this one.

    ``target`` is the target as given: the fold's threshold was chosen by
    :func:`confroute.choose_thresholds` for that very objective on the other folds (a relative
    target with the paired certificate); ``guaranteed`` and ``procedure`` are that choice's.
    ``met`` says whether the held-out fold reaches the target (for a relative target: the ratio
    times the fallback's accuracy on this fold).
    """

    fold: int
    n_fit: int
    n_held_out: int
    temperature: float | None
    threshold: float
    feasible: bool
    target: float
    coverage: float
    accepted_accuracy: float
    system_accuracy: float | None
    fallback_accuracy: float | None
    savings: float | None
    ece_before: float | None
    ece_after: float | None
    met: bool
    guaranteed: float = float("nan")
    procedure: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: _json(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True, repr=False)
class CrossFitResult:
    """What :func:`cross_fit_thresholds` found: per fold, pooled over the held-out folds, and the
    rule refitted on all the data.

    Attributes
    ----------
    objective : str
        The objective's short name (see :mod:`confroute.selection.objectives`).
    target : float
        As given (a ratio for ``relative_accuracy``).
    delta : float or None
    n_folds, random_state : int
    n : int
    folds : tuple of FoldResult
    coverage, accepted_accuracy : float
        Pooled over the held-out folds (each input decided by its own fold's rule).
    system_accuracy, savings, cost_per_input : float or None
        Pooled over the held-out folds, when fallback answers / prices were given.
    primary_accuracy, fallback_accuracy : float or None
        Each model alone on all the inputs.
    ece_before, ece_after : float or None
        Top-label ECE (15 bins) of the primary's raw probabilities and of the out-of-fold
        calibrated ones.
    met : bool
        The pooled held-out figure reaches the target (relative: the ratio times the
        fallback's accuracy on all inputs).
    folds_met : int
        Held-out folds that reach it on their own.
    final : ThresholdChoice
        The threshold chosen on all the data, after refitting the calibrator on all of it:
        the rule to deploy.
    final_temperature : float or None
    final_calibrator, oof_calibrator
        The calibrator refitted on all the data (for new inputs) and a
        :class:`CrossFittedCalibrator` (for these inputs); ``None`` without calibration.
    certifiable : float or None
        With ``delta`` and an accuracy target: the best target these data certify at the
        coverage an empirical choice reaches (the Clopper-Pearson bound there; relative
        targets as a ratio).
    needed_n : int or None
        With ``delta`` and an accuracy target that is not certified: about how many labelled
        inputs would certify it with the primary answering ``needed_coverage`` of the inputs
        (the fewest over thresholds that keep at least half the empirical choice's coverage,
        if the accuracy seen there holds).
    needed_coverage : float or None
    advice : str or None
        What to change when the target is not met (on held-out folds or by the final choice).
    accept : ndarray of bool
        Out-of-fold decision per input (True: the primary answers).
    fold_of : ndarray of int
        The held-out fold of each input.
    """

    objective: str
    target: float
    delta: float | None
    n_folds: int
    random_state: int
    n: int
    folds: tuple[FoldResult, ...]
    coverage: float
    accepted_accuracy: float
    system_accuracy: float | None
    savings: float | None
    cost_per_input: float | None
    primary_accuracy: float
    fallback_accuracy: float | None
    ece_before: float | None
    ece_after: float | None
    met: bool
    folds_met: int
    final: ThresholdChoice
    final_temperature: float | None
    certifiable: float | None = None
    needed_n: int | None = None
    needed_coverage: float | None = None
    advice: str | None = None
    final_calibrator: Any = field(default=None, compare=False)
    oof_calibrator: CrossFittedCalibrator | None = field(default=None, compare=False)
    accept: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool), compare=False)
    fold_of: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64), compare=False)

    @property
    def usable(self) -> bool:
        """A finite threshold, chosen feasibly on all the data, that meets the target on the
        held-out folds."""
        return bool(self.final.feasible and math.isfinite(self.final.threshold) and self.met)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (non-finite numbers become ``None``; arrays and calibrators left out)."""
        skip = {"folds", "final", "final_calibrator", "oof_calibrator", "accept", "fold_of"}
        out = {k: _json(v) for k, v in self.__dict__.items() if k not in skip}
        out["usable"] = self.usable
        out["folds"] = [f.to_dict() for f in self.folds]
        out["final"] = self.final.to_dict()
        return out

    def __repr__(self) -> str:
        obj = objective_of(self.objective)
        level = "empirical" if self.delta is None else f"delta {self.delta:g}"
        lines = [f"CrossFitResult({obj.wording} {obj.sense} {self.target:g}, {level}, {self.n_folds} folds on "
                 f"{self.n} inputs)"]
        head = (f"  {'fold':>4} {'n':>5} {'T':>6} {'threshold':>9} {'coverage':>8} {'acc(acc.)':>9} "
                f"{'system':>7} {'fallback':>8} {'savings':>8} {'ECE before>after':>16}  met")
        lines.append(head)
        for f in self.folds:
            lines.append(
                f"  {f.fold:>4} {f.n_held_out:>5} {_s(f.temperature, '6.3f')} {_s(f.threshold, '9.4g')} "
                f"{f.coverage:>8.1%} {_s(f.accepted_accuracy, '9.4f')} {_s(f.system_accuracy, '7.4f')} "
                f"{_s(f.fallback_accuracy, '8.4f')} {_s(f.savings, '8.1%')} "
                f"{_s(f.ece_before, '7.4f')} > {_s(f.ece_after, '6.4f')}  {'yes' if f.met else 'no'}"
            )
        lines.append(
            f"  {'all':>4} {self.n:>5} {_s(self.final_temperature, '6.3f')} {_s(self.final.threshold, '9.4g')} "
            f"{self.coverage:>8.1%} {_s(self.accepted_accuracy, '9.4f')} {_s(self.system_accuracy, '7.4f')} "
            f"{_s(self.fallback_accuracy, '8.4f')} {_s(self.savings, '8.1%')} "
            f"{_s(self.ece_before, '7.4f')} > {_s(self.ece_after, '6.4f')}  "
            f"{'yes' if self.met else 'no'} ({self.folds_met}/{len(self.folds)} folds)"
        )
        lines.append("  (fold rows: held-out fold with T and threshold fitted on the others; 'all': pooled "
                     "held-out figures, with the T and threshold refitted on all inputs)")
        if self.advice:
            lines.append(f"  {self.advice}")
        return "\n".join(lines)


def _s(v: Any, spec: str) -> str:
    width = int(spec.split(".")[0]) if spec[0].isdigit() else 0
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-".rjust(width)
    if isinstance(v, float) and math.isinf(v):
        return "inf".rjust(width)
    return format(v, ">" + spec)


def _take(x: Any, idx: np.ndarray) -> Any:
    if x is None:
        return None
    return x.take(idx) if isinstance(x, Predictions) else np.asarray(x)[idx]


def _fit_calibrator(factory: Callable[[], Any] | None, p: Predictions, y_idx: np.ndarray) -> Any:
    if factory is None:
        return None
    cal = factory()
    with warnings.catch_warnings():
        # A temperature at the edge of its range on a small fold is reported by its value.
        warnings.simplefilter("ignore")
        return cal.fit(p.log_scores(), y_idx)


def cross_fit_thresholds(
    labels: Any,
    primary: Any,
    fallback: Any = None,
    *,
    delta: float | None = 0.05,
    n_folds: int = 5,
    calibrator: Callable[[], Any] | None = TemperatureScaler,
    score: Any = "max_prob",
    cost_model: Any = None,
    random_state: int = 0,
    **options: Any,
) -> CrossFitResult:
    """Cross-fitted :func:`~confroute.choose_thresholds`: fit the calibrator and choose the
    threshold on K-1 folds, score the held-out fold; repeat for every fold, pool the held-out
    figures, and refit on all the data.

    Parameters
    ----------
    labels : array of shape (n,)
        True labels, as for :func:`~confroute.evaluate`.
    primary : Predictions or array of shape (n, k)
        The primary's predictions (logits are used when present).
    fallback : Predictions, array of shape (n, k) or (n,), optional
        The fallback's predictions or predicted labels; needed for system-accuracy and relative
        targets.
    **options
        Exactly one objective keyword of :func:`~confroute.choose_thresholds`
        (``target_accuracy=``, ..., ``max_accuracy_drop=``: the same keyword, the same guarantee
        on every fold; ``target_relative_accuracy`` and ``max_accuracy_drop`` are the paired
        certificate), and optionally its ``rule``, ``method``, ``bound``, ``correction`` and
        ``n_starts``. They are taken as keywords, not listed here one by one, so the objectives
        have one list: :mod:`confroute.selection.objectives`.
    delta : float or None, default 0.05
        Passed to ``choose_thresholds`` (``None``: an empirical choice).
    n_folds : int, default 5
        Folds, stratified on the labels and shuffled with ``random_state``.
    calibrator : callable or None, default TemperatureScaler
        Makes a fresh unfitted calibrator (a class or factory); ``None``: no calibration.
    score : str or callable, default "max_prob"
    cost_model : CostModel or sequence of float, optional
        Stage prices, for savings and cost objectives.
    random_state : int, default 0
    **options
        Passed to ``choose_thresholds`` on every fold: ``rule``, ``method``, ``bound``,
        ``correction``, ``n_starts``.

    Returns
    -------
    CrossFitResult

    Examples
    --------
    A primary whose logits are twice too sharp (labels drawn at temperature 2) and a fallback
    that is right 95% of the time:

    >>> rng = np.random.default_rng(0)
    >>> n = 2000
    >>> z = rng.normal(0.0, 6.0, n)
    >>> y = (rng.random(n) < 1 / (1 + np.exp(-z / 2))).astype(int)
    >>> fallback = np.where(rng.random(n) < 0.95, y, 1 - y)
    >>> cf = cross_fit_thresholds(y, Predictions.from_logits(np.c_[np.zeros(n), z]), fallback,
    ...                           target_relative_accuracy=0.97, delta=0.05)
    >>> [round(f.temperature, 1) for f in cf.folds]
    [1.8, 1.8, 1.9, 1.9, 1.9]
    >>> {f.procedure for f in cf.folds}
    {'paired_cp_losses'}
    >>> cf.usable, cf.folds_met, round(cf.coverage, 2), round(cf.system_accuracy / cf.fallback_accuracy, 3)
    (True, 5, 0.53, 1.001)
    """
    objective, target = objective_in(options)
    options = {k: v for k, v in options.items() if k not in KEYWORDS}
    DELTA.check(delta, "delta")
    unknown = set(options) - {"rule", "method", "bound", "correction", "n_starts"}
    if unknown:
        raise TypeError(f"cross_fit_thresholds got unexpected arguments {sorted(unknown)}")
    if calibrator is not None and not callable(calibrator):
        raise TypeError("calibrator must make a fresh calibrator (a class such as TemperatureScaler, or a "
                        f"function), got {type(calibrator).__name__}; use None for no calibration")
    if objective.needs_fallback and fallback is None:
        raise ValueError(f"{objective.keyword} needs the fallback's answers (fallback=...)")
    pp, y, y_idx = _prepared(labels, primary, fallback, score, cost_model)
    n = len(pp)

    def choose(ev: Evaluation) -> ThresholdChoice:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ThresholdWarning)
            goal: dict[str, Any] = {objective.keyword: target}
            choice = choose_thresholds(ev, delta=delta, **goal, **options)
        assert isinstance(choice, ThresholdChoice)
        return choice

    folds_cal = _cross_fit(pp, y_idx, calibrator, n_folds, random_state)
    accept = np.zeros(n, dtype=bool)
    folds: list[FoldResult] = []
    for j, cal in enumerate(folds_cal.calibrators):
        fit, held = folds_cal.split(j)
        kw = {"score": score, "cost_model": cost_model, "calibrator": cal}
        choice = choose(evaluate(labels=y[fit], primary=pp.take(fit), fallback=_take(fallback, fit), **kw))
        ev_held = evaluate(labels=y[held], primary=pp.take(held), fallback=_take(fallback, held), **kw)
        accept[held] = decision.accepts(ev_held.stage_scores[0], None, choice.threshold)
        folds.append(_fold(j, len(fit), cal, choice, ev_held, objective, target))

    oof_cal = None if calibrator is None else folds_cal
    # Pooled held-out figures: each input accepted or deferred by its own fold's rule. The
    # per-input decision (0 or 1) is the "score", so the library's sweep at 0.5 gives the figures.
    pooled = evaluate(labels=y, primary=pp, fallback=fallback, scores=accept.astype(np.float64),
                      cost_model=cost_model, calibrator=oof_cal)
    point = pooled.at(0.5)
    final_cal = _fit_calibrator(calibrator, pp, y_idx)
    ev_all = evaluate(labels=y, primary=pp, fallback=fallback, score=score, cost_model=cost_model,
                      calibrator=final_cal)
    final = choose(ev_all)
    names = pooled.stage_names
    fb_all = pooled.stage_accuracy.get(names[1]) if fallback is not None else None
    met = objective.meets(*_figure(objective, point, pooled, target))
    certifiable, needed_n, needed_cov = _what_is_needed(objective, ev_all, target, delta, final, options)
    advice = _advice(objective, target, delta, final, met, certifiable, needed_n, needed_cov, n, fb_all)
    return CrossFitResult(
        objective=objective.name, target=target, delta=delta, n_folds=int(n_folds), random_state=random_state,
        n=n, folds=tuple(folds), coverage=point.coverage, accepted_accuracy=point.accepted_accuracy,
        system_accuracy=point.system_accuracy, savings=point.savings,
        cost_per_input=None if point.cost is None else point.cost / n,
        primary_accuracy=pooled.stage_accuracy[names[0]], fallback_accuracy=fb_all,
        ece_before=pooled.ece_before_calibration if oof_cal is not None else pooled.ece,
        ece_after=pooled.ece, met=met, folds_met=sum(f.met for f in folds), final=final,
        final_temperature=_temperature(final_cal), certifiable=certifiable, needed_n=needed_n,
        needed_coverage=needed_cov, advice=advice,
        final_calibrator=final_cal, oof_calibrator=oof_cal, accept=accept, fold_of=folds_cal.folds,
    )


def _fold(j: int, n_fit: int, cal: Any, choice: ThresholdChoice, ev_held: Evaluation, objective: Objective,
          target: float) -> FoldResult:
    """One fold's record: the choice made on the other folds, and its figures on this one."""
    point = ev_held.at(choice)
    return FoldResult(
        fold=j, n_fit=n_fit, n_held_out=ev_held.n, temperature=_temperature(cal),
        threshold=float(choice.threshold), feasible=choice.feasible, target=float(target),
        coverage=point.coverage, accepted_accuracy=point.accepted_accuracy,
        system_accuracy=point.system_accuracy, fallback_accuracy=ev_held.stage_accuracy.get(ev_held.stage_names[1]),
        savings=point.savings, ece_before=ev_held.ece_before_calibration if cal is not None else ev_held.ece,
        ece_after=ev_held.ece, met=objective.meets(*_figure(objective, point, ev_held, target)),
        guaranteed=choice.guaranteed, procedure=choice.procedure,
    )


#: Deprecated: :func:`cross_fit_thresholds` (every fold through :func:`confroute.choose_thresholds`).
cross_fit_threshold = deprecated_alias(cross_fit_thresholds, "cross_fit_threshold", "cross_fit_thresholds")


def cross_fit_calibration(
    labels: Any,
    primary: Any,
    *,
    calibrator: Callable[[], Any] = TemperatureScaler,
    n_folds: int = 5,
    random_state: int = 0,
) -> CrossFittedCalibrator:
    """Fit a calibrator on K-1 folds for each of K stratified folds (the same folds as
    :func:`cross_fit_thresholds` with the same ``n_folds`` and ``random_state``).

    Returns a :class:`CrossFittedCalibrator` that calibrates each input of ``primary`` with the
    calibrator fitted without it: out-of-fold probabilities for tables, ECE and plots.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 600)
    >>> logits = np.c_[np.zeros(600), 3.0 * (2 * y - 1) + rng.normal(0, 2.5, 600)]
    >>> cal = cross_fit_calibration(y, Predictions.from_logits(logits), n_folds=3)
    >>> cal.n_folds, np.bincount(cal.folds).tolist(), cal.transform(logits).shape
    (3, [200, 200, 200], (600, 2))
    """
    if calibrator is None or not callable(calibrator):
        raise TypeError("calibrator must make a fresh calibrator (a class such as TemperatureScaler, or a "
                        f"function), got {type(calibrator).__name__}")
    pp, _, y_idx = _prepared(labels, primary, None, "max_prob", None)
    return _cross_fit(pp, y_idx, calibrator, n_folds, random_state)


def _prepared(labels: Any, primary: Any, fallback: Any, score: Any, cost_model: Any
              ) -> tuple[Predictions, np.ndarray, np.ndarray]:
    """The primary as Predictions, the labels, and the labels as class indices (checked by
    evaluate() against the classes)."""
    pp = primary if isinstance(primary, Predictions) else Predictions.from_probs(np.asarray(primary), source="primary")
    y = np.asarray(labels)
    evaluate(labels=y, primary=pp, fallback=fallback, score=score, cost_model=cost_model)
    return pp, y, label_indices(y, pp.classes, pp.n_classes)


def _cross_fit(pp: Predictions, y_idx: np.ndarray, calibrator: Callable[[], Any] | None, n_folds: int,
               random_state: int) -> CrossFittedCalibrator:
    from sklearn.model_selection import StratifiedKFold

    n_folds = check_int(n_folds, "n_folds", 2)
    counts = np.bincount(y_idx, minlength=pp.n_classes)
    smallest = int(counts[counts > 0].min()) if counts.any() else 0
    if smallest < n_folds:
        raise ValueError(
            f"cross-fitting with {n_folds} stratified folds needs at least {n_folds} inputs of every class "
            f"present; the rarest has {smallest}. Use fewer folds or more labelled data"
        )
    splitter = StratifiedKFold(n_splits=int(n_folds), shuffle=True, random_state=random_state)
    fold_of = np.full(len(pp), -1, dtype=np.int64)
    cals: list[Any | None] = []
    for j, (fit, held) in enumerate(splitter.split(np.zeros(len(pp)), y_idx)):
        fold_of[held] = j
        cals.append(_fit_calibrator(calibrator, pp.take(fit), y_idx[fit]))
    return CrossFittedCalibrator(cals, fold_of)


def _temperature(cal: Any) -> float | None:
    t = getattr(cal, "temperature_", None)
    return None if t is None else float(t)


def _figure(objective: Objective, point: Any, ev: Evaluation, target: float) -> tuple[float, float]:
    """The held-out figure an objective is judged on (``nan`` when unknown), and the bar it must reach."""
    value = {
        "relative_accuracy": point.system_accuracy, "accuracy_drop": point.system_accuracy,
        "accepted_accuracy": point.accepted_accuracy, "system_accuracy": point.system_accuracy,
        "coverage": point.coverage, "savings": point.savings,
        "cost": None if point.cost is None else point.cost / ev.n,
    }[objective.name]
    figure = float("nan") if value is None else float(value)
    if objective.name == "relative_accuracy":
        return figure, target * ev.stage_accuracy[ev.stage_names[1]]
    if objective.name == "accuracy_drop":
        return figure, ev.stage_accuracy[ev.stage_names[1]] - target
    return figure, target


def _what_is_needed(
    objective: Objective, ev: Evaluation, target: float, delta: float | None, final: ThresholdChoice,
    options: dict[str, Any],
) -> tuple[float | None, int | None, float | None]:
    """For a guaranteed accuracy target: the best target these data certify at the coverage an
    empirical choice reaches, and about how many labelled inputs would certify the target asked
    for. Returns (certifiable, needed_n, coverage at needed_n)."""
    if delta is None or objective.name not in ("accepted_accuracy", "system_accuracy", "relative_accuracy",
                                               "accuracy_drop"):
        return None, None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThresholdWarning)
        goal: dict[str, Any] = {objective.keyword: target}
        emp = choose_thresholds(ev, delta=None, rule=options.get("rule", "loosest"), **goal)
    assert isinstance(emp, ThresholdChoice)
    if not emp.feasible or emp.m == 0:
        return None, None, None  # not met even on these data: more of the same will not help
    if objective.paired:
        return _paired_needed(objective, ev, target, delta, final, emp, options.get("bound", "cp_losses"))
    return _unpaired_needed(objective, ev, target, delta, final, emp)


def _paired_needed(
    objective: Objective, ev: Evaluation, target: float, delta: float, final: ThresholdChoice,
    emp: ThresholdChoice, bound: str,
) -> tuple[float | None, int | None, float | None]:
    """The paired bound where an empirical choice routes, and the planner's size for the target:
    the fewest inputs at which every threshold from the strict end down to one that keeps at least
    half the empirical coverage passes at the rates seen there (fixed-sequence testing)."""
    pc, fc = ev.correct[0], ev.correct[-1]
    n, F = ev.n, int(fc.sum())
    thresholds, order, ends = decision.threshold_path(ev.stage_scores[0])
    L, G = path_counts(~pc & fc, order, ends), path_counts(pc & ~fc, order, ends)
    kind = "ratio" if objective.name == "relative_accuracy" else "difference"
    epsilon = 1.0 - target if kind == "ratio" else target
    plan_bound = "cp_losses" if bound == "betting" else bound
    at = int(np.searchsorted(-thresholds, -emp.threshold, side="left"))  # the empirical choice's row
    _, up = select_paired(np.array([0, L[at]]), np.array([0, G[at]]), n, 1e9, delta, kind=kind, bound=plan_bound,
                          fallback_correct=F)
    certifiable = 1.0 - float(up) if kind == "ratio" else float(up)
    if final.feasible or epsilon <= 0:
        return certifiable, None, None
    rows = np.unique(np.searchsorted(ends, np.linspace(1, ends[at], 48), side="left").clip(1, at))
    need = np.array([
        plan_labels((L[r] + G[r]) / n, L[r] / n, G[r] / n, epsilon=epsilon, kind=kind, reference_accuracy=F / n,
                    delta=delta, bound=plan_bound).n_inputs_estimated_always or np.inf for r in rows], dtype=np.float64)
    need = np.maximum.accumulate(need)  # every stricter candidate must pass too
    keep = ends[rows] >= ends[at] / 2
    if not keep.any() or not np.isfinite(need[keep]).any():
        return certifiable, None, None
    best = int(np.flatnonzero(keep)[np.argmin(need[keep])])
    return certifiable, int(need[best]), float(ends[rows[best]] / n)


def _unpaired_needed(
    objective: Objective, ev: Evaluation, target: float, delta: float, final: ThresholdChoice,
    emp: ThresholdChoice,
) -> tuple[float | None, int | None, float | None]:
    """Clopper-Pearson certifiable target, and the size at which fixed-sequence testing would
    certify every row down to one that keeps half the empirical coverage."""
    accepted = objective.name == "accepted_accuracy"
    acc_emp = emp.accepted_accuracy if accepted else emp.system_accuracy
    trials_emp = emp.m if accepted else emp.n
    certifiable = _lower(np.array([acc_emp]), np.array([trials_emp]), delta)[0]
    if final.feasible:
        return float(certifiable), None, None
    goal = min(target, 1 - 1e-9)
    cov = ev.table["coverage"]
    acc = ev.table["accepted_accuracy" if accepted else "system_accuracy"]
    start = 1 if accepted else 0  # row 0 accepts nothing
    wanted = np.flatnonzero((cov >= emp.coverage / 2) & (acc > goal) & (cov > 0))
    if not wanted.size or wanted[-1] > 20_000:
        return float(certifiable), None, None
    # Fixed-sequence testing certifies a row only when every stricter row passes too, so a row
    # needs the size at which all rows from the start to it clear the goal.
    rows = np.arange(start, wanted[-1] + 1)
    sizes = np.unique(np.round(ev.n * 1.05 ** np.arange(1, 400)).astype(np.int64))
    sizes = sizes[sizes <= 10**8]
    share = cov[rows] if accepted else np.ones(rows.size)
    trials = np.maximum(np.round(sizes[:, None] * share[None, :]), 1)
    with np.errstate(invalid="ignore"):
        ok = _lower(np.broadcast_to(np.nan_to_num(acc[rows]), trials.shape), trials, delta) >= goal
    ok = np.logical_and.accumulate(ok, axis=1)
    first = np.where(ok.any(axis=0), ok.argmax(axis=0), sizes.size)[wanted - start]
    best = int(first.argmin())
    if first[best] >= sizes.size:
        return float(certifiable), None, None
    return float(certifiable), int(sizes[first[best]]), float(cov[wanted[best]])


def _lower(acc: np.ndarray, trials: np.ndarray, delta: float) -> np.ndarray:
    """Clopper-Pearson lower bound on accuracy ``acc`` observed over ``trials`` inputs."""
    errors = np.round((1 - acc) * trials)
    return 1.0 - clopper_pearson(errors, trials, delta, "upper")


def _advice(objective: Objective, target: float, delta: float | None, final: ThresholdChoice, met: bool,
            certifiable: float | None, needed_n: int | None, needed_cov: float | None, n: int,
            fb_acc: float | None) -> str | None:
    if final.feasible and math.isfinite(final.threshold) and met:
        return None
    parts = []
    what = f"{objective.wording} {objective.sense}"
    if not final.feasible or not math.isfinite(final.threshold):
        parts.append(f"No threshold meets {what} {target:g}"
                     + ("" if delta is None else f" with probability {1 - delta:g}") + f" on these {n} inputs.")
    else:
        parts.append(f"The threshold chosen on the other folds misses {what} {target:g} on the held-out folds.")
    if needed_n is not None:
        parts.append(f"About {needed_n:,} labelled inputs would certify it with the primary answering "
                     f"{needed_cov:.0%} of inputs (if the rates seen there hold).")
    if certifiable is not None:
        # Round towards what the data certify: down for a floor, up for a budget or an allowed drop.
        up = objective.sense == "<=" or objective.name == "accuracy_drop"
        shown = math.ceil(certifiable * 1e4) / 1e4 if up else math.floor(certifiable * 1e4) / 1e4
        parts.append(f"Where an empirical choice would route, these data certify {objective.keyword}={shown:g}: "
                     "loosen the target to that, or use delta=None (empirical, checked on held-out folds).")
    elif objective.needs_fallback and fb_acc is not None and delta is not None:
        parts.append("Loosen the target (the fallback alone is at "
                     f"{fb_acc:.4f}), or use delta=None (empirical, checked on held-out folds).")
    elif delta is None:
        parts.append("Loosen the target, or use more labelled data.")
    return " ".join(parts)
