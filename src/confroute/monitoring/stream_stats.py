"""The per-input statistic of a stream certificate and its betting capital (see :mod:`.sequential`).

The inverse-probability-weighted ``y`` of each objective at each candidate threshold, with pending
labels and failed calls at their worst case (certificate) or best case (alarm), and the mixture
capital over fixed bets, computed over runs of identical rows.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..core import decision
from .records import StreamRecords

__all__ = ["stream_statistic", "stream_columns", "event_rows", "mixture_log_capital", "min_probability_of",
           "objective_of", "agreement_best", "BET_FRACTIONS", "OBJECTIVES", "AGREEMENT_CHECK_EVERY",
           "restart_mixture", "RESTART_EVERY"]

#: The mixture's bets, as fractions of the largest safe bet ``1 / u``.
BET_FRACTIONS = 0.5 ** np.arange(1, 11, dtype=np.float64)

#: Objective name -> (keyword, wording).
OBJECTIVES = {
    "relative_accuracy": ("target_relative_accuracy", "accuracy relative to the fallback"),
    "accuracy_drop": ("max_accuracy_drop", "accuracy drop from the fallback"),
    "accuracy": ("target_accuracy", "system accuracy"),
    "agreement": ("target_agreement", "agreement with the fallback"),
}


def objective_of(target_relative_accuracy: float | None, max_accuracy_drop: float | None,
               target_accuracy: float | None, target_agreement: float | None) -> tuple[str, float]:
    given = [(name, v) for name, v in (("relative_accuracy", target_relative_accuracy),
                                        ("accuracy_drop", max_accuracy_drop), ("accuracy", target_accuracy),
                                        ("agreement", target_agreement)) if v is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of target_relative_accuracy, max_accuracy_drop, target_accuracy, "
                         "target_agreement")
    name, v = given[0]
    v = float(v)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{OBJECTIVES[name][0]} must be in (0, 1), got {v}")
    return name, v


def min_probability_of(records: StreamRecords, floor: float, objective: str) -> float:
    """The design's floor of the sampling probabilities that bound the IPW terms, read from the
    records (they are design constants): ``p_fallback * p_label`` on disagreements in the ladder's
    range and ``p_fallback`` (relative, drop); ``p_fallback`` (agreement); ``p_fallback *
    p_label`` on any label (accuracy)."""
    r = records
    if len(r) == 0:
        return 1.0
    pf = float(r.p_fallback.min())
    if objective == "agreement":
        return pf
    obs = r.audited & (r.fallback >= 0)
    pp = r.p_fallback * r.p_label
    if objective == "accuracy":
        sel = obs & (r.p_label > 0)
    else:
        sel = obs & (r.fallback != r.primary) & decision.accepts(r.score, None, floor) & (r.p_label > 0)
    return min(pf, float(pp[sel].min())) if sel.any() else pf


def stream_statistic(records: StreamRecords, thresholds: Any, objective: str, target: float, *,
                     reference: float | None = None, min_probability: float, side: str = "certify",
                     rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-input ``y`` at each threshold for the selected ``rows`` (shape ``(H, m)``), the value of
    every other row (shape ``(H,)``; see :func:`event_rows`), and the bound ``u`` on the side the
    bets risk.

    ``side="certify"``: the mean of ``y`` is ``<= 0`` iff the target holds; unknowns (pending
    labels, failed calls) take their largest value; ``y <= u``. ``side="alarm"``: the mean is
    ``<= 0`` when the target holds (``reference`` is then an UPPER bound on the fallback's accuracy,
    default 1); unknowns take their smallest value; ``y >= -u``.
    """
    r = records
    idx = np.arange(len(r)) if rows is None else rows
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    s, pf, pl = r.score[idx], r.p_fallback[idx], r.p_label[idx]
    obs = r.audited[idx] & (r.fallback[idx] >= 0)
    failed = r.audited[idx] & (r.fallback[idx] < 0)
    agree = obs & (r.fallback[idx] == r.primary[idx])
    lab = r.label[idx]
    got = lab >= 0
    pend = r.label_requested[idx] & ~got
    wl = 1.0 / (pf * np.where(pl > 0, pl, 1.0))
    w = np.where(got, wl, 0.0)
    wp = np.where(pend & ~agree, wl, 0.0)
    c = got & (lab == r.primary[idx])
    f = got & (lab == r.fallback[idx])
    A = decision.accepts_broadcast(s[None, :], t[:, None])
    worst = side == "certify"
    big = 1.0 / min_probability
    ones = np.ones(t.size)
    if objective in ("relative_accuracy", "accuracy_drop"):
        eps = 1.0 - target if objective == "relative_accuracy" else target
        loss = w * (f.astype(float) - c)
        if objective == "accuracy_drop" or reference is not None or not worst:
            base = eps * (1.0 if reference is None else reference)
            y = A * (loss + (wp if worst else -wp)) - base
            y = np.where(failed, A * (big if worst else -big) - base, y)
            return y, -base * ones, (big if worst else big + base)
        y = A * (loss + wp * (1 - eps)) - eps * w * f  # a pending disagreement: its worst case
        y = np.where(failed, A * big, y)
        return y, 0.0 * ones, big
    a = target
    if objective == "accuracy":
        # Centred Horvitz-Thompson: W (a - right) on labelled rows, 0 elsewhere (a far smaller
        # variance than a - W right when labels are rare).
        sys_ok = A * c + (~A) * f
        if worst:
            y = w * (a - sys_ok) + np.where(pend, wl * a, 0.0) + np.where(failed, big * a, 0.0)
            return y, 0.0 * ones, a * big
        y = w * (a - sys_ok) + np.where(pend, wl * (a - 1.0), 0.0) + np.where(failed, big * (a - 1.0), 0.0)
        return y, 0.0 * ones, (1.0 - a) * big
    # Agreement: the rare event is the disagreement, so it carries the weight: y = a - 1 + A d / p.
    dis = np.where(failed, 1.0 if worst else 0.0, obs & ~agree) / pf
    y = a - 1.0 + A * dis
    return y, np.full(t.size, np.nan), (a - 1.0 + big if worst else 1.0 - a)


