"""The paired certificate of relative accuracy: "system accuracy >= (1 - epsilon) x the
reference's" (``kind="ratio"``) or ">= the reference's - epsilon" (``kind="difference"``).

The bounds are those of :mod:`.paired` (``"cp_losses"``, ``"conditional"``) or a
test-by-betting on ``L_i - G_i - epsilon`` (``"betting"``, reading the rows in the seeded random
order of :func:`~confroute.selection.bounds.betting_order`), and candidates are combined by
fixed-sequence testing from strict to loose at the full level. This is what
``target_relative_accuracy`` and ``max_accuracy_drop`` mean everywhere in confroute.

Candidate order must not depend on labels: distinct calibration scores (two stages) or any
path of threshold tuples fixed from unlabelled data or from other data (cascades) qualify. The
guarantee assumes exchangeable calibration rows; the order they are passed in does not matter.

References
----------
Waudby-Smith & Ramdas (2024). Estimating means of bounded random variables by betting. JRSS-B 86(1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core import decision
from .accepted import grid_rows
from .bounds import LEVEL, betting_order, betting_seed, betting_test, fixed_sequence
from .certificate import PAIRED_BOUNDS, Certificate, assumption_text, check_bool, path_counts
from .paired import paired_counts, select_paired
from .planner import plan_labels

__all__ = ["certify_relative_accuracy"]


def certify_relative_accuracy(
    scores: Any = None, stage_correct: Any = None, *, answered_by: Any = None, candidates: Any = None,
    epsilon: float, kind: str = "ratio", delta: float = 0.05, bound: str = "cp_losses",
    reference_lower: float | None = None, grid: int = 64, random_state: int | None = 0,
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
    random_state : int or None, default 0
        ``bound="betting"``: the seed of the random order the test reads the rows in (``None``:
        a fresh seed), recorded on the certificate. The rows are never read in the order given,
        so the certificate does not depend on how they were sorted; the guarantee assumes
        exchangeable rows.

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
    c = _checked(scores, stage_correct, answered_by, epsilon, delta, bound)
    n = c.shape[1]
    ref = c[-1]
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (n,):
            raise ValueError(f"scores must have shape ({n},), got {s.shape}")
        if c.shape[0] != 2:
            raise ValueError("with scores, stage_correct must have two rows (cheap, reference); "
                             "use answered_by= for a longer cascade")
        thresholds, order, ends = decision.threshold_path(s)
        loss, gain = ~c[0] & ref, c[0] & ~ref
        L, G = path_counts(loss, order, ends), path_counts(gain, order, ends)
        coverage = ends / n
        labels_cum = path_counts(c[0] != ref, order, ends)
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
    seed = betting_seed(random_state) if bound == "betting" else None
    if seed is not None:
        keys = [s, *c] if scores is not None else [*a, *c]
        perm = betting_order(n, seed, keys)  # never the order given
        if scores is not None:
            row = _betting_row(c, None, epsilon, kind, delta, reference_lower, s, thresholds,
                               np.r_[0, grid_rows(ends, grid)], perm)
        else:
            row = _betting_row(c, a, epsilon, kind, delta, reference_lower, None, None, np.arange(L.size), perm)
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
        reason=reason, labels_needed=needed, random_state=seed, assumption=assumption_text(seed),
    )


def _checked(scores: Any, stage_correct: Any, answered_by: Any, epsilon: float, delta: float,
             bound: str) -> np.ndarray:
    """The arguments of :func:`certify_relative_accuracy` checked; ``stage_correct`` as booleans."""
    if (scores is None) == (answered_by is None):
        raise ValueError("give exactly one of scores (two stages) or answered_by (any cascade)")
    if stage_correct is None:
        raise ValueError("stage_correct (shape (stages, n)) is required")
    c = check_bool(stage_correct, "stage_correct")
    if c.ndim != 2 or c.shape[0] < 2:
        raise ValueError(f"stage_correct must have shape (stages >= 2, n), got {c.shape}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    LEVEL.check(delta, "delta")
    if bound not in PAIRED_BOUNDS:
        raise ValueError(f"bound must be one of {PAIRED_BOUNDS}, got {bound!r}")
    if c.shape[1] == 0:
        raise ValueError("certification needs at least one calibration input")
    return c


def _betting_row(c: np.ndarray, a: Any, epsilon: float, kind: str, delta: float, reference_lower: float | None,
                 s: np.ndarray | None, thresholds: np.ndarray | None, rows: np.ndarray, perm: np.ndarray) -> int:
    """The row a test-by-betting certifies, fixed-sequence over ``rows`` (0: none), reading the
    inputs in the order ``perm``."""
    if s is not None and thresholds is not None:
        if rows.size < 2:  # no candidate but "accept nothing": nothing to test
            return 0
        acc_mask = np.stack([decision.accepts(s, None, thresholds[r]) for r in rows[1:]])
    else:
        acc_mask = a != c.shape[0] - 1
    y = _paired_y(acc_mask, c, a, epsilon, kind, reference_lower)[..., perm]
    rej = betting_test(y, delta, upper=1.0, lower=-1.0 - epsilon)
    run = int(fixed_sequence(rej))
    return int(rows[run]) if run else 0


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
    # The certificate counts the reference's correct answers among all inputs: every input labelled.
    return reason, None if bound == "betting" else plan.n_labels_estimated

