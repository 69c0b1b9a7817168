"""Sound one-sided bounds and multiple-testing procedures, as plain array functions.

Everything here works on counts or per-input arrays and knows nothing about predictors, routers
or result types, so that threshold selection (and its simulations) can call it directly. Every
function takes leading batch dimensions where it says so: a simulation can test a thousand
calibration draws in one call.

Bounds
------
:func:`clopper_pearson`
    Exact one-sided binomial bound (Clopper & Pearson 1934).
:func:`binomial_pvalue`
    The exact p-value of "the rate is at least ``p0``" given ``k`` events in ``m`` trials; the test
    behind the Clopper–Pearson bound (``clopper_pearson(k, m, d) <= p0`` iff the p-value is ``<= d``).
:func:`betting_test`
    A test-by-betting for the sign of a bounded mean (Waudby-Smith & Ramdas 2024): a nonnegative
    supermartingale under the null, rejected by Ville's inequality when the capital reaches
    ``1 / delta`` at any time. Given inputs in a random order (exchangeable data read in the
    order of :func:`betting_order`), it is valid at any stopping time, needs no distributional
    form, and adapts to small variance; read in an order that depends on the data (sorted by
    score, grouped by class) it is not valid at all.
:func:`betting_order`
    The seeded random permutation every betting certificate reads its inputs in, so that the
    result does not depend on the order the caller passes the rows in.

Multiple testing over an ordered family
---------------------------------------
:func:`fixed_sequence`
    Test hypotheses in a fixed order, each at the full level, and stop at the first that is not
    rejected (Westfall & Krishen 2001; the ordering used by Learn-then-Test, Angelopoulos et al.
    2021). The family-wise error rate is at most ``delta`` for any dependence between the tests.
:func:`fallback_procedure`
    Weighted fixed-sequence that can restart (Wiens 2003; Wiens & Dmitrienko 2005): hypothesis
    ``h`` is tested at ``delta * w[h]`` plus the level of ``h - 1`` when ``h - 1`` was rejected. With
    all the weight on the first hypothesis it is :func:`fixed_sequence`; a little weight on later
    restart points lets one early failure cost only that weight instead of everything. It is a
    closed weighted-Bonferroni procedure, so the family-wise error rate is at most ``delta`` for
    any dependence.

References
----------
Clopper & Pearson (1934). The use of confidence or fiducial limits illustrated in the case of the
binomial. Biometrika 26(4).
Westfall & Krishen (2001). Optimally weighted, fixed sequence and gatekeeper multiple testing
procedures. Journal of Statistical Planning and Inference 99(1).
Wiens (2003). A fixed sequence Bonferroni procedure for testing multiple endpoints.
Pharmaceutical Statistics 2(3).
Wiens & Dmitrienko (2005). The fallback procedure for evaluating a single family of hypotheses.
Journal of Biopharmaceutical Statistics 15(6).
Angelopoulos, Bates, Candès, Jordan & Lei (2021). Learn then test: calibrating predictive
algorithms to achieve risk control. arXiv:2110.01052.
Waudby-Smith & Ramdas (2024). Estimating means of bounded random variables by betting. Journal of
the Royal Statistical Society Series B 86(1).
Ville (1939). Étude critique de la notion de collectif. Gauthier-Villars.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import beta, binom

from ..core._params import Interval

__all__ = [
    "clopper_pearson",
    "binomial_pvalue",
    "betting_test",
    "betting_order",
    "betting_seed",
    "BETTING_SEED",
    "fixed_sequence",
    "fallback_procedure",
    "LEVEL",
]


#: The level of a test or bound: strictly inside (0, 1) (``None`` is not a level).
LEVEL = Interval(0.0, 1.0, "neither")


#: The default seed of :func:`betting_order` (fixed, so a certificate is reproducible).
BETTING_SEED = 0


def betting_seed(random_state: Any = BETTING_SEED) -> int:
    """The seed a betting certificate records: ``random_state`` itself (an int >= 0), or a fresh
    one drawn from the operating system when it is ``None``.

    Examples
    --------
    >>> betting_seed(7), isinstance(betting_seed(None), int)
    (7, True)
    """
    if random_state is None:
        return int(np.random.SeedSequence().entropy)  # type: ignore[arg-type]
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(random_state, (int, np.integer)) \
            or random_state < 0:
        raise ValueError(f"random_state must be an int >= 0 or None (a fresh seed), got {random_state!r}")
    return int(random_state)


def betting_order(n: int, random_state: Any = BETTING_SEED, keys: Any = None) -> np.ndarray:
    """The order (a permutation of ``range(n)``) a betting test reads ``n`` calibration rows in.

    A test-by-betting is a sequential test: its capital is a supermartingale only if each input
    is, given the ones before it, a fresh draw. Rows passed sorted by score, grouped by class or
    sorted by label break that (the error rate under a score sort reached 100%, issue 27). So
    every betting certificate reads its rows in this order: first a canonical order that depends
    only on the rows' values (``keys``, sorted with :func:`numpy.lexsort`; rows with equal keys
    are interchangeable), then a random permutation seeded by ``random_state``. The result is a
    function of the set of rows only, never of the order the caller passes them in; for
    exchangeable (e.g. i.i.d.) rows the random permutation makes the sequence exchangeable
    again, which is what the test needs (exactly so averaged over seeds; for the default fixed
    seed the validity suite checks it in five row orders). ``random_state`` is recorded on the
    certificate so it can be reproduced.

    Parameters
    ----------
    n : int
    random_state : int or None, default 0
        ``None``: a fresh seed (see :func:`betting_seed`).
    keys : sequence of arrays of shape (n,), optional
        Every per-row value the test reads (scores, correctness, ...); without them the rows
        are only permuted (the result then depends on the order given).

    Examples
    --------
    >>> s = np.array([0.9, 0.1, 0.5, 0.7])
    >>> a, b = betting_order(4, 0, [s]), betting_order(4, 0, [s[::-1]])
    >>> s[a].tolist() == s[::-1][b].tolist()       # the same sequence whatever the given order
    True
    """
    perm = np.random.default_rng(betting_seed(random_state)).permutation(int(n))
    if keys is None:
        return perm
    canonical = np.lexsort([np.asarray(k).reshape(int(n)) for k in keys][::-1])
    return canonical[perm]


def _check_delta(delta: float) -> None:
    LEVEL.check(delta, "delta")


def clopper_pearson(k: Any, m: Any, delta: float, side: str = "upper") -> np.ndarray:
    """One-sided exact (Clopper–Pearson) confidence bound on a binomial proportion.

    Parameters
    ----------
    k, m : int or array
        Successes and trials (``0 <= k <= m``); broadcast together.
    delta : float
        The bound holds with probability at least ``1 - delta``.
    side : {"upper", "lower"}

    Returns
    -------
    numpy.ndarray
        The bound (1 for an upper bound with ``k == m``, 0 for a lower bound with ``k == 0``).

    References
    ----------
    Clopper & Pearson (1934), Biometrika 26(4).

    Examples
    --------
    >>> round(float(clopper_pearson(0, 59, 0.05)), 4)  # zero errors in 59 trials
    0.0495
    >>> round(float(clopper_pearson(10, 10, 0.05, side="lower")), 4)
    0.7411
    """
    k = np.asarray(k, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    _check_delta(delta)
    with np.errstate(invalid="ignore"):
        if side == "upper":
            out = np.where(k >= m, 1.0, beta.ppf(1 - delta, k + 1, np.maximum(m - k, 1e-300)))
        elif side == "lower":
            out = np.where(k <= 0, 0.0, beta.ppf(delta, np.maximum(k, 1e-300), m - k + 1))
        else:
            raise ValueError(f"side must be 'upper' or 'lower', got {side!r}")
    return out


def binomial_pvalue(k: Any, m: Any, p0: Any) -> np.ndarray:
    """Exact p-value of the null "the event rate is at least ``p0``" after ``k`` events in ``m``.

    It is ``P(Binomial(m, p0) <= k)``; rejecting when it is at most ``delta`` is the same as
    ``clopper_pearson(k, m, delta) <= p0``. With ``m == 0`` the p-value is 1.

    Examples
    --------
    >>> float(binomial_pvalue(0, 29, 0.1)) <= 0.05 < float(binomial_pvalue(0, 28, 0.1))
    True
    """
    k = np.asarray(k, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    return np.where(m > 0, binom.cdf(k, m, p0), 1.0)


def fixed_sequence(reject: Any) -> np.ndarray:
    """How many hypotheses a fixed-sequence test rejects, given each test's own verdict.

    Parameters
    ----------
    reject : array of bool, shape (..., H)
        Whether each hypothesis, in the fixed order, is rejected by its own level-``delta`` test.

    Returns
    -------
    numpy.ndarray of int, shape (...)
        The length of the leading run of rejections: hypotheses ``0 .. r - 1`` are rejected.

    Examples
    --------
    >>> int(fixed_sequence([True, True, False, True]))
    2
    """
    r = np.asarray(reject, dtype=bool)
    if r.shape[-1] == 0:
        return np.zeros(r.shape[:-1], dtype=np.int64)
    full = r.all(axis=-1)
    first_fail = np.argmin(r, axis=-1)
    return np.where(full, r.shape[-1], first_fail).astype(np.int64)


def fallback_procedure(pvalues: Any, weights: Any, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """The fallback procedure: a fixed sequence that carries its level forward and can restart.

    Hypothesis ``h`` is tested at ``a[h] = delta * w[h] + (a[h-1] if h-1 was rejected else 0)``
    (Wiens 2003). The family-wise error rate is at most ``delta`` whatever the dependence between
    the p-values, when each p-value is valid (``P(p <= u) <= u`` under its null).

    Parameters
    ----------
    pvalues : array, shape (..., H)
        One p-value per hypothesis, in the fixed order.
    weights : array, shape (H,) or (..., H)
        Nonnegative, summing to at most 1 along the last axis, fixed before the p-values are
        seen (they may depend on unlabelled data such as accepted counts).
    delta : float

    Returns
    -------
    rejected : array of bool, shape (..., H)
    level : array of float, shape (..., H)
        The level each hypothesis was tested at.

    Examples
    --------
    >>> p = np.array([0.01, 0.5, 0.001, 0.005])   # the chain fails at 1 and restarts at 2
    >>> rej, lev = fallback_procedure(p, [0.8, 0.0, 0.2, 0.0], 0.05)
    >>> rej.tolist(), [round(x, 3) for x in lev.tolist()]
    ([True, False, True, True], [0.04, 0.04, 0.01, 0.01])
    """
    _check_delta(delta)
    p = np.asarray(pvalues, dtype=np.float64)
    w = np.broadcast_to(np.asarray(weights, dtype=np.float64), p.shape)
    if (w < 0).any() or (w.sum(axis=-1) > 1 + 1e-9).any():
        raise ValueError("fallback weights must be >= 0 and sum to at most 1")
    alloc = delta * w
    rejected = np.zeros(p.shape, dtype=bool)
    level = np.zeros(p.shape, dtype=np.float64)
    carry = np.zeros(p.shape[:-1], dtype=np.float64)
    # Only positions with weight can (re)start a chain: walk from one such position to the
    # next, vectorised inside each stretch (batch elements may have different start points).
    starts = np.flatnonzero((w > 0).reshape(-1, p.shape[-1]).any(axis=0)).tolist()
    if not starts:
        return rejected, level
    edges = [*starts, p.shape[-1]]
    for a, b in zip(edges[:-1], edges[1:]):
        lev = carry + alloc[..., a]
        run = fixed_sequence((p[..., a:b] <= lev[..., None]) & (lev[..., None] > 0))
        idx = np.arange(b - a)
        rejected[..., a:b] = idx < run[..., None]
        # Tested at `lev` up to and including the first failure; not tested (level 0) after it.
        level[..., a:b] = np.where(idx <= run[..., None], lev[..., None], 0.0)
        carry = np.where(run == b - a, lev, 0.0)
    return rejected, level


def betting_test(y: Any, delta: float, upper: float, lower: float, max_fraction: float = 0.5) -> np.ndarray:
    """Test-by-betting of "the mean of ``y`` is above 0", along the given input order.

    The capital ``K_t = prod_{i <= t} (1 - lambda_i y_i)`` is a nonnegative supermartingale when
    ``E[y] >= 0`` and each ``lambda_i`` is chosen from the inputs before ``i`` only; by Ville's
    inequality it ever reaches ``1 / delta`` with probability at most ``delta``. The bets follow
    the approximate-Kelly plug-in of Waudby-Smith & Ramdas (2024, sec. 5): ``lambda_i`` is the
    running mean over the running variance (both with a prior of one pseudo-observation),
    clipped to ``[0, max_fraction / upper]`` so every factor stays positive.

    The inputs must be in an order that does not depend on their values: a random permutation
    (:func:`betting_order`, which every certificate in this package applies first) or, for a
    stream, their arrival order when the stream is exchangeable; never sorted by score, class
    or label. "Valid at any stopping time" holds under that condition only.

    Parameters
    ----------
    y : array, shape (..., n)
        Per-input values in ``[lower, upper]`` (``lower < 0 < upper``); leading dims are
        independent tests.
    delta : float
    upper, lower : float
        The range of ``y``.
    max_fraction : float, default 0.5
        Largest share of the capital bet on one input (in units of the worst loss).

    Returns
    -------
    numpy.ndarray of bool, shape (...)
        True where the null ``E[y] > 0`` is rejected, i.e. the mean is certified ``<= 0``.

    References
    ----------
    Waudby-Smith & Ramdas (2024), JRSS-B 86(1); Ville (1939).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random(2000) < 0.05).astype(float) - 0.1   # error rate 5% against a 10% target
    >>> bool(betting_test(y, 0.05, upper=0.9, lower=-0.1))
    True
    >>> bool(betting_test(y + 0.1, 0.05, upper=1.0, lower=0.0 - 1e-9))  # mean 0.05 > 0: no
    False
    """
    _check_delta(delta)
    if not lower < 0 < upper:
        raise ValueError(f"need lower < 0 < upper, got [{lower}, {upper}]")
    y = np.asarray(y, dtype=np.float64)
    if y.size and (y.max() > upper + 1e-12 or y.min() < lower - 1e-12):
        raise ValueError(f"values outside [{lower}, {upper}]")
    n = y.shape[-1]
    if n == 0:
        return np.zeros(y.shape[:-1], dtype=bool)
    # Predictable running mean and variance, each with one pseudo-observation as a prior
    # (mean 0, variance (upper - lower)^2 / 4): input i only sees inputs before it.
    csum = np.cumsum(y, axis=-1)
    csq = np.cumsum(y * y, axis=-1)
    t = np.arange(1, n + 1, dtype=np.float64)
    prev_sum = np.concatenate([np.zeros(y.shape[:-1] + (1,)), csum[..., :-1]], axis=-1)
    prev_sq = np.concatenate([np.zeros(y.shape[:-1] + (1,)), csq[..., :-1]], axis=-1)
    mean = prev_sum / t
    var = np.maximum(prev_sq / t - mean**2, 0.0) + (upper - lower) ** 2 / (4.0 * t)
    lam = np.clip(-mean / var, 0.0, max_fraction / upper)
    log_k = np.cumsum(np.log1p(-lam * y), axis=-1)
    return np.max(log_k, axis=-1) >= np.log(1.0 / delta)
