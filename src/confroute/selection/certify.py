"""Certificates for routing thresholds: accepted accuracy, paired relative accuracy, label budgets.

Every certificate here is a statement about the population the calibration inputs were drawn
from (i.i.d.), holding with probability at least ``1 - delta`` over that draw. Candidate
thresholds are walked from the strictest (the fallback answers everything) to the loosest, and the
loosest candidate the procedure certifies is returned, with the reason when none is.

Accepted accuracy (:func:`certify_accepted_accuracy`)
    "Accuracy of the cheap stage on the inputs it accepts >= target". One Clopper–Pearson test per
    candidate (Geifman & El-Yaniv 2017), combined across candidates by one of:

    ``"fallback"`` (default)
        The fallback procedure (Wiens 2003) over the candidates, strict to loose: an early chain
        from the top at ``0.4 delta``, a main start at ``n / 10`` accepted inputs that adds
        ``0.5 delta``, and restarts at doubling counts after it sharing ``0.1 delta``
        (:func:`fallback_weights`). A chain keeps its level while unbroken, so where it matters
        it is tested at the full ``delta``; one unlucky error among the few most confident
        inputs only costs the early chain's share.
    ``"single"``
        One fixed-sequence chain at ``delta`` from the first candidate that can pass.
    ``"multistart"``
        ``J`` chains from doubling start points, each at ``delta / J`` (the rule of
        :func:`~confroute.selection.thresholds.choose_threshold` before this module).
    ``"split"``
        Learn-then-Test (Angelopoulos et al. 2021): the order of the candidates is learned on a
        random part of the data (by its p-values) and fixed-sequence is run on the rest.
    ``"betting"``
        Fixed-sequence over a quantile grid of thresholds with a test-by-betting per candidate
        (Waudby-Smith & Ramdas 2024) instead of Clopper–Pearson.

    ``benchmarks/bench_certify.py`` compares them (docs/evaluation.md, "Certificates"): the
    fallback procedure has the highest mean coverage at n = 2,000 and never falls far behind the
    single chain where the single chain is best.

Paired relative accuracy (:func:`certify_relative_accuracy`)
    "System accuracy >= fallback accuracy - epsilon" (``kind="difference"``) or ">= (1 - epsilon)
    x fallback accuracy" (``kind="ratio"``), for two stages or any cascade. The routed system and
    the reference (the last stage) differ only on inputs some earlier stage answers *and* on which
    the two disagree, so per input the difference is ``G_i - L_i`` with ``L_i`` = "answered early,
    the early stage wrong, the reference right" (a loss) and ``G_i`` the other way round (a gain).
    Agreements carry no information and need no label. Bounds (``bound=``):

    ``"cp_losses"`` (default)
        Clopper–Pearson upper bound on the losses, ignoring gains (``P(L) - P(G) <= P(L)``).
        Difference: ``L`` out of ``n`` against ``epsilon``. Ratio: ``L`` out of the ``F`` inputs
        the reference gets right, against ``epsilon`` -- exact given which inputs those are, since
        ``P(L | reference right) <= epsilon`` implies the ratio target; no split of ``delta``.
        With labels on disagreements only, ``F`` is unknown and ``epsilon`` is multiplied by a
        lower bound on the reference's accuracy that you supply.
    ``"conditional"``
        Uses gains too: the discordance rate ``pi = P(L) + P(G)`` gets a Clopper–Pearson upper
        bound at ``delta / 2`` and, given the ``D`` discordant inputs, the share of losses among
        them ``q`` another one at ``delta / 2``; the drop ``pi (2 q - 1)`` is bounded by
        ``pi_U (2 q_U - 1)^+`` (union bound; the conditional bound is exact given ``D``). For a
        ratio, ``epsilon`` is multiplied by a Clopper–Pearson lower bound on the reference's
        accuracy at ``delta / 10`` and the rest of ``delta`` goes to the drop.
    ``"betting"``
        A test-by-betting on ``L_i - G_i - epsilon`` (``- epsilon * F_i`` for the ratio, with
        ``F_i`` = reference right; no split of ``delta``), over a quantile grid of candidates.

    Candidates are combined by fixed-sequence testing from strict to loose at the full level.

Label budgets (:func:`needs_label`, :func:`certify_from_disagreements`, :func:`plan_labels`)
    The difference ``P(G) - P(L)`` depends on labels only where the early stage and the reference
    disagree, so with plenty of unlabelled traffic only the disagreements need a label (and for a
    ratio target, a lower bound on the reference's accuracy from elsewhere). Labels can be
    requested in candidate order (strict to loose) and requesting can stop at the first candidate
    that fails. :func:`plan_labels` estimates how many inputs (and labels) certify a target at a
    given coverage, from the disagreement and loss rates.

Candidate order must not depend on labels. Distinct calibration scores (two stages) or any path
of threshold tuples fixed from unlabelled data or from other data (cascades) qualify.

References
----------
Clopper & Pearson (1934). Biometrika 26(4).
Geifman & El-Yaniv (2017). Selective classification for deep neural networks. NeurIPS.
Wiens (2003). A fixed sequence Bonferroni procedure for testing multiple endpoints. Pharmaceutical
Statistics 2(3).
Angelopoulos, Bates, Candès, Jordan & Lei (2021). Learn then test. arXiv:2110.01052.
Waudby-Smith & Ramdas (2024). Estimating means of bounded random variables by betting. JRSS-B 86(1).
McNemar (1947). Note on the sampling error of the difference between correlated proportions or
percentages. Psychometrika 12(2) (only discordant pairs carry the paired difference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bounds import betting_test, binomial_pvalue, clopper_pearson, fallback_procedure, fixed_sequence

__all__ = [
    "Certificate",
    "LabelPlan",
    "ACCEPTED_METHODS",
    "PAIRED_BOUNDS",
    "certify_accepted_accuracy",
    "certify_relative_accuracy",
    "certify_from_disagreements",
    "needs_label",
    "plan_labels",
    "select_accepted",
    "select_accepted_split",
    "select_paired",
    "fallback_weights",
    "betting_min_count",
    "paired_counts",
    "threshold_path",
]

ACCEPTED_METHODS = ("fallback", "single", "multistart", "split", "betting")
PAIRED_BOUNDS = ("cp_losses", "conditional", "betting")
#: The default fallback procedure's layout (chosen with benchmarks/bench_certify.py): share of
#: delta on the early chain, on the restarts, and the main start as a share of n.
EARLY_WEIGHT = 0.4
RESTART_WEIGHT = 0.1
MAIN_START = 0.1
#: Share of delta spent on the reference's accuracy for a ratio target.
REFERENCE_SHARE = 0.1


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class Certificate:
    """What a certification procedure established on calibration data.

    Attributes
    ----------
    objective : str
        ``"accepted_accuracy"``, ``"relative_accuracy"`` (ratio) or ``"accuracy_drop"``
        (difference).
    method : str
        The combination rule or bound used.
    target : float
        Accuracy target, or ``epsilon`` for relative objectives.
    delta : float
    certified : bool
        False when no candidate could be certified; then ``index`` is 0 (accept nothing).
    index : int
        Row of the chosen candidate (0: the strictest, "accept nothing").
    threshold : float or tuple or None
        The chosen candidate (a threshold, or whatever the caller passed as candidates).
    coverage : float
        Share of calibration inputs answered before the last stage at that candidate.
    empirical : float
        The objective's figure on the calibration data (accepted accuracy; system minus
        reference accuracy; or their ratio).
    bound : float or None
        A lower bound on that figure at the chosen candidate, at the level it was tested at
        (``None`` for betting).
    n : int
        Calibration inputs.
    labels_used : int
        Labels the certificate depends on (all inputs, or only the disagreements).
    reason : str or None
        Why nothing (more) could be certified: too few inputs, too many errors or losses.
    labels_needed : int or None
        When nothing was certified: the planner's estimate of the labelled inputs needed to
        certify the first candidate that failed (``None`` when its rates cannot reach the target).
    """

    objective: str
    method: str
    target: float
    delta: float
    certified: bool
    index: int
    threshold: Any
    coverage: float
    empirical: float
    bound: float | None
    n: int
    labels_used: int
    reason: str | None = None
    labels_needed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable (non-finite numbers become ``None``)."""
        return {k: _jsonable(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class LabelPlan:
    """How many inputs and labels a paired certificate needs at one coverage.

    Attributes
    ----------
    n_inputs : int or None
        Calibration inputs (unlabelled traffic) needed; ``None`` when the rates cannot meet the
        target at any size (the loss rate is above ``epsilon``).
    n_labels : int or None
        Labels among them: the expected number of disagreements (``n_inputs * disagreement_rate``).
    n_labels_unpaired : int or None
        Labels a Clopper–Pearson bound on the system's accuracy would need instead (every input
        labelled), at the same rates; ``None`` when it cannot reach the target.
    """

    n_inputs: int | None
    n_labels: int | None
    n_labels_unpaired: int | None
    disagreement_rate: float
    loss_rate: float
    gain_rate: float
    epsilon: float
    kind: str
    delta: float
    bound: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable."""
        return {k: _jsonable(v) for k, v in self.__dict__.items()}


# --------------------------------------------------------------------------- array-level cores
def _min_trials(target: float, level: float) -> int:
    """The fewest accepted inputs with which even zero errors pass the test at ``level``."""
    return max(1, math.ceil(math.log(level) / math.log(target)))


def _chain_count(n: int, target: float, level: float, most: int = 8) -> int:
    """How many doubling start points fit in ``n`` inputs (each chain at level / J)."""
    chains = 1
    while chains < most and _min_trials(target, level / (chains + 1)) * 2**chains <= n:
        chains += 1
    return chains


def _start_rows(m: np.ndarray, count: int) -> np.ndarray:
    """First row (per batch element) whose accepted count reaches ``count`` (H when none)."""
    return (m < count).sum(axis=-1)


def fallback_weights(
    m: np.ndarray, n: int, target: float, delta: float, restart_weight: float = RESTART_WEIGHT,
    early_weight: float = EARLY_WEIGHT, main_start: float = MAIN_START,
) -> np.ndarray:
    """Weights of the default fallback procedure over the rows of a threshold path.

    Three kinds of start, fixed before any label is seen (they depend on ``n``, the target,
    ``delta`` and the accepted counts ``m`` only):

    * an early chain from the first row that can pass at ``early_weight * delta`` (it certifies
      small coverages, and when it is still unbroken at the main start it hands its level on);
    * the main start at ``main_start * n`` accepted inputs, holding the rest but
      ``restart_weight``: past the few most confident inputs, where one unlucky error would
      end a chain that started at the very top;
    * restarts at doubling accepted counts after the main start, sharing ``restart_weight``
      (for populations whose errors sit among the most confident inputs).

    An unbroken chain is tested at the full ``delta`` from the main start on.
    """
    if not (0 <= restart_weight and 0 < early_weight and restart_weight + early_weight <= 1):
        raise ValueError("need restart_weight >= 0, early_weight > 0 and their sum <= 1")
    rows = np.arange(m.shape[-1])
    m0 = _min_trials(target, delta * early_weight)
    weights = early_weight * (rows == _start_rows(m, m0)[..., None])
    main = max(m0 + 1, int(main_start * n))
    weights = weights + (1 - early_weight - restart_weight) * (rows == _start_rows(m, main)[..., None])
    restarts = [main * 2**j for j in range(1, 64) if main * 2**j <= n]
    for count in restarts:
        weights = weights + restart_weight / len(restarts) * (rows == _start_rows(m, count)[..., None])
    if not restarts:  # nowhere to restart: give the share to the main start
        weights = weights + restart_weight * (rows == _start_rows(m, main)[..., None])
    return weights


def select_accepted(
    m: Any, k: Any, n: int, target: float, delta: float, method: str = "fallback",
    restart_weight: float = RESTART_WEIGHT,
) -> tuple[np.ndarray, np.ndarray]:
    """Loosest certified row for "accuracy on accepted inputs >= target", from counts.

    Parameters
    ----------
    m, k : arrays of int, shape (..., H)
        Accepted inputs and errors among them at each candidate, strict to loose (row 0 accepts
        nothing; ``m`` nondecreasing). Leading dimensions are independent calibration sets.
    n : int
        Calibration inputs (sets the chain layout; no labels involved).
    target, delta : float
    method : {"fallback", "single", "multistart"}
    restart_weight : float
        Share of ``delta`` the fallback procedure keeps for restarts (see
        :func:`fallback_weights`).

    Returns
    -------
    row : array of int, shape (...)
        The loosest rejected row, or 0 when none.
    level : array of float, shape (...)
        The level that row was tested at (0 when none).

    Examples
    --------
    >>> m = np.arange(0, 201)[None, :]          # one input accepted per row
    >>> k = (np.arange(0, 201) // 50)[None, :]   # one error every 50 inputs
    >>> row, level = select_accepted(m, k, 200, 0.9, 0.05, "single")
    >>> int(row[0]), round(float(level[0]), 3)
    (200, 0.05)
    """
    m = np.asarray(m, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    alpha = 1.0 - target
    p = binomial_pvalue(k, m, alpha)
    p[..., 0] = 1.0  # row 0 accepts nothing: never "certified"
    H = m.shape[-1]
    rows = np.arange(H)
    if method == "single":
        weights = (rows == _start_rows(m, _min_trials(target, delta))[..., None]).astype(float)
        rej, lev = fallback_procedure(p, weights, delta)
    elif method == "fallback":
        weights = fallback_weights(m, n, target, delta, restart_weight)
        rej, lev = fallback_procedure(p, weights, delta)
    elif method == "multistart":
        chains = _chain_count(n, target, delta)
        level = delta / chains
        first = _min_trials(target, level)
        rej = np.zeros(p.shape, dtype=bool)
        for j in range(chains):
            w = (rows == _start_rows(m, first * 2**j)[..., None]).astype(float)
            r, _ = fallback_procedure(p, w, level)
            rej |= r
        lev = np.where(rej, level, 0.0)
    else:
        raise ValueError(f"method must be one of {ACCEPTED_METHODS[:3]} here, got {method!r}")
    return _loosest(rej, lev)


def _loosest(rej: np.ndarray, lev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    H = rej.shape[-1]
    last = H - 1 - np.argmax(rej[..., ::-1], axis=-1)
    row = np.where(rej.any(axis=-1), last, 0)
    level = np.take_along_axis(lev, row[..., None], axis=-1)[..., 0]
    return row, np.where(row > 0, level, 0.0)


def select_accepted_split(
    m_a: Any, k_a: Any, m_b: Any, k_b: Any, target: float, delta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Learn-then-Test with a learned order: sort candidates by their p-values on part A, then
    fixed-sequence on part B at ``delta``. Returns ``(row, level)`` as :func:`select_accepted`."""
    alpha = 1.0 - target
    p_a = binomial_pvalue(k_a, m_a, alpha)
    p_b = binomial_pvalue(k_b, m_b, alpha)
    p_a[..., 0] = p_b[..., 0] = 1.0
    H = p_a.shape[-1]
    # Ties (p = 1 at the strict end, p = 0 deep inside) go looser first.
    order = np.lexsort((-np.broadcast_to(np.arange(H), p_a.shape), p_a), axis=-1)
    run = fixed_sequence(np.take_along_axis(p_b, order, axis=-1) <= delta)
    reach = np.maximum.accumulate(order, axis=-1)
    row = np.where(run > 0, np.take_along_axis(reach, np.maximum(run - 1, 0)[..., None], axis=-1)[..., 0], 0)
    return row, np.where(row > 0, delta, 0.0)


def _paired_margin(
    kind: str, epsilon: float, delta: float, n: Any, fallback_correct: Any, reference_lower: Any
) -> tuple[np.ndarray, float, np.ndarray | None]:
    """The drop allowed (``epsilon`` or ``epsilon`` x a lower bound on the reference accuracy),
    the level left for the tests, and that lower bound."""
    if kind == "difference":
        return np.asarray(epsilon, dtype=np.float64), delta, None
    if kind != "ratio":
        raise ValueError(f"kind must be 'ratio' or 'difference', got {kind!r}")
    if reference_lower is not None:
        lb = np.asarray(reference_lower, dtype=np.float64)
        return epsilon * lb, delta, lb
    if fallback_correct is None:
        raise ValueError("a ratio target needs the reference's correct count (or reference_lower=)")
    lb = clopper_pearson(fallback_correct, n, delta * REFERENCE_SHARE, "lower")
    return epsilon * lb, delta * (1 - REFERENCE_SHARE), lb


def select_paired(
    L: Any, G: Any, n: int, epsilon: float, delta: float, *, kind: str = "difference",
    bound: str = "cp_losses", fallback_correct: Any = None, reference_lower: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loosest certified row for a paired relative target, from loss and gain counts.

    Parameters
    ----------
    L, G : arrays of int, shape (..., H)
        Per candidate (strict to loose; row 0 answers nothing early): inputs answered early
        where the early stage is wrong and the reference right (``L``), and the reverse (``G``).
    n : int
        Calibration inputs.
    epsilon : float
        Allowed drop (difference) or relative drop (ratio).
    delta : float
    kind : {"difference", "ratio"}
    bound : {"cp_losses", "conditional"}
    fallback_correct : int or array of shape (...), optional
        The reference's correct count ``F`` among the ``n`` (ratio targets).
    reference_lower : float or array, optional
        Ratio targets when ``F`` is unknown (labels on disagreements only): a lower bound on the
        reference's accuracy established elsewhere; the allowed drop is ``epsilon`` times it.

    Returns
    -------
    row : array of int, shape (...)
    drop_upper : array of float, shape (...)
        At that row, an upper bound on ``P(L) - P(G)`` (difference) or on the relative drop
        ``(P(L) - P(G)) / P(reference right)`` (ratio); 0 at row 0.

    Notes
    -----
    Ratio with ``"cp_losses"`` and ``F`` known is exact without splitting ``delta``: given which
    inputs the reference gets right, the losses are ``Binomial(F, r)`` with ``r = P(loss |
    reference right)``, and ``r <= epsilon`` implies ``P(L) - P(G) <= epsilon x P(reference
    right)``. So the test is Clopper–Pearson on ``L`` out of ``F`` against ``epsilon``.

    Examples
    --------
    >>> L = np.array([0, 0, 0, 1, 2, 4])   # losses as the threshold loosens
    >>> G = np.array([0, 0, 1, 1, 1, 1])
    >>> row, up = select_paired(L, G, 1000, 0.005, 0.05)
    >>> int(row), round(float(up), 4)      # 1 loss in 1000 passes; 2 do not
    (3, 0.0047)
    """
    L = np.asarray(L, dtype=np.float64)
    G = np.asarray(G, dtype=np.float64)
    if kind not in ("ratio", "difference"):
        raise ValueError(f"kind must be 'ratio' or 'difference', got {kind!r}")
    if bound not in ("cp_losses", "conditional"):
        raise ValueError(f"bound must be 'cp_losses' or 'conditional' here, got {bound!r}")
    if kind == "ratio" and bound == "cp_losses" and reference_lower is None:
        if fallback_correct is None:
            raise ValueError("a ratio target needs the reference's correct count (or reference_lower=)")
        F = np.asarray(fallback_correct, dtype=np.float64)[..., None]
        up = clopper_pearson(L, np.broadcast_to(F, L.shape), delta, "upper")
    else:
        _, level, lb = _paired_margin(kind, epsilon, delta, n, fallback_correct, reference_lower)
        up = paired_drop_upper(L, G, n, level, bound)
        if lb is not None:
            up = up / np.maximum(np.asarray(lb, dtype=np.float64), 1e-300)[..., None]
    run = fixed_sequence(up[..., 1:] <= epsilon + 1e-15)
    row = run  # rows 1..run are certified
    at = np.take_along_axis(up, row[..., None], axis=-1)[..., 0]
    return row, np.where(row > 0, at, 0.0)


def paired_drop_upper(L: Any, G: Any, n: int, level: float, bound: str = "cp_losses") -> np.ndarray:
    """Upper confidence bound (at ``level``) on ``P(L) - P(G)`` for each candidate.

    Examples
    --------
    >>> [round(float(x), 4) for x in paired_drop_upper([0, 3], [0, 3], 872, 0.05, "conditional")]
    [0.0042, 0.0114]
    """
    L = np.asarray(L, dtype=np.float64)
    G = np.asarray(G, dtype=np.float64)
    if bound == "cp_losses":
        return clopper_pearson(L, n, level, "upper")
    if bound == "conditional":
        D = L + G
        pi_u = clopper_pearson(D, n, level / 2, "upper")
        q_u = np.where(D > 0, clopper_pearson(L, np.maximum(D, 1), level / 2, "upper"), 1.0)
        return pi_u * np.maximum(2 * q_u - 1, 0.0)
    raise ValueError(f"bound must be one of {PAIRED_BOUNDS}, got {bound!r}")


# --------------------------------------------------------------------------- per-input helpers
def threshold_path(scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds of a two-stage router, strict to loose, and how to count along them.

    Returns ``(thresholds, order, ends)``: ``thresholds[0] = inf`` (accept nothing) and then every
    distinct score, descending; ``order`` sorts inputs by descending score; the inputs accepted at
    row ``h >= 1`` are ``order[:ends[h]]``. Counts of any per-input indicator ``x`` at every row
    are ``np.r_[0, np.cumsum(x[order])][ends]``.

    Examples
    --------
    >>> t, order, ends = threshold_path([0.9, 0.6, 0.9, 0.7])
    >>> t.tolist(), ends.tolist()
    ([inf, 0.9, 0.7, 0.6], [0, 2, 3, 4])
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; a NaN score can be neither accepted nor deferred")
    order = np.argsort(-s, kind="stable")
    ss = s[order]
    last_of_tie = np.r_[ss[1:] != ss[:-1], True] if ss.size else np.zeros(0, bool)
    ends = np.r_[0, np.flatnonzero(last_of_tie) + 1]
    return np.r_[np.inf, ss[last_of_tie]], order, ends


def _counts(x: np.ndarray, order: np.ndarray, ends: np.ndarray) -> np.ndarray:
    return np.r_[0, np.cumsum(x[order])][ends]


def _as_bool(x: Any, name: str, n: int | None = None) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype != bool:
        if a.size and not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1), got values outside {{0, 1}}")
        a = a.astype(bool)
    if n is not None and a.shape[-1] != n:
        raise ValueError(f"{name} has {a.shape[-1]} inputs, expected {n}")
    return a


def paired_counts(answered_by: Any, stage_correct: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss and gain counts, and coverage, for each candidate of a cascade.

    Parameters
    ----------
    answered_by : array of int, shape (H, n)
        Which stage answers each input under each candidate (the last stage is the reference).
    stage_correct : array of bool, shape (S, n)

    Returns
    -------
    L, G : arrays of int, shape (H,)
    coverage : array of float, shape (H,)
        Share answered before the last stage.

    Examples
    --------
    >>> correct = np.array([[1, 0, 1, 1], [1, 1, 0, 1]], bool)   # cheap, reference
    >>> L, G, cov = paired_counts([[1, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]], correct)
    >>> L.tolist(), G.tolist(), cov.tolist()
    ([0, 1, 1], [0, 1, 1], [0.0, 0.75, 1.0])
    """
    c = _as_bool(stage_correct, "stage_correct")
    if c.ndim != 2 or c.shape[0] < 2:
        raise ValueError(f"stage_correct must have shape (stages >= 2, n), got {c.shape}")
    a = np.asarray(answered_by)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != c.shape[1]:
        raise ValueError(f"answered_by must have shape (candidates, {c.shape[1]}), got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer) or a.min(initial=0) < 0 or a.max(initial=0) >= c.shape[0]:
        raise ValueError(f"answered_by must hold stage indices 0..{c.shape[0] - 1}")
    last = c.shape[0] - 1
    early = a != last
    ans_ok = c[a, np.arange(c.shape[1])]
    ref = c[last]
    L = (early & ~ans_ok & ref).sum(axis=1)
    G = (early & ans_ok & ~ref).sum(axis=1)
    return L, G, early.mean(axis=1)


# --------------------------------------------------------------------------- planner
def _paired_passes(n: int, rates: tuple[float, float, float], epsilon: float, kind: str, delta: float,
                   bound: str) -> bool:
    p_l, p_g, acc_ref = rates
    L, G = round(p_l * n), round(p_g * n)
    F = round(acc_ref * n) if kind == "ratio" else None
    if bound == "betting":
        bound = "cp_losses"  # the planner's stand-in: betting has no closed form
    row, _ = select_paired(np.array([0, L]), np.array([0, G]), n, epsilon, delta, kind=kind, bound=bound,
                           fallback_correct=F)
    return bool(row > 0)


def _smallest_n(passes: Any, start: int = 1, most: int = 10**9) -> int | None:
    """Smallest n >= start with passes(n), assuming passing is (roughly) monotone in n."""
    lo, hi = start, start
    while not passes(hi):
        lo = hi + 1
        hi *= 2
        if hi > most:
            return None
    while lo < hi:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def plan_labels(
    disagreement_rate: float, loss_rate: float, gain_rate: float = 0.0, *, epsilon: float,
    kind: str = "ratio", reference_accuracy: float | None = None, delta: float = 0.05,
    bound: str = "cp_losses",
) -> LabelPlan:
    """How many inputs, and labels on their disagreements, certify a paired target.

    The plan is for the typical draw: the smallest ``n`` at which the bound passes when the
    counts equal their expectations (``round(rate * n)``), so about half of the draws at that
    size certify; ask for more to be safe. Rates are per input at the coverage of interest:
    the disagreement rate is known from unlabelled data; losses and gains come from a pilot, a
    previous certificate or an assumption.

    Parameters
    ----------
    disagreement_rate : float
        Share of inputs answered early on which the early stage and the reference disagree.
    loss_rate, gain_rate : float
        Shares of inputs that are losses (early wrong, reference right) and gains.
    epsilon : float
    kind : {"ratio", "difference"}
    reference_accuracy : float, optional
        The reference's accuracy (ratio targets).
    delta : float
    bound : {"cp_losses", "conditional", "betting"}
        ``"betting"`` is planned as ``"cp_losses"``.

    Returns
    -------
    LabelPlan
        With ``n_labels_unpaired``: the labels a Clopper–Pearson bound on the system accuracy of
        every (labelled) input needs for the same target at the same rates.

    Examples
    --------
    >>> p = plan_labels(0.02, 0.001, 0.01, epsilon=0.005, kind="ratio", reference_accuracy=0.9)
    >>> p.n_inputs, p.n_labels, p.n_labels_unpaired   # 1,052 inputs, 22 of them labelled
    (1052, 22, 1429)
    """
    if kind == "ratio" and reference_accuracy is None:
        raise ValueError("a ratio target needs reference_accuracy= (the reference's accuracy)")
    if not 0 <= loss_rate <= disagreement_rate <= 1 or gain_rate < 0 or loss_rate + gain_rate > disagreement_rate + 1e-12:
        raise ValueError("need 0 <= loss_rate + gain_rate <= disagreement_rate <= 1")
    acc = 1.0 if reference_accuracy is None else float(reference_accuracy)
    rates = (loss_rate, gain_rate, acc)
    allowed = epsilon * (acc if kind == "ratio" else 1.0)
    feasible = loss_rate - (gain_rate if bound == "conditional" else 0.0) < allowed
    n = _smallest_n(lambda k: _paired_passes(k, rates, epsilon, kind, delta, bound)) if feasible else None
    # Unpaired: Clopper–Pearson lower bound on system accuracy >= the target computed from the
    # reference's accuracy (as certified today), every input labelled.
    sys_acc = acc - loss_rate + gain_rate
    goal = acc * (1 - epsilon) if kind == "ratio" else acc - epsilon

    def unpaired(k: int) -> bool:
        return bool(clopper_pearson(round(sys_acc * k), k, delta, "lower") >= goal)

    n_unpaired = _smallest_n(unpaired) if sys_acc > goal else None
    return LabelPlan(
        n_inputs=n, n_labels=None if n is None else math.ceil(n * disagreement_rate),
        n_labels_unpaired=n_unpaired, disagreement_rate=disagreement_rate, loss_rate=loss_rate,
        gain_rate=gain_rate, epsilon=epsilon, kind=kind, delta=delta, bound=bound,
    )


# --------------------------------------------------------------------------- high-level entry points
def certify_accepted_accuracy(
    scores: Any, correct: Any, *, target: float, delta: float = 0.05, method: str = "fallback",
    restart_weight: float = RESTART_WEIGHT, split: float = 0.3, grid: int = 64, random_state: Any = 0,
) -> Certificate:
    """Certify "accuracy of the cheap stage on the inputs it accepts >= target" (two stages).

    Parameters
    ----------
    scores : array of float, shape (n,)
        The cheap stage's confidence; accepted when ``score >= threshold``.
    correct : array of bool, shape (n,)
        Whether the cheap stage is right.
    target : float
        In (0, 1).
    delta : float, default 0.05
    method : {"fallback", "single", "multistart", "split", "betting"}, default "fallback"
        See the module notes; the default won the simulation in ``benchmarks/bench_certify.py``.
    restart_weight : float
        Share of ``delta`` kept for restarts (``"fallback"``).
    split : float
        Share of inputs that learn the order (``"split"``).
    grid : int
        Quantile thresholds tested (``"betting"``; the inputs keep their given order, which must
        not depend on their labels).
    random_state : int or Generator
        The split (``"split"``).

    Returns
    -------
    Certificate

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = rng.random(2000)
    >>> ok = rng.random(2000) < 0.5 + 0.5 * s        # the population optimum is coverage 0.4
    >>> c = certify_accepted_accuracy(s, ok, target=0.9, delta=0.05)
    >>> c.certified, c.bound >= 0.9, round(c.coverage, 2)
    (True, True, 0.33)
    """
    s = np.asarray(scores, dtype=np.float64)
    ok = _as_bool(correct, "correct", s.shape[0] if s.ndim == 1 else None)
    if s.ndim != 1 or ok.shape != s.shape:
        raise ValueError(f"scores and correct must be 1-d of the same length, got {s.shape} and {ok.shape}")
    n = s.size
    if n == 0:
        raise ValueError("certification needs at least one calibration input")
    if not 0 < target < 1:
        raise ValueError(f"target must lie in (0, 1), got {target}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    if method not in ACCEPTED_METHODS:
        raise ValueError(f"method must be one of {ACCEPTED_METHODS}, got {method!r}")
    thresholds, order, ends = threshold_path(s)
    m = ends.astype(np.float64)
    k = _counts(~ok, order, ends).astype(np.float64)
    if method in ("fallback", "single", "multistart"):
        row_a, level_a = select_accepted(m, k, n, target, delta, method, restart_weight)
        row, level = int(row_a), float(level_a)
    elif method == "split":
        if not 0 < split < 1:
            raise ValueError(f"split must lie in (0, 1), got {split}")
        rng = np.random.default_rng(random_state)
        in_a = np.zeros(n, bool)
        in_a[rng.permutation(n)[: int(round(split * n))]] = True
        m_a, k_a = _counts(in_a, order, ends), _counts(in_a & ~ok, order, ends)
        m_b, k_b = m - m_a, k - k_a
        row_a, _ = select_accepted_split(m_a, k_a, m_b, k_b, target, delta)
        row, level = int(row_a), delta
        m, k = m_b, k_b  # the certificate rests on part B
    else:
        alpha = 1.0 - target
        rows = _grid_rows(ends, grid)
        rows = rows[ends[rows] >= betting_min_count(alpha, delta)]  # stricter rows cannot pass
        y = np.stack([np.where(s >= thresholds[r], (~ok).astype(float) - alpha, 0.0) for r in rows])
        rej = betting_test(y, delta, upper=1 - alpha, lower=-alpha)
        run = int(fixed_sequence(rej))
        row, level = (int(rows[run - 1]), delta) if run else (0, 0.0)
    certified = row > 0
    mm, kk = int(m[row]), int(k[row])
    empirical = (mm - kk) / mm if mm else float("nan")
    bound = (1 - float(clopper_pearson(kk, mm, level, "upper"))) if certified and method != "betting" else None
    reason = needed = None
    if not certified:
        reason, needed = _accepted_reason(m, k, n, target, delta)
    return Certificate(
        objective="accepted_accuracy", method=method, target=float(target), delta=float(delta),
        certified=certified, index=row, threshold=float(thresholds[row]), coverage=float(ends[row] / n),
        empirical=float(empirical), bound=bound, n=n, labels_used=n, reason=reason, labels_needed=needed,
    )


def betting_min_count(alpha: float, delta: float, max_fraction: float = 0.5) -> int:
    """Fewest accepted inputs with which :func:`~confroute.selection.bounds.betting_test` can
    certify an error rate below ``alpha`` even with no error (a label-free grid cut-off)."""
    return math.ceil(math.log(1 / delta) / math.log1p(max_fraction * alpha / (1 - alpha)))


def _grid_rows(ends: np.ndarray, grid: int) -> np.ndarray:
    """Rows nearest to ``grid`` evenly spaced coverages (label-free), strict to loose."""
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    n = ends[-1]
    want = np.linspace(n / grid, n, grid)
    rows = np.unique(np.clip(np.searchsorted(ends, want, side="left"), 1, ends.size - 1))
    return rows


def _accepted_reason(m: np.ndarray, k: np.ndarray, n: int, target: float, delta: float) -> tuple[str, int | None]:
    m0 = _min_trials(target, delta)
    if m[-1] < m0:
        return (f"too few accepted inputs: even with no error, {m0} accepted inputs are needed at "
                f"target {target:g} and delta {delta:g}, and there are {int(m[-1])} in all", None)
    r = int(np.searchsorted(m, m0, side="left"))
    rate = k[r] / m[r]
    if rate >= 1 - target:
        return (f"too many errors among the most confident inputs: {int(k[r])} in the top {int(m[r])} "
                f"(error rate {rate:.3g} > {1 - target:g})", None)
    share = m[r] / n

    def passes(size: int) -> bool:
        mm = max(1, round(share * size))
        return bool(binomial_pvalue(round(rate * mm), mm, 1 - target) <= delta)

    need = _smallest_n(passes, start=n)
    return (f"too many errors among the most confident inputs: {int(k[r])} in the top {int(m[r])} "
            f"fail the test at delta {delta:g}", need)


def certify_relative_accuracy(
    scores: Any = None, stage_correct: Any = None, *, answered_by: Any = None, candidates: Any = None,
    epsilon: float, kind: str = "ratio", delta: float = 0.05, bound: str = "cp_losses",
    reference_lower: float | None = None, grid: int = 64,
) -> Certificate:
    """Certify "system accuracy >= (1 - epsilon) x the reference's" (or ">= reference - epsilon").

    The reference is the last stage (the fallback). Give either ``scores`` of the cheap stage
    (two stages: every distinct score is a candidate threshold) or ``answered_by`` (any cascade:
    which stage answers each input under each candidate, candidates ordered from strict to
    loose by a rule that uses no labels).

    Parameters
    ----------
    scores : array of float, shape (n,), optional
    stage_correct : array of bool, shape (S, n)
        Whether each stage is right on each input; the last row is the reference.
    answered_by : array of int, shape (H, n), optional
    candidates : sequence of length H, optional
        What each row of ``answered_by`` stands for (e.g. threshold tuples), reported back.
    epsilon : float
        Relative drop (``kind="ratio"``; 0.005 for "99.5% of the reference's accuracy") or
        absolute drop (``kind="difference"``).
    kind : {"ratio", "difference"}
    delta : float, default 0.05
    bound : {"cp_losses", "conditional", "betting"}, default "cp_losses"
    reference_lower : float, optional
        A lower bound on the reference's accuracy established on other data (ratio targets);
        then all of ``delta`` goes to the paired tests.
    grid : int
        Candidates tested by ``bound="betting"`` with ``scores``.

    Returns
    -------
    Certificate
        ``empirical`` and ``bound`` are the ratio of system to reference accuracy (ratio) or
        their difference; ``labels_used`` counts the disagreements the certificate read.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> n = 2000
    >>> ref = rng.random(n) < 0.9                       # the fallback: 90% accurate
    >>> s = rng.random(n)
    >>> cheap = np.where(rng.random(n) < 0.8 * s, ref, rng.random(n) < 0.6)
    >>> c = certify_relative_accuracy(s, np.stack([cheap, ref]), epsilon=0.02, delta=0.05)
    >>> c.certified, c.bound >= 0.98
    (True, True)
    """
    if (scores is None) == (answered_by is None):
        raise ValueError("give exactly one of scores (two stages) or answered_by (any cascade)")
    if stage_correct is None:
        raise ValueError("stage_correct (shape (stages, n)) is required")
    c = _as_bool(stage_correct, "stage_correct")
    if c.ndim != 2 or c.shape[0] < 2:
        raise ValueError(f"stage_correct must have shape (stages >= 2, n), got {c.shape}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    if bound not in PAIRED_BOUNDS:
        raise ValueError(f"bound must be one of {PAIRED_BOUNDS}, got {bound!r}")
    n = c.shape[1]
    if n == 0:
        raise ValueError("certification needs at least one calibration input")
    ref = c[-1]
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (n,):
            raise ValueError(f"scores must have shape ({n},), got {s.shape}")
        if c.shape[0] != 2:
            raise ValueError("with scores, stage_correct must have two rows (cheap, reference); "
                             "use answered_by= for a longer cascade")
        thresholds, order, ends = threshold_path(s)
        loss, gain = ~c[0] & ref, c[0] & ~ref
        L, G = _counts(loss, order, ends), _counts(gain, order, ends)
        coverage = ends / n
        labels_cum = _counts(c[0] != ref, order, ends)
        cands: Any = thresholds
    else:
        a = np.asarray(answered_by)
        if a.ndim == 1:
            a = a[None, :]
        L, G, coverage = paired_counts(a, c)
        # Row 0 (everything to the reference) is the safe end, prepended.
        L, G, coverage = np.r_[0, L], np.r_[0, G], np.r_[0.0, coverage]
        last = c.shape[0] - 1
        ans_ok = c[a, np.arange(n)] if a.size else np.zeros((0, n), bool)
        disagree = (a != last) & (ans_ok != ref)
        labels_cum = np.r_[0, np.logical_or.accumulate(disagree, axis=0).sum(axis=1)]
        cands = [None, *(range(a.shape[0]) if candidates is None else list(candidates))]
        if len(cands) != L.size:
            raise ValueError(f"candidates has {len(cands) - 1} entries for {a.shape[0]} rows of answered_by")
    F = int(ref.sum())
    if kind == "ratio" and reference_lower is None and bound != "cp_losses" and F == 0:
        raise ValueError("the reference is never right: a ratio target is meaningless")
    if bound == "betting":
        if scores is not None:
            rows = np.r_[0, _grid_rows(ends, grid)]
            acc_mask = np.stack([s >= thresholds[r] for r in rows[1:]])
        else:
            rows = np.arange(L.size)
            acc_mask = a != c.shape[0] - 1
        y = _paired_y(acc_mask, c, a if scores is None else None, epsilon, kind, reference_lower)
        rej = betting_test(y, delta, upper=1.0, lower=-1.0 - epsilon)
        run = int(fixed_sequence(rej))
        row = int(rows[run]) if run else 0
        stat: float | None = None
    else:
        r_arr, up = select_paired(L, G, n, epsilon, delta, kind=kind, bound=bound, fallback_correct=F,
                                  reference_lower=reference_lower)
        row, stat = int(r_arr), float(up)
    certified = row > 0
    acc_ref = F / n
    drop_emp = float(L[row] - G[row]) / n
    if kind == "ratio":
        empirical = (acc_ref - drop_emp) / acc_ref if acc_ref else float("nan")
        objective = "relative_accuracy"
    else:
        empirical = -drop_emp
        objective = "accuracy_drop"
    bnd = None if stat is None or not certified else (1 - stat if kind == "ratio" else -stat)
    reason = needed = None
    if not certified and L.size > 1:
        reason, needed = _paired_reason(n, L[1], G[1], float(coverage[1]), epsilon, kind, delta, bound, acc_ref)
    # A labeller walking the candidates in order needs the disagreements up to the first failure.
    labels = int(labels_cum[min(row + 1, labels_cum.size - 1)])
    thr = float(cands[row]) if scores is not None else cands[row]
    return Certificate(
        objective=objective, method=bound, target=float(epsilon), delta=float(delta), certified=certified,
        index=row, threshold=tuple(thr) if isinstance(thr, (tuple, list)) else thr,
        coverage=float(coverage[row]), empirical=float(empirical), bound=bnd, n=n, labels_used=labels,
        reason=reason, labels_needed=needed,
    )


def _paired_y(acc_mask: np.ndarray, c: np.ndarray, a: Any, epsilon: float, kind: str,
              reference_lower: float | None) -> np.ndarray:
    """Per-candidate, per-input ``L - G - epsilon (x F)`` for the betting test."""
    ref = c[-1]
    if a is None:
        ans_ok = np.broadcast_to(c[0], acc_mask.shape)
    else:
        ans_ok = c[a, np.arange(c.shape[1])]
    loss = acc_mask & ~ans_ok & ref
    gain = acc_mask & ans_ok & ~ref
    if kind == "ratio":
        if reference_lower is not None:
            return loss.astype(float) - gain - epsilon * reference_lower
        return loss.astype(float) - gain - epsilon * ref
    return loss.astype(float) - gain - epsilon


def _paired_reason(n: int, L: float, G: float, coverage: float, epsilon: float, kind: str, delta: float,
                   bound: str, acc_ref: float) -> tuple[str, int | None]:
    allowed = epsilon * (acc_ref if kind == "ratio" else 1.0)
    n_min = math.ceil(math.log(delta) / math.log(1 - allowed)) if 0 < allowed < 1 else 1
    if n < n_min:
        reason = (f"too few inputs: even with no disagreement, about {n_min} inputs are needed to certify a drop "
                  f"of at most {allowed:.3g} at delta {delta:g} (have {n})")
    elif L + G == 0:
        reason = (f"the first candidate (coverage {coverage:.1%}) has no disagreement, but {n} inputs are too few "
                  f"for this bound ({bound}) at delta {delta:g}")
    else:
        reason = (f"too many losses among the disagreements at the first candidate (coverage {coverage:.1%}): "
                  f"{int(L)} inputs where the reference is right and the early stage wrong, {int(G)} the "
                  f"other way, out of {n}")
    plan = plan_labels((L + G) / n, L / n, G / n, epsilon=epsilon, kind=kind, reference_accuracy=acc_ref,
                       delta=delta, bound=bound)
    return reason, None if bound == "betting" else plan.n_inputs


def needs_label(predictions: Any, *, scores: Any = None, threshold: float = -np.inf,
                answered_by: Any = None) -> np.ndarray:
    """Which inputs need a label for a paired relative certificate: the disagreements.

    Parameters
    ----------
    predictions : array, shape (S, n)
        Every stage's predicted class for every (unlabelled) input; the last row is the
        reference.
    scores : array, shape (n,), optional
        The cheap stage's scores (two stages): only inputs it would accept at ``threshold``
        (default: any) can matter.
    threshold : float
        The loosest threshold you will consider.
    answered_by : array of int, shape (H, n), optional
        For a cascade: inputs that some candidate answers early with a stage that disagrees
        with the reference.

    Returns
    -------
    numpy.ndarray of bool, shape (n,)

    Examples
    --------
    >>> preds = np.array([["a", "b", "a", "b"], ["a", "a", "a", "b"]])
    >>> needs_label(preds).tolist()
    [False, True, False, False]
    """
    p = np.asarray(predictions)
    if p.ndim != 2 or p.shape[0] < 2:
        raise ValueError(f"predictions must have shape (stages >= 2, n), got {p.shape}")
    ref = p[-1]
    if answered_by is not None:
        a = np.asarray(answered_by)
        if a.ndim == 1:
            a = a[None, :]
        ans = p[a, np.arange(p.shape[1])]
        return ((a != p.shape[0] - 1) & (ans != ref)).any(axis=0)
    if p.shape[0] != 2:
        raise ValueError("more than two stages: give answered_by= to say which stage answers")
    keep = np.ones(p.shape[1], bool) if scores is None else np.asarray(scores, dtype=float) >= threshold
    return keep & (p[0] != ref)


def certify_from_disagreements(
    predictions: Any, labels: Any, *, scores: Any = None, answered_by: Any = None, candidates: Any = None,
    epsilon: float, kind: str = "difference", delta: float = 0.05, bound: str = "cp_losses",
    reference_lower: float | None = None,
) -> Certificate:
    """Certify a paired target from unlabelled inputs plus labels on the disagreements only.

    Parameters
    ----------
    predictions : array, shape (S, n)
        Every stage's predicted class for every input (the last row is the reference).
    labels : array, shape (n,)
        True classes where known; any value (e.g. ``None`` in an object array, or -1) elsewhere,
        as given by ``labelled``: the inputs :func:`needs_label` selects must all be labelled.
        Give a masked array (``numpy.ma``) to mark unknown labels.
    scores, answered_by, candidates, epsilon, kind, delta, bound
        As in :func:`certify_relative_accuracy`.
    reference_lower : float, optional
        Required for ``kind="ratio"``: a lower bound on the reference's accuracy established on
        other (labelled) data; agreements carry no information about it.

    Returns
    -------
    Certificate
        ``labels_used`` counts the labels the certificate depends on: the disagreements answered
        early up to the first candidate that failed. Labelling in candidate order (strict to
        loose) and stopping there gives the same certificate as labelling every disagreement.

    Examples
    --------
    >>> preds = np.array([[0, 1, 1, 0] * 500, [0, 1, 0, 0] * 500])   # disagree on 1 input in 4
    >>> y = np.ma.masked_all(2000, dtype=int)
    >>> ask = needs_label(preds, scores=np.tile([0.9, 0.8, 0.3, 0.7], 500))
    >>> y[ask] = 0                                   # the reference is right on all of them
    >>> c = certify_from_disagreements(preds, y, scores=np.tile([0.9, 0.8, 0.3, 0.7], 500),
    ...                                epsilon=0.01, kind="difference")
    >>> c.certified, c.coverage, c.labels_used
    (True, 0.75, 500)
    """
    p = np.asarray(predictions)
    if kind == "ratio" and reference_lower is None:
        raise ValueError("kind='ratio' from disagreement labels needs reference_lower= (a lower bound on the "
                         "reference's accuracy from labelled data); or certify kind='difference'")
    ask = needs_label(p, answered_by=answered_by)
    y = labels
    known = ~np.ma.getmaskarray(y) if isinstance(y, np.ma.MaskedArray) else np.ones(p.shape[1], bool)
    missing = ask & ~known
    if missing.any():
        raise ValueError(f"{int(missing.sum())} disagreement(s) have no label (first at index "
                         f"{int(np.flatnonzero(missing)[0])}); label every input needs_label() selects")
    yv = np.ma.getdata(y) if isinstance(y, np.ma.MaskedArray) else np.asarray(y)
    # Agreements: the value of correctness does not matter (equal for both), use "both right".
    correct = np.where(ask[None, :], p == yv[None, :], True)
    cert = certify_relative_accuracy(scores, correct, answered_by=answered_by, candidates=candidates,
                                     epsilon=epsilon, kind=kind, delta=delta, bound=bound,
                                     reference_lower=reference_lower)
    # Labels a labeller walking the candidates in order needs: the disagreements answered early
    # up to the first candidate that fails (the test never looks past it).
    if scores is not None:
        t, _, _ = threshold_path(scores)
        nxt = t[min(cert.index + 1, t.size - 1)]
        used = int((ask & (np.asarray(scores, dtype=float) >= nxt)).sum())
    else:
        a = np.asarray(answered_by)
        a = a[None, :] if a.ndim == 1 else a
        rows = a[: min(cert.index + 1, a.shape[0])]
        used = int((ask & ((rows != p.shape[0] - 1) & (p[rows, np.arange(p.shape[1])] != p[-1])).any(axis=0)).sum())
    return Certificate(**{**cert.__dict__, "labels_used": used,
                          "empirical": cert.empirical if kind == "difference" else float("nan"),
                          "bound": cert.bound if kind == "difference" else None})
