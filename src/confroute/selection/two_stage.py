"""The two-stage procedures behind :func:`confroute.choose_thresholds`: one global threshold.

Every objective of :mod:`.objectives` has its procedure here (give exactly one):

``target_accuracy``
    Accuracy of the primary on the inputs it accepts is at least the target, with probability
    at least ``1 - delta`` over the draw of the calibration data (selective classification with
    guaranteed risk, Geifman & El-Yaniv 2017; Learn-then-Test, Angelopoulos et al. 2021). The
    default is the fallback procedure of :mod:`.accepted`; ``method="multistart"`` runs ``J``
    fixed-sequence chains from doubling start points, each at ``delta / J``.
``target_system_accuracy``
    Accuracy of the whole system (primary on accepted inputs, fallback on the rest) is at least
    the target: Clopper–Pearson lower bounds tested in a fixed sequence, strict to loose.
``target_coverage`` / ``max_cost_per_input`` / ``min_savings``
    The primary answers at least the target share of inputs (equivalently: the mean cost per
    input, priced by the :class:`~confroute.CostModel`, stays within budget, or the savings reach
    the target). Coverage is monotone in the threshold, so the strictest threshold whose
    Clopper–Pearson *lower* bound on coverage reaches the target is chosen; no multiplicity
    correction is needed. With per-input prices (a token-priced stage,
    :meth:`CostModel.with_usage <confroute.CostModel.with_usage>`) the cost is no longer affine in
    coverage: each row's exact cost is summed over its own inputs (the evaluation's sweep), and
    the guarantee is a Hoeffding (1963) upper bound on the mean cost per input, whose range is
    the spread of the per-input answer prices, Bonferroni-corrected over the candidate rows.
``target_relative_accuracy`` / ``max_accuracy_drop``
    Paired: system accuracy is at least the target share of the fallback's accuracy (or at most
    ``max_accuracy_drop`` below it), certified from the inputs where the two disagree
    (:mod:`.relative`).

How the guarantee works
-----------------------
For accuracy objectives, each candidate threshold (every distinct calibration score, along
:func:`confroute.core.decision.threshold_path`) is a hypothesis "the error rate at this threshold
exceeds ``1 - target``". With ``k`` errors among ``m`` trials it is rejected when the exact
binomial tail ``P(Bin(m, 1 - target) <= k) <= delta``. The hypotheses are tested in a fixed order,
from the strictest threshold to the loosest, and testing stops at the first one that is not
rejected (fixed-sequence testing): the probability of *any* false rejection is at most ``delta``.

With ``delta=None`` the choice is purely empirical (the figures on the calibration data meet the
target, nothing more); that is what most hand-tuned routers do and it fails about half the time
on new data.

References
----------
Clopper & Pearson (1934). Biometrika 26(4).
Geifman & El-Yaniv (2017). Selective classification for deep neural networks. NeurIPS.
Angelopoulos, Bates, Candès, Jordan & Lei (2021). Learn then test. arXiv:2110.01052.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binom

from ..core import decision
from ..core._params import DELTA
from ..core.cost import CostModel
from ..evaluation.sweep import threshold_sweep
from .accepted import certify_accepted_accuracy, chain_count, min_trials
from .bounds import clopper_pearson
from .certificate import ACCEPTED_METHODS, EXCHANGEABLE, check_bool, path_counts
from .choices import ThresholdChoice
from .infeasible import warn_infeasible
from .objectives import Objective
from .relative import certify_relative_accuracy

__all__ = ["select_threshold", "default_method", "Path", "answer_prices"]

RULES = ("loosest", "first_failure")


@dataclass(frozen=True)
class Path:
    """Counts along :func:`confroute.core.decision.threshold_path`, strict to loose."""

    scores: np.ndarray
    thresholds: np.ndarray
    m: np.ndarray  # inputs accepted
    k: np.ndarray  # primary errors among them
    system_correct: np.ndarray | None  # correct answers of the routed system
    cost: np.ndarray | None = None  # exact total cost per row, with per-input prices

    @property
    def n(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def of(cls, scores: Any, correct: Any, fallback_correct: Any = None, cost_model: CostModel | None = None) -> Path:
        s = np.asarray(scores, dtype=np.float64)
        thresholds, order, ends = decision.threshold_path(s)
        pc = check_bool(correct, "correct", s.shape[0])
        if pc.shape != s.shape:
            raise ValueError(f"scores and correct must have the same shape, got {s.shape} and {pc.shape}")
        m = ends.astype(np.int64)
        k = path_counts(~pc, order, ends).astype(np.int64)
        system = None
        if fallback_correct is not None:
            fc = check_bool(fallback_correct, "fallback_correct", s.shape[0])
            system = (m - k) + (int(fc.sum()) - path_counts(fc, order, ends)).astype(np.int64)
        cost = None
        if cost_model is not None and cost_model.input_prices is not None:
            cost = threshold_sweep(s, pc, cost_model=cost_model).cost  # the same path, priced per input
        return cls(s, thresholds, m, k, system, cost)


def answer_prices(cost_model: CostModel) -> np.ndarray:
    """Cost of one input answered by each stage, from :meth:`CostModel.per_input` (with per-input
    prices: the mean over the inputs it prices)."""
    if cost_model.input_prices is not None:
        return np.asarray(cost_model.answer_costs(), dtype=np.float64)
    n = cost_model.n_stages
    reached = np.arange(n)[:, None] <= np.arange(n)[None, :]  # column s: answered by stage s
    return np.asarray(cost_model.per_input(reached), dtype=np.float64)


def default_method(objective: Objective, method: str | None, n_starts: int | None, delta: float | None,
                   correction: str) -> str | None:
    """The procedure :func:`confroute.choose_thresholds` uses when none is named: the fallback
    procedure for a certified ``target_accuracy``."""
    if method in ("exhaustive", "coordinate"):
        method = None  # a two-stage sweep is exact: nothing to search
    if (objective.name == "accepted_accuracy" and method is None and n_starts is None and delta is not None
            and correction == "auto"):
        return "fallback"
    return method


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
        reject = binom.cdf(k[i:j], m[i:j], alpha) <= delta
        f = _first_failure(reject)
        if f < j - i:
            return i + f - 1 if i + f > start else -1
        last = j - 1
        i = j
        step *= 4
    return last


def select_threshold(
    scores: Any, correct: Any, fallback_correct: Any = None, *, objective: Objective, target: float,
    delta: float | None = 0.05, cost_model: CostModel | None = None, n_starts: int | None = None,
    rule: str = "loosest", correction: str = "fixed_sequence", method: str | None = None,
    bound: str = "cp_losses", random_state: int | None = 0,
) -> ThresholdChoice:
    """One global threshold of two stages for one objective (see the module notes).

    ``correction`` is ``"fixed_sequence"`` or ``"bonferroni"``; ``method`` names the
    ``target_accuracy`` procedure (``None``: multistart chains, ``n_starts`` of them).
    """
    DELTA.check(delta, "delta")
    if rule not in RULES:
        raise ValueError(f"rule must be 'loosest' or 'first_failure', got {rule!r}")
    if correction not in ("fixed_sequence", "bonferroni"):
        raise ValueError(f"correction must be 'fixed_sequence' or 'bonferroni', got {correction!r}")
    if not objective.supports(2):  # pragma: no cover - every objective supports two stages
        raise ValueError(f"{objective.keyword} does not apply to two stages")
    path = Path.of(scores, correct, fallback_correct, cost_model)
    if path.n == 0:
        raise ValueError("choosing a threshold needs at least one calibration input")
    prices = None if cost_model is None else answer_prices(cost_model)
    if method is not None and method not in ("multistart", *ACCEPTED_METHODS):
        raise ValueError(f"method must be one of {('multistart', *ACCEPTED_METHODS)}, got {method!r}")
    if method not in (None, "multistart") and objective.name != "accepted_accuracy":
        raise ValueError(f"method={method!r} applies to target_accuracy only")
    if objective.needs_fallback and path.system_correct is None:
        raise ValueError(f"{objective.keyword} needs the fallback's answers (fallback_correct)")
    if objective.paired and delta is None:
        row, procedure = _paired_empirical_row(path, objective, target, rule)
        return _paired_empirical(path, prices, cost_model, row, objective, target, procedure)
    if objective.paired or method not in (None, "multistart"):
        if method not in (None, "multistart") and n_starts is not None:
            raise ValueError("n_starts applies to method='multistart' only")
        return _certified(path, correct, fallback_correct, prices, cost_model, objective, target, delta,
                          str(method), bound, random_state)
    if objective.name in ("accepted_accuracy", "system_accuracy"):
        row, level, procedure = _accuracy_row(path, objective, target, delta, n_starts, rule, correction)
        errors, trials = _trials(path, objective)
        feasible = row >= 0
        row = row if feasible else 0  # accept nothing
        empirical = float(1.0 - errors[row] / trials[row]) if trials[row] else math.nan
        guaranteed = (
            math.nan if level is None or not trials[row] or not feasible
            else float(1.0 - clopper_pearson(errors[row], trials[row], level, "upper"))
        )
    else:
        row, feasible, empirical, guaranteed = _coverage_row(path, objective, target, delta, prices, cost_model)
        procedure = "empirical" if delta is None else (
            "hoeffding_cost" if path.cost is not None and objective.needs_prices else "clopper_pearson_coverage")
    if not feasible:
        warn_infeasible(
            f"no threshold meets {objective.name.replace('_', ' ')} target {target:g}"
            + ("" if delta is None else f" with probability {1 - delta:g}")
            + f" on {path.n} calibration inputs; returning the safe end (threshold {path.thresholds[row]:g})"
        )
    return _choice(path, prices, cost_model, row, objective, target, delta, feasible, empirical, guaranteed,
                   procedure)


def _trials(path: Path, objective: Objective) -> tuple[np.ndarray, np.ndarray]:
    if objective.name == "system_accuracy":
        assert path.system_correct is not None
        return path.n - path.system_correct, np.full(path.m.shape, path.n)
    return path.k, path.m


def _accuracy_row(
    path: Path, objective: Objective, target: float, delta: float | None, n_starts: int | None, rule: str,
    correction: str,
) -> tuple[int, float | None, str]:
    """Row chosen for an accuracy target (-1: none), the level it was tested at, the procedure."""
    if not 0 < target < 1:
        raise ValueError(f"target accuracy must lie in (0, 1), got {target}")
    errors, trials = _trials(path, objective)
    start = 0 if objective.name == "system_accuracy" else 1  # row 0 accepts nothing
    alpha = 1.0 - target
    if delta is None:
        # Counts are integers: allow for rounding in alpha * trials (a target equal to an
        # achieved accuracy, e.g. the fallback's own, must count as met).
        meets = (errors[start:] <= alpha * trials[start:] + 1e-9 * trials[start:]) & (trials[start:] > 0)
        if rule == "loosest":
            ok = np.flatnonzero(meets)
            return (start + int(ok[-1]) if ok.size else -1), None, "empirical_loosest"
        # Walk from strict to loose and stop before the first failure: a dip in the curve ends
        # the walk, so a lucky point further down cannot be picked.
        return start + _first_failure(meets) - 1, None, "empirical_first_failure"
    if correction == "bonferroni":
        level = delta / max(int(path.m.size) - start, 1)
        with np.errstate(invalid="ignore"):
            upper = clopper_pearson(errors[start:], trials[start:], level, "upper")
        ok = np.flatnonzero((upper <= alpha + 1e-12) & (trials[start:] > 0))
        return (start + int(ok[-1]) if ok.size else -1), level, "bonferroni"
    if objective.name == "system_accuracy":
        return _sequential_test(errors, trials, alpha, delta, start), delta, "fixed_sequence"
    chains = chain_count(path.n, target, delta) if n_starts is None else int(n_starts)
    if chains < 1:
        raise ValueError(f"n_starts must be >= 1, got {n_starts}")
    level = delta / chains
    first = min_trials(target, level)
    row = -1
    for j in range(chains):
        begin = int(np.searchsorted(path.m, first * 2**j, side="left"))
        row = max(row, _sequential_test(errors, trials, alpha, level, begin))
    return row, level, "multistart"


def _coverage_row(
    path: Path, objective: Objective, target: float, delta: float | None, prices: np.ndarray | None,
    cost_model: CostModel | None,
) -> tuple[int, bool, float, float]:
    """Row, feasibility, empirical figure and bound for coverage, cost and savings targets."""
    n, m = path.n, path.m
    if objective.needs_prices:
        if prices is None or cost_model is None:
            raise ValueError(f"the {objective.name} objective needs stage prices (cost_model)")
        if prices[1] <= prices[0]:
            raise ValueError("the fallback's price must be > 0 for cost and savings objectives")
        budget = target if objective.name == "cost" else (1.0 - target) * cost_model.baseline(1.0)
        if path.cost is not None:
            return _priced_row(path, objective, budget, delta, cost_model)
        # Mean cost per input is affine in coverage: cov * a0 + (1 - cov) * a1.
        need_cov = (prices[1] - budget) / (prices[1] - prices[0])
    else:
        if not 0 <= target <= 1:
            raise ValueError(f"target_coverage must lie in [0, 1], got {target}")
        need_cov = target
    cov_bound = m / n if delta is None else clopper_pearson(m, n, delta, "lower")
    ok = np.flatnonzero(cov_bound >= need_cov - 1e-12)
    feasible = bool(ok.size)
    row = int(ok[0]) if feasible else m.size - 1  # strictest that meets it, else accept all
    cov_emp = float(m[row] / n)
    cov_g = math.nan if delta is None or not feasible else float(cov_bound[row])
    if objective.name == "coverage":
        return row, feasible, cov_emp, cov_g
    assert prices is not None and cost_model is not None

    def figure(cov: float) -> float:
        cost = cov * prices[0] + (1 - cov) * prices[1]
        return float(cost) if objective.name == "cost" else float(cost_model.savings_of(cost, 1))

    return row, feasible, figure(cov_emp), (math.nan if math.isnan(cov_g) else figure(cov_g))


def _priced_row(
    path: Path, objective: Objective, budget: float, delta: float | None, cost_model: CostModel
) -> tuple[int, bool, float, float]:
    """Row, feasibility, empirical figure and bound for cost and savings targets when every input
    has its own price: the exact mean cost of each row, and a Hoeffding upper bound on it."""
    assert path.cost is not None and cost_model.input_prices is not None
    n = path.n
    mean = path.cost / n
    upper = mean
    if delta is not None:  # Bonferroni over the candidate rows: the bound holds for all of them at once
        answer = cost_model.answered_by(n)
        spread = float(answer.max() - answer.min())
        upper = mean + spread * math.sqrt(math.log(mean.size / delta) / (2.0 * n))
    ok = np.flatnonzero(upper <= budget * (1 + 1e-12))
    feasible = bool(ok.size)
    row = int(ok[0]) if feasible else path.m.size - 1  # strictest that meets it, else accept all

    def figure(cost: float) -> float:
        return float(cost) if objective.name == "cost" else float(cost_model.savings_of(cost * n, n))

    guaranteed = math.nan if delta is None or not feasible else figure(float(upper[row]))
    return row, feasible, figure(float(mean[row])), guaranteed


def _paired_empirical_row(path: Path, objective: Objective, target: float, rule: str) -> tuple[int, str]:
    """Empirical row for a paired objective: the figure on the calibration data meets the target."""
    assert path.system_correct is not None
    reference = int(path.system_correct[0])  # row 0: the fallback answers everything
    if objective.name == "relative_accuracy":
        meets = path.system_correct >= target * reference - 1e-9 * path.n
    else:
        meets = path.system_correct >= reference - target * path.n - 1e-9 * path.n
    if rule == "loosest":
        ok = np.flatnonzero(meets[1:])
        return (1 + int(ok[-1]) if ok.size else 0), "empirical_loosest"
    return max(_first_failure(meets[1:]), 0), "empirical_first_failure"


def _paired_empirical(
    path: Path, prices: np.ndarray | None, cost_model: CostModel | None, row: int, objective: Objective,
    target: float, procedure: str,
) -> ThresholdChoice:
    assert path.system_correct is not None
    reference = int(path.system_correct[0])
    system = int(path.system_correct[row])
    if objective.name == "relative_accuracy":
        empirical = system / reference if reference else math.nan
    else:
        empirical = (system - reference) / path.n
    feasible = row > 0
    if not feasible:
        warn_infeasible(
            f"no threshold meets {objective.name.replace('_', ' ')} target {target:g} on {path.n} calibration "
            "inputs; returning the safe end (accept nothing)")
    return _choice(path, prices, cost_model, row, objective, target, None, feasible, empirical, math.nan, procedure)


def _certified(
    path: Path, correct: Any, fallback_correct: Any, prices: np.ndarray | None, cost_model: CostModel | None,
    objective: Objective, target: float, delta: float | None, method: str, bound: str,
    random_state: int | None = 0,
) -> ThresholdChoice:
    """The choice from a certificate of :mod:`.accepted` or :mod:`.relative`."""
    if delta is None:
        raise ValueError(f"the {objective.name.replace('_', ' ')} objective is a certificate: give delta (e.g. 0.05)")
    if objective.name == "accepted_accuracy":
        cert = certify_accepted_accuracy(path.scores, correct, target=target, delta=delta, method=method,
                                         random_state=random_state)
        procedure = method
    else:
        kind = "ratio" if objective.name == "relative_accuracy" else "difference"
        if not 0 < target < 1:
            raise ValueError(f"{objective.keyword} must lie in (0, 1) for a certificate, got {target}")
        epsilon = 1.0 - target if kind == "ratio" else target
        cert = certify_relative_accuracy(
            path.scores, np.stack([check_bool(correct, "correct"), check_bool(fallback_correct, "fallback_correct")]),
            epsilon=epsilon, kind=kind, delta=delta, bound=bound, random_state=random_state)
        procedure = f"paired_{bound}"
    if not cert.certified:
        warn_infeasible(
            f"no threshold meets {objective.name.replace('_', ' ')} target {target:g} with probability "
            f"{1 - delta:g} on {path.n} calibration inputs ({cert.reason}"
            + ("" if cert.labels_needed is None else f"; about {cert.labels_needed} labelled inputs needed")
            + "); returning the safe end (accept nothing)"
        )
    # A failed certificate reports no bound (never the bound of "accept nothing").
    guaranteed = cert.bound if cert.certified and cert.bound is not None else math.nan
    # empirical / guaranteed: system / fallback accuracy (ratio) or system - fallback (difference)
    return _choice(path, prices, cost_model, cert.index, objective, target, delta, cert.certified, cert.empirical,
                   guaranteed, procedure, cert.assumption)


def _choice(
    path: Path, prices: np.ndarray | None, cost_model: CostModel | None, row: int, objective: Objective,
    target: float, delta: float | None, feasible: bool, empirical: float, guaranteed: float, procedure: str,
    assumption: str = "",
) -> ThresholdChoice:
    n, m, k = path.n, int(path.m[row]), int(path.k[row])
    cost = savings = math.nan
    if prices is not None and cost_model is not None:
        total = path.cost[row] if path.cost is not None else m * prices[0] + (n - m) * prices[1]
        cost = float(total / n)
        savings = float(cost_model.savings_of(total, n))
    return ThresholdChoice(
        threshold=float(path.thresholds[row]),
        objective=objective.name,
        target=float(target),
        delta=delta,
        feasible=bool(feasible),
        empirical=float(empirical),
        guaranteed=float(guaranteed),
        n=n,
        m=m,
        k=k,
        coverage=m / n,
        accepted_accuracy=(m - k) / m if m else math.nan,
        system_accuracy=math.nan if path.system_correct is None else float(path.system_correct[row] / n),
        cost_per_input=cost,
        savings=savings,
        procedure=procedure,
        assumption=assumption or (EXCHANGEABLE if delta is not None else ""),
    )
