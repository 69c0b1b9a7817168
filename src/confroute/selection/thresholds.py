"""Choose a routing threshold on held-out data, with a finite-sample guarantee where it matters.

:func:`choose_threshold` supports four objectives (give exactly one):

``target_accuracy``
    Accuracy of the primary on the inputs it accepts is at least the target, with probability
    at least ``1 - delta`` over the draw of the calibration data (selective classification with
    guaranteed risk, Geifman & El-Yaniv 2017; Learn-then-Test, Angelopoulos et al. 2021).
``target_system_accuracy``
    Accuracy of the whole system (primary on accepted inputs, fallback on the rest) is at least
    the target, with probability at least ``1 - delta``.
``target_coverage`` / ``max_cost_per_input`` / ``min_savings``
    The primary answers at least the target share of inputs (equivalently: the mean cost per
    input stays within budget, or the savings reach the target), with probability at least
    ``1 - delta``.
``target_relative_accuracy`` / ``max_accuracy_drop``
    Paired: system accuracy is at least the target share of the fallback's accuracy (or at most
    ``max_accuracy_drop`` below it), certified from the inputs where the two disagree
    (:mod:`confroute.selection.certify`).

How the guarantee works
-----------------------
For accuracy objectives, each candidate threshold (every distinct calibration score) is a
hypothesis "the error rate at this threshold exceeds ``1 - target``". With ``k`` errors among
``m`` trials it is rejected when the exact binomial tail ``P(Bin(m, 1 - target) <= k) <= delta``,
i.e. when the Clopper–Pearson upper confidence bound on the error rate is at most ``1 - target``.
The hypotheses are tested in a fixed order, from the strictest threshold to the loosest, and
testing stops at the first one that is not rejected (fixed-sequence testing). That controls the
probability of *any* false rejection at ``delta`` without a Bonferroni correction, and the
loosest rejected threshold is returned. Thresholds that accept fewer than
``ceil(log(delta) / log(target))`` inputs can never be rejected even with zero errors, so the
sequence starts at the first threshold past that count. For accepted-set accuracy the trials
are the ``m`` accepted inputs; for system accuracy they are all ``n`` inputs.

A single sequence is fragile for accepted-set accuracy: one early mistake among the few most
confident inputs stops it before it reaches the thresholds that matter. So by default it runs
``J`` sequences that start at accepted counts ``m0, 2 m0, 4 m0, ...`` (fixed in advance from
``n``, the target and ``delta``), each at level ``delta / J``, and returns the loosest threshold
any of them rejects; the union bound keeps the overall error at ``delta``. ``n_starts=1`` gives
the plain single sequence.

Coverage is monotone in the threshold, so no multiplicity correction is needed there: the
strictest threshold whose Clopper–Pearson *lower* bound on coverage reaches the target is chosen.

With ``delta=None`` the choice is purely empirical (the figures on the calibration data meet the
target, nothing more); that is what most hand-tuned routers do and it fails about half the time
on new data.

Choose thresholds on data the models were not trained on and that you will not report test
figures on.

References
----------
Clopper & Pearson (1934). The use of confidence or fiducial limits illustrated in the case of the
binomial. Biometrika.
Geifman & El-Yaniv (2017). Selective classification for deep neural networks. NeurIPS.
Angelopoulos, Bates, Candès, Jordan & Lei (2021). Learn then test: calibrating predictive
algorithms to achieve risk control. arXiv:2110.01052.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binom

from ..core import _html
from ..core.cost import CostModel
from ..evaluation.evaluate import Evaluation, Sweep, threshold_sweep
from ..exceptions import ThresholdWarning
from .bounds import clopper_pearson  # moved to bounds.py; still importable from here
from .certify import ACCEPTED_METHODS, certify_accepted_accuracy, certify_relative_accuracy

__all__ = ["choose_threshold", "ThresholdChoice", "clopper_pearson", "ThresholdWarning"]


@dataclass(frozen=True)
class ThresholdChoice:
    """A chosen threshold with what it achieves on the calibration data and what is guaranteed.

    Attributes
    ----------
    threshold : float
        Accept when ``score >= threshold`` (``inf``: accept nothing).
    objective : str
        ``"accepted_accuracy"``, ``"system_accuracy"``, ``"coverage"``, ``"cost"``,
        ``"savings"``, ``"relative_accuracy"`` or ``"accuracy_drop"`` (paired targets).
    target : float
        The target as given (a cost budget is a mean cost per input).
    delta : float or None
        The guarantee holds with probability ``1 - delta``; ``None`` for an empirical choice.
    feasible : bool
        False when no threshold meets the target; then ``threshold`` is the safe end (accept
        nothing for accuracy objectives, accept everything for coverage, cost and savings).
    empirical : float
        The objective's figure on the calibration data.
    guaranteed : float or None
        Its bound: a lower bound on accuracy, coverage or savings, or an upper bound on cost,
        holding with probability ``1 - delta``.
    n, m, k : int
        Calibration inputs, inputs accepted, and primary errors among them.
    coverage, accepted_accuracy : float
    system_accuracy, cost_per_input, savings : float or None
        When fallback answers / prices were available.
    """

    threshold: float
    objective: str
    target: float
    delta: float | None
    feasible: bool
    empirical: float
    guaranteed: float | None
    n: int
    m: int
    k: int
    coverage: float
    accepted_accuracy: float
    system_accuracy: float | None = None
    cost_per_input: float | None = None
    savings: float | None = None

    @property
    def thresholds(self) -> list[float]:
        """``[threshold]``: what a router takes (``ThresholdRouter(p, f, choice)``,
        ``router.thresholds = choice``)."""
        return [self.threshold]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (non-finite numbers become ``None``)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[key] = value
        return out

    def __str__(self) -> str:
        what = {
            "accepted_accuracy": "accuracy on accepted inputs",
            "system_accuracy": "system accuracy",
            "coverage": "coverage",
            "cost": "cost per input",
            "savings": "savings",
            "relative_accuracy": "system / fallback accuracy",
            "accuracy_drop": "system - fallback accuracy",
        }[self.objective]
        bound = ""
        if self.guaranteed is not None:
            rel = "<=" if self.objective == "cost" else ">="
            level = 1 - (self.delta or 0.0)
            bound = f", guaranteed {rel} {self.guaranteed:.4g} with probability {level:.3g}"
        status = "" if self.feasible else " [target not reachable]"
        return (
            f"threshold {self.threshold:.6g}{status}: {what} {self.empirical:.4g} on calibration data "
            f"(target {self.target:.4g}{bound}); coverage {self.coverage:.1%}, "
            f"{self.m} accepted of {self.n}, {self.k} errors"
        )

    def _repr_html_(self) -> str:
        return _html.threshold_choice_html(self)

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in self.__dict__.items()
        )
        return f"ThresholdChoice({fields})"


def _first_failure(reject: np.ndarray) -> int:
    """Index of the first False, or len when all are True."""
    bad = np.flatnonzero(~reject)
    return int(bad[0]) if bad.size else int(reject.size)


def _sequential_test(k: np.ndarray, m: np.ndarray, alpha: float, delta: float, start: int) -> int:
    """Fixed-sequence test of ``error rate > alpha`` from row ``start`` on; returns the last
    rejected row, or -1 when the first test already fails. Tests in growing chunks, because it
    usually stops long before the millionth row."""
    last = -1
    i = start
    step = 256
    while i < k.size:
        j = min(i + step, k.size)
        # Reject "error rate > alpha" when the exact binomial tail at alpha is <= delta.
        reject = binom.cdf(k[i:j], m[i:j], alpha) <= delta
        f = _first_failure(reject)
        if f < j - i:
            return i + f - 1 if i + f > start else -1
        last = j - 1
        i = j
        step *= 4
    return last


_OBJECTIVE_PARAMS = ("target_accuracy", "target_system_accuracy", "target_coverage", "max_cost_per_input", "min_savings")


def choose_threshold(
    data: Evaluation | Any,
    correct: Any = None,
    *,
    fallback_correct: Any = None,
    target_accuracy: float | None = None,
    target_system_accuracy: float | None = None,
    target_coverage: float | None = None,
    max_cost_per_input: float | None = None,
    min_savings: float | None = None,
    delta: float | None = 0.05,
    cost_model: Any = None,
    n_starts: int | None = None,
    rule: str = "loosest",
    correction: str = "fixed_sequence",
    target_relative_accuracy: float | None = None,
    max_accuracy_drop: float | None = None,
    method: str | None = None,
    bound: str = "cp_losses",
) -> ThresholdChoice:
    """Choose the primary's threshold on calibration data for one objective.

    Parameters
    ----------
    data : Evaluation or array of shape (n,)
        The result of :func:`~confroute.evaluate` on calibration data, or the primary's scores.
    correct : array of bool, shape (n,)
        Whether the primary is right on each input (when ``data`` is scores).
    fallback_correct : array of bool, shape (n,), optional
        Whether the fallback is right (when ``data`` is scores); needed for system accuracy.
    target_accuracy : float, optional
        Minimum accuracy on accepted inputs.
    target_system_accuracy : float, optional
        Minimum accuracy of the routed system.
    target_coverage : float, optional
        Minimum share of inputs the primary answers.
    max_cost_per_input : float, optional
        Budget: maximum mean cost per input (needs prices).
    min_savings : float, optional
        Minimum share saved against the fallback alone (needs prices).
    delta : float or None, default 0.05
        Failure probability of the guarantee; ``None`` for a purely empirical choice.
    cost_model : CostModel or sequence of float, optional
        Stage prices (default: those of the Evaluation).
    n_starts : int, optional
        Number of fixed-sequence chains for ``target_accuracy`` (see the module notes); default:
        as many as fit in ``n`` (at most 8). The reported ``guaranteed`` bound is computed at
        the level each chain uses, ``delta / n_starts``.
    rule : {"loosest", "first_failure"}, default "loosest"
        How an empirical (``delta=None``) accuracy target is met. ``"loosest"``: the loosest
        threshold whose figure meets the target anywhere on the curve. ``"first_failure"``:
        walk from the strictest threshold to looser ones and stop before the first that fails,
        as fixed-sequence testing does. On small calibration sets the loosest point is often a
        lucky return above the target after a dip (winner's curse); ``"first_failure"`` cannot
        jump over the dip. It suits ``target_system_accuracy`` (the walk starts at "everything
        to the fallback"); with ``target_accuracy`` one early error among the most confident
        inputs ends the walk. With a ``delta`` the test is always fixed-sequence.

    Returns
    -------
    ThresholdChoice
        Accuracy objectives pick the loosest threshold (most inputs accepted, lowest cost)
        that meets the target; coverage, cost and savings objectives pick the strictest
        (most inputs sent to the better fallback) that meets it. When none does, a
        :class:`ThresholdWarning` is issued and ``feasible`` is False.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> scores = rng.random(5000)
    >>> correct = rng.random(5000) < 0.7 + 0.3 * scores  # more confident, more often right
    >>> c = choose_threshold(scores, correct, target_accuracy=0.9, delta=0.05)
    >>> c.feasible, c.guaranteed >= 0.9, c.accepted_accuracy >= c.guaranteed
    (True, True, True)
    >>> round(c.threshold, 2), round(c.coverage, 2)  # the population optimum is 1/3, 0.67
    (0.44, 0.56)
    """
    objectives = {
        "accepted_accuracy": target_accuracy,
        "system_accuracy": target_system_accuracy,
        "coverage": target_coverage,
        "cost": max_cost_per_input,
        "savings": min_savings,
        "relative_accuracy": target_relative_accuracy,
        "accuracy_drop": max_accuracy_drop,
    }
    if rule not in ("loosest", "first_failure"):
        raise ValueError(f"rule must be 'loosest' or 'first_failure', got {rule!r}")
    if correction not in ("fixed_sequence", "bonferroni"):
        raise ValueError(f"correction must be 'fixed_sequence' or 'bonferroni', got {correction!r}")
    given = [k for k, v in objectives.items() if v is not None]
    if len(given) != 1:
        raise ValueError(
            "give exactly one of target_accuracy, target_system_accuracy, target_coverage, "
            "max_cost_per_input, min_savings, target_relative_accuracy, max_accuracy_drop "
            f"(got {given or 'none'})"
        )
    objective = given[0]
    target = float(objectives[objective])  # type: ignore[arg-type]
    if not math.isfinite(target):
        param = dict(zip(objectives, _OBJECTIVE_PARAMS))[objective]
        raise ValueError(f"{param} must be a finite number, got {target}")
    if delta is not None and not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1) or be None, got {delta}")

    sweep, prices = _sweep_of(data, correct, fallback_correct, cost_model)
    n = sweep.n
    if n == 0:
        raise ValueError("choose_threshold needs at least one calibration input")
    m, k = sweep.n_accepted, sweep.n_errors

    # ---- issue 16 wiring: certificates from selection/certify.py (paired targets, methods) ----
    if method is not None and method not in ("multistart", *ACCEPTED_METHODS):
        raise ValueError(f"method must be one of {('multistart', *ACCEPTED_METHODS)}, got {method!r}")
    if method not in (None, "multistart") and objective != "accepted_accuracy":
        raise ValueError(f"method={method!r} applies to target_accuracy only")
    if objective in ("relative_accuracy", "accuracy_drop") or method not in (None, "multistart"):
        if method not in (None, "multistart") and n_starts is not None:
            raise ValueError("n_starts applies to method='multistart' only")
        return _certified_choice(data, correct, fallback_correct, sweep, prices, objective, target, delta,
                                 method, bound)
    # ---- end of issue 16 wiring ----

    if objective in ("accepted_accuracy", "system_accuracy"):
        if not 0 < target < 1:
            raise ValueError(f"target accuracy must lie in (0, 1), got {target}")
        if objective == "system_accuracy":
            if sweep.system_correct is None:
                raise ValueError("target_system_accuracy needs the fallback's answers (fallback_correct)")
            errors, trials = n - sweep.system_correct, np.full(m.shape, n)
            start = 0
        else:
            errors, trials = k, m
            start = 1  # row 0 accepts nothing
        alpha = 1.0 - target
        level = delta
        if delta is None:
            # Counts are integers: allow for rounding in alpha * trials (a target equal to an
            # achieved accuracy, e.g. the fallback's own, must count as met).
            meets = (errors[start:] <= alpha * trials[start:] + 1e-9 * trials[start:]) & (trials[start:] > 0)
            if rule == "loosest":
                ok = np.flatnonzero(meets)
                row = start + int(ok[-1]) if ok.size else -1
            else:
                # Walk from strict to loose and stop before the first failure: a dip in the
                # curve ends the walk, so a lucky point further down cannot be picked.
                row = start + _first_failure(meets) - 1
        elif correction == "bonferroni":
            level = delta / max(int(m.size) - start, 1)
            with np.errstate(invalid="ignore"):
                upper = clopper_pearson(errors[start:], trials[start:], level, "upper")
            ok = np.flatnonzero((upper <= alpha + 1e-12) & (trials[start:] > 0))
            row = start + int(ok[-1]) if ok.size else -1
        elif objective == "system_accuracy":
            row = _sequential_test(errors, trials, alpha, delta, start)
        else:
            chains = _chain_count(n, target, delta) if n_starts is None else int(n_starts)
            if chains < 1:
                raise ValueError(f"n_starts must be >= 1, got {n_starts}")
            level = delta / chains
            first = _min_trials(target, level)
            row = -1
            for j in range(chains):
                begin = int(np.searchsorted(m, first * 2**j, side="left"))
                row = max(row, _sequential_test(errors, trials, alpha, level, begin))
        feasible = row >= 0
        row = row if feasible else 0  # accept nothing
        empirical = float(1.0 - errors[row] / trials[row]) if trials[row] else float("nan")
        guaranteed = (
            None if level is None or not trials[row]
            else float(1.0 - clopper_pearson(errors[row], trials[row], level, "upper"))
        )
    else:
        c0 = c1 = 0.0
        if objective in ("cost", "savings"):
            if prices is None:
                raise ValueError(f"the {objective} objective needs stage prices (cost_model)")
            c0, c1 = float(prices[0]), float(prices[1])
            if c1 <= 0:
                raise ValueError("the fallback's price must be > 0 for cost and savings objectives")
            # Mean cost per input is c0 + (1 - coverage) * c1 and savings are coverage - c0 / c1.
            need_cov = (c0 + c1 - target) / c1 if objective == "cost" else target + c0 / c1
        else:
            if not 0 <= target <= 1:
                raise ValueError(f"target_coverage must lie in [0, 1], got {target}")
            need_cov = target
        cov_bound = m / n if delta is None else clopper_pearson(m, n, delta, "lower")
        ok = np.flatnonzero(cov_bound >= need_cov - 1e-12)
        feasible = bool(ok.size)
        row = int(ok[0]) if feasible else m.size - 1  # strictest that meets it, else accept all
        cov_emp, cov_g = float(m[row] / n), None if delta is None else float(cov_bound[row])
        if objective == "coverage":
            empirical, guaranteed = cov_emp, cov_g
        elif objective == "cost":
            empirical = c0 + (1 - cov_emp) * c1
            guaranteed = None if cov_g is None else c0 + (1 - cov_g) * c1
        else:
            empirical = cov_emp - c0 / c1
            guaranteed = None if cov_g is None else cov_g - c0 / c1

    if not feasible:
        warnings.warn(
            f"no threshold meets {objective.replace('_', ' ')} target {target:g}"
            + ("" if delta is None else f" with probability {1 - delta:g}")
            + f" on {n} calibration inputs; returning the safe end (threshold {sweep.thresholds[row]:g})",
            ThresholdWarning,
            stacklevel=2,
        )
    return _choice(sweep, prices, row, objective, target, delta, feasible, empirical, guaranteed)


def _certified_choice(
    data: Any, correct: Any, fallback_correct: Any, sweep: Sweep, prices: np.ndarray | None, objective: str,
    target: float, delta: float | None, method: str | None, bound: str,
) -> ThresholdChoice:
    """Issue 16: the choice from a :mod:`~confroute.selection.certify` certificate."""
    if delta is None:
        raise ValueError(f"the {objective.replace('_', ' ')} objective is a certificate: give delta (e.g. 0.05)")
    if isinstance(data, Evaluation):
        scores, pc, fc = data.scores, data.primary_correct, data.fallback_correct
    else:
        scores, pc, fc = data, correct, fallback_correct
    if objective == "accepted_accuracy":
        cert = certify_accepted_accuracy(scores, pc, target=target, delta=delta, method=str(method))
    else:
        if fc is None:
            raise ValueError(f"the {objective.replace('_', ' ')} objective needs the fallback's answers "
                             "(fallback_correct)")
        kind = "ratio" if objective == "relative_accuracy" else "difference"
        if kind == "ratio" and not 0 < target < 1:
            raise ValueError(f"target_relative_accuracy must lie in (0, 1), got {target}")
        if kind == "difference" and not 0 < target < 1:
            raise ValueError(f"max_accuracy_drop must lie in (0, 1), got {target}")
        epsilon = 1.0 - target if kind == "ratio" else target
        cert = certify_relative_accuracy(scores, np.stack([np.asarray(pc, bool), np.asarray(fc, bool)]),
                                         epsilon=epsilon, kind=kind, delta=delta, bound=bound)
    row = int(np.flatnonzero(sweep.thresholds == cert.threshold)[0])
    if not cert.certified:
        warnings.warn(
            f"no threshold meets {objective.replace('_', ' ')} target {target:g} with probability "
            f"{1 - delta:g} on {sweep.n} calibration inputs ({cert.reason}"
            + ("" if cert.labels_needed is None else f"; about {cert.labels_needed} labelled inputs needed")
            + "); returning the safe end (accept nothing)",
            ThresholdWarning,
            stacklevel=3,
        )
    # empirical / guaranteed: system / fallback accuracy (ratio) or system - fallback (difference)
    return _choice(sweep, prices, row, objective, target, delta, cert.certified, cert.empirical, cert.bound)


def _min_trials(target: float, level: float) -> int:
    """The fewest accepted inputs with which even zero errors pass the test at ``level``."""
    return max(1, math.ceil(math.log(level) / math.log(target)))


def _chain_count(n: int, target: float, delta: float, most: int = 8) -> int:
    """How many doubling start points fit in ``n`` inputs (each chain at level delta / J)."""
    chains = 1
    while chains < most and _min_trials(target, delta / (chains + 1)) * 2**chains <= n:
        chains += 1
    return chains


def _sweep_of(
    data: Any, correct: Any, fallback_correct: Any, cost_model: Any
) -> tuple[Sweep, np.ndarray | None]:
    if isinstance(data, Evaluation):
        if correct is not None or fallback_correct is not None:
            raise ValueError("with an Evaluation, do not pass correct / fallback_correct")
        if data.n_stages != 2:
            raise ValueError(f"a single threshold is for two stages; this evaluation has {data.n_stages}")
        cm = CostModel.coerce(cost_model, 2) if cost_model is not None else data.cost_model
        prices = None if cm is None else cm.stage_costs
        scores, pc, fc = data.scores, data.primary_correct, data.fallback_correct
    else:
        if correct is None:
            raise ValueError("give an Evaluation, or scores with correct=...")
        cm = CostModel.coerce(cost_model, 2)
        prices = None if cm is None else cm.stage_costs
        scores, pc, fc = data, correct, fallback_correct
    sweep = threshold_sweep(
        scores, pc, fc,
        primary_cost=None if prices is None else prices[0],
        fallback_cost=None if prices is None else prices[1],
    )
    return sweep, prices


def _choice(
    sweep: Sweep, prices: np.ndarray | None, row: int, objective: str, target: float,
    delta: float | None, feasible: bool, empirical: float, guaranteed: float | None,
) -> ThresholdChoice:
    n, m = sweep.n, int(sweep.n_accepted[row])
    k = int(sweep.n_errors[row])
    cost = savings = None
    if prices is not None and sweep.cost is not None:
        cost = float(sweep.cost[row] / n)
        savings = float(1.0 - sweep.cost[row] / sweep.baseline_cost) if sweep.baseline_cost else None
    return ThresholdChoice(
        threshold=float(sweep.thresholds[row]),
        objective=objective,
        target=target,
        delta=delta,
        feasible=feasible,
        empirical=float(empirical),
        guaranteed=None if guaranteed is None else float(guaranteed),
        n=n,
        m=m,
        k=k,
        coverage=m / n,
        accepted_accuracy=(m - k) / m if m else float("nan"),
        system_accuracy=None if sweep.system_correct is None else float(sweep.system_correct[row] / n),
        cost_per_input=cost,
        savings=savings,
    )
