"""Certificates of accuracy on accepted inputs: "the cheap stage is right on at least ``target``
of the inputs it accepts", with probability ``1 - delta``.

One Clopper–Pearson test per candidate threshold (Geifman & El-Yaniv 2017), combined across the
candidates of :func:`confroute.core.decision.threshold_path` (strict to loose) by one of:

``"fallback"`` (default)
    The fallback procedure (Wiens 2003): an early chain from the top at ``0.4 delta``, a main
    start at ``n / 10`` accepted inputs that adds ``0.5 delta``, and restarts at doubling counts
    after it sharing ``0.1 delta`` (:func:`fallback_weights`).
``"single"``
    One fixed-sequence chain at ``delta`` from the first candidate that can pass.
``"multistart"``
    ``J`` chains from doubling start points, each at ``delta / J``.
``"split"``
    Learn-then-Test (Angelopoulos et al. 2021): the order of the candidates is learned on a random
    part of the data and fixed-sequence is run on the rest.
``"betting"``
    Fixed-sequence over a quantile grid with a test-by-betting per candidate (Waudby-Smith &
    Ramdas 2024), reading the rows in a seeded random order (never in the order given: sorted
    by score, a betting test is not valid).

References
----------
Clopper & Pearson (1934). Biometrika 26(4).
Geifman & El-Yaniv (2017). Selective classification for deep neural networks. NeurIPS.
Wiens (2003). Pharmaceutical Statistics 2(3).
Angelopoulos, Bates, Candès, Jordan & Lei (2021). Learn then test. arXiv:2110.01052.
Waudby-Smith & Ramdas (2024). JRSS-B 86(1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core import decision
from .bounds import (
    LEVEL,
    betting_order,
    betting_seed,
    betting_test,
    binomial_pvalue,
    clopper_pearson,
    fallback_procedure,
    fixed_sequence,
)
from .certificate import (
    ACCEPTED_METHODS,
    assumption_text,
    EARLY_WEIGHT,
    MAIN_START,
    RESTART_WEIGHT,
    Certificate,
    check_bool,
    path_counts,
)
from .planner import pass_points

__all__ = [
    "certify_accepted_accuracy",
    "select_accepted",
    "select_accepted_split",
    "fallback_weights",
    "betting_min_count",
    "min_trials",
    "chain_count",
    "grid_rows",
]


def min_trials(target: float, level: float) -> int:
    """The fewest accepted inputs with which even zero errors pass the test at ``level``."""
    return max(1, math.ceil(math.log(level) / math.log(target)))


def chain_count(n: int, target: float, level: float, most: int = 8) -> int:
    """How many doubling start points fit in ``n`` inputs (each chain at level / J)."""
    chains = 1
    while chains < most and min_trials(target, level / (chains + 1)) * 2**chains <= n:
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
    m0 = min_trials(target, delta * early_weight)
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
        weights = (rows == _start_rows(m, min_trials(target, delta))[..., None]).astype(float)
        rej, lev = fallback_procedure(p, weights, delta)
    elif method == "fallback":
        weights = fallback_weights(m, n, target, delta, restart_weight)
        rej, lev = fallback_procedure(p, weights, delta)
    elif method == "multistart":
        chains = chain_count(n, target, delta)
        level = delta / chains
        first = min_trials(target, level)
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
        Quantile thresholds tested (``"betting"``).
    random_state : int or Generator, default 0
        The split (``"split"``), or the seed of the random order the betting test reads the rows
        in (``"betting"``: an int, or ``None`` for a fresh seed; recorded on the certificate as
        ``random_state``). Betting reads the rows in that order, never in the order given, so
        the certificate does not depend on how the rows were sorted (a score sort would void
        it); the guarantee assumes exchangeable rows.

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
    ok = check_bool(correct, "correct", s.shape[0] if s.ndim == 1 else None)
    if s.ndim != 1 or ok.shape != s.shape:
        raise ValueError(f"scores and correct must be 1-d of the same length, got {s.shape} and {ok.shape}")
    n = s.size
    if n == 0:
        raise ValueError("certification needs at least one calibration input")
    if not 0 < target < 1:
        raise ValueError(f"target must lie in (0, 1), got {target}")
    LEVEL.check(delta, "delta")
    if method not in ACCEPTED_METHODS:
        raise ValueError(f"method must be one of {ACCEPTED_METHODS}, got {method!r}")
    seed: int | None = None
    thresholds, order, ends = decision.threshold_path(s)
    m = ends.astype(np.float64)
    k = path_counts(~ok, order, ends).astype(np.float64)
    if method in ("fallback", "single", "multistart"):
        row_a, level_a = select_accepted(m, k, n, target, delta, method, restart_weight)
        row, level = int(row_a), float(level_a)
    elif method == "split":
        if not 0 < split < 1:
            raise ValueError(f"split must lie in (0, 1), got {split}")
        rng = np.random.default_rng(random_state)
        in_a = np.zeros(n, bool)
        # A random part of the rows in a canonical order: the split never depends on the order given.
        in_a[np.lexsort((ok, s))[rng.permutation(n)][: int(round(split * n))]] = True
        m_a, k_a = path_counts(in_a, order, ends), path_counts(in_a & ~ok, order, ends)
        m_b, k_b = m - m_a, k - k_a
        row_a, _ = select_accepted_split(m_a, k_a, m_b, k_b, target, delta)
        row, level = int(row_a), delta
        m, k = m_b, k_b  # the certificate rests on part B
    else:
        alpha = 1.0 - target
        seed = betting_seed(random_state)
        rows = grid_rows(ends, grid)
        rows = rows[ends[rows] >= betting_min_count(alpha, delta)]  # stricter rows cannot pass
        err = (~ok).astype(float) - alpha
        y = np.zeros((rows.size, n))
        for i, r in enumerate(rows):
            y[i] = np.where(decision.accepts(s, None, thresholds[r]), err, 0.0)
        y = y[:, betting_order(n, seed, [s, ok])]  # never the order given
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
        random_state=seed if method == "betting" else None,
        assumption=assumption_text(seed if method == "betting" else None),
    )


def betting_min_count(alpha: float, delta: float, max_fraction: float = 0.5) -> int:
    """Fewest accepted inputs with which :func:`~confroute.selection.bounds.betting_test` can
    certify an error rate below ``alpha`` even with no error (a label-free grid cut-off)."""
    return math.ceil(math.log(1 / delta) / math.log1p(max_fraction * alpha / (1 - alpha)))


def grid_rows(ends: np.ndarray, grid: int) -> np.ndarray:
    """Rows nearest to ``grid`` evenly spaced coverages (label-free), strict to loose."""
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    n = ends[-1]
    want = np.linspace(n / grid, n, grid)
    rows = np.unique(np.clip(np.searchsorted(ends, want, side="left"), 1, ends.size - 1))
    return rows


def _accepted_reason(m: np.ndarray, k: np.ndarray, n: int, target: float, delta: float) -> tuple[str, int | None]:
    m0 = min_trials(target, delta)
    if m[-1] < m0:
        return (f"too few accepted inputs: even with no error, {m0} accepted inputs are needed at "
                f"target {target:g} and delta {delta:g}, and there are {int(m[-1])} in all", None)
    r = int(np.searchsorted(m, m0, side="left"))
    rate = k[r] / m[r]
    if rate >= 1 - target:
        return (f"too many errors among the most confident inputs: {int(k[r])} in the top {int(m[r])} "
                f"(error rate {rate:.3g} > {1 - target:g})", None)
    share = m[r] / n

    def passes(size: np.ndarray) -> np.ndarray:
        mm = np.maximum(1, np.round(share * size))
        return np.asarray(binomial_pvalue(np.round(rate * mm), mm, 1 - target) <= delta)

    need = pass_points(passes, start=n)[1]  # from here on every size passes (exact scan)
    return (f"too many errors among the most confident inputs: {int(k[r])} in the top {int(m[r])} "
            f"fail the test at delta {delta:g}", need)