def event_rows(records: StreamRecords, objective: str) -> np.ndarray:
    """The rows whose ``y`` can differ from the common value of the others: labelled, pending and
    failed rows (every row for the agreement objective)."""
    if objective == "agreement":
        return np.arange(len(records))
    r = records
    return np.flatnonzero(r.label_requested | (r.audited & (r.fallback < 0)))


def stream_columns(records: StreamRecords, thresholds: Any, objective: str, target: float,
                   reference: float | None, min_probability: float,
                   side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The stream as columns for :func:`mixture_log_capital`: runs of identical rows become one
    column with a count (the capital is monotone along a run, so its running maximum over every
    input is its maximum over column ends). Also the row count at each column's end."""
    n = len(records)
    ev = event_rows(records, objective)
    y_ev, v0, u = stream_statistic(records, thresholds, objective, target, reference=reference,
                                   min_probability=min_probability, side=side, rows=ev)
    if ev.size == n:
        return y_ev, np.ones(n), np.arange(1, n + 1), u
    H, m = y_ev.shape[0], ev.size
    gaps = np.diff(np.r_[-1, ev, n]) - 1            # non-event rows before each event, and after the last
    y = np.empty((H, 2 * m + 1))
    y[:, 0::2] = v0[:, None]
    y[:, 1::2] = y_ev
    counts = np.empty(2 * m + 1)
    counts[0::2] = gaps
    counts[1::2] = 1.0
    return y, counts, np.cumsum(counts).astype(np.int64), u


def mixture_log_capital(y: np.ndarray, u: float, sign: float = -1.0, counts: np.ndarray | None = None,
                        level: float | None = None,
                        chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log of the mixture capital ``mean_k prod_i (1 + sign c_k y_i / u)^counts_i`` along the last
    axis, over the fixed bet fractions ``c_k`` (:data:`BET_FRACTIONS`).

    Returns the final log capital, its running maximum over every prefix (including the empty
    one, 0) and the first column at which it reaches ``level`` (``-1``: never), each of shape
    ``y.shape[:-1]``.

    Examples
    --------
    >>> y = np.r_[np.full(400, -0.05), 0.5]          # a mean well below 0, then one loss
    >>> final, best, first = mixture_log_capital(y[None], u=1.0, level=np.log(20))
    >>> bool(best[0] >= np.log(20)), int(first[0]) > 0, bool(final[0] < best[0])
    (True, True, True)
    """
    y = np.asarray(y, dtype=np.float64)
    lead = y.shape[:-1]
    n = y.shape[-1]
    cnt = np.ones(n) if counts is None else np.asarray(counts, dtype=np.float64)
    K = BET_FRACTIONS.size
    logk = np.zeros((K,) + lead)
    best = np.zeros(lead)
    first = np.full(lead, -1, dtype=np.int64)
    lam = (sign * BET_FRACTIONS / u).reshape((K,) + (1,) * (len(lead) + 1))
    for a in range(0, n, chunk):
        seg = y[..., a:a + chunk][None]
        terms = cnt[a:a + chunk] * np.log1p(np.maximum(lam * seg, -1.0 + 1e-15))
        path = logk[..., None] + np.cumsum(terms, axis=-1)
        mix = _logmeanexp(path, axis=0)
        best = np.maximum(best, mix.max(axis=-1))
        if level is not None:
            hit = mix >= level
            new = (first < 0) & hit.any(axis=-1)
            first = np.where(new, a + np.argmax(hit, axis=-1), first)
        logk = path[..., -1]
    return _logmeanexp(logk, axis=0), best, first


def _logmeanexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    return np.asarray(np.squeeze(m, axis) + np.log(np.mean(np.exp(x - m), axis=axis)))




#: The agreement certificate examines its capital every this many inputs (and at the end).
AGREEMENT_CHECK_EVERY = 100


def agreement_best(records: StreamRecords, ladder: Any, target: float, min_probability: float,
                   block: int = AGREEMENT_CHECK_EVERY) -> np.ndarray:
    """Running maximum of the certificate's log mixture capital for the agreement objective at
    every rung, examined at every ``block``-th input and at the last one (a fixed schedule: a
    subset of times, so Ville's bound covers it).

    Every row is an event for this objective (an accepted input that was not audited counts
    against the target), so the capital is computed from counts: at rung ``h`` a row contributes
    ``log(1 - lambda_k (a - 1))`` when the rung defers it and ``log(1 - lambda_k (a - 1 + d))``
    when it accepts it, ``d`` being ``[disagree] / p_fallback`` (``1 / p_fallback`` for a failed
    call, 0 when not audited), ``lambda_k = c_k / (a - 1 + 1 / min_probability)``.
    """
    r = records
    n = len(r)
    t = np.asarray(ladder, dtype=np.float64)
    H = t.size
    if n == 0:
        return np.zeros(H)
    obs = r.audited & (r.fallback >= 0)
    failed = r.audited & (r.fallback < 0)
    dis = np.where(failed | (obs & (r.fallback != r.primary)), 1.0 / r.p_fallback, 0.0)
    vals, cls = np.unique(dis, return_inverse=True)
    U = vals.size
    side: Literal["left", "right"] = "right" if decision.ties_accepted() else "left"   # a score on a rung: as the rule says
    first = H - np.searchsorted(t[::-1], r.score, side=side)   # first rung that accepts the row
    nb = -(-n // block)
    blk = np.arange(n) // block
    cnt = np.bincount((blk * U + cls) * (H + 1) + first, minlength=nb * U * (H + 1)).reshape(nb, U, H + 1)
    acc = np.cumsum(np.cumsum(cnt, axis=2)[:, :, :H], axis=0).astype(np.float64)   # (nb, U, H)
    rows = np.minimum(np.arange(1, nb + 1) * block, n).astype(np.float64)
    deferred = rows[:, None] - acc.sum(axis=1)                                      # (nb, H)
    a = target
    lam = BET_FRACTIONS / (a - 1.0 + 1.0 / min_probability)
    t0 = np.log1p(-lam * (a - 1.0))                                                  # (K,)
    t1 = np.log1p(np.maximum(-lam[:, None] * (a - 1.0 + vals[None, :]), -1 + 1e-15))  # (K, U)
    cap = deferred[None] * t0[:, None, None] + np.einsum("buh,ku->kbh", acc, t1)    # (K, nb, H)
    m = cap.max(axis=0)
    mix = m + np.log(np.mean(np.exp(cap - m), axis=0))
    return np.maximum(mix.max(axis=0), 0.0)


#: Inputs between two restarts of the alarm's betting capital.
RESTART_EVERY = 5000


def restart_mixture(y: np.ndarray, u: float, counts: np.ndarray, ends: np.ndarray, every: int,
                    level: float) -> tuple[float, float, int]:
    """The alarm's e-process over columns ``y`` (shape ``(m,)``, ``counts`` rows each, ending at
    row ``ends``): the average, with weights ``1 / ((j + 1)(j + 2))``, of mixture capitals
    ``mean_k prod (1 + c_k y_i / u)`` started at the first column after row ``j * every``.

    Returns the final log e-value, its running maximum and the first column at which it reached
    ``level`` (``-1``: never).
    """
    m = y.shape[0]
    if m == 0:
        return 0.0, 0.0, -1
    lam = BET_FRACTIONS[:, None] / u
    terms = counts[None, :] * np.log1p(np.maximum(lam * y[None, :], -1.0 + 1e-15))   # (K, m)
    C = np.concatenate([np.zeros((lam.shape[0], 1)), np.cumsum(terms, axis=1)], axis=1)  # (K, m + 1)
    J = int((ends[-1] - 1) // every) + 1 if ends[-1] > 0 else 1
    starts = np.searchsorted(ends, np.arange(J) * every, side="right")   # the j-th capital's first column
    w = 1.0 / ((np.arange(J) + 1.0) * (np.arange(J) + 2.0))
    total = np.full(m, 1.0 - w.sum())                    # the weight of capitals not started yet
    cols = np.arange(m)
    for j in range(J):
        c0 = starts[j]
        if c0 >= m:
            total += w[j]
            continue
        seg = C[:, c0 + 1:] - C[:, c0:c0 + 1]             # log capital after columns c0..m-1
        val = np.mean(np.exp(np.minimum(seg, 700.0)), axis=0)
        total[c0:] += w[j] * val
        total[:c0] += w[j]
    logt = np.log(total)
    hit = np.flatnonzero(logt >= level)
    del cols
    return float(logt[-1]), float(max(0.0, logt.max())), int(hit[0]) if hit.size else -1
