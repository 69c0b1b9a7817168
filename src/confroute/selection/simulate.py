"""Populations with exact truth, for checking certificates by simulation.

A :class:`Population` has ``K`` score levels (ties included), each with a probability mass and
the probabilities of the four joint outcomes of a cheap stage and a reference stage (both right,
gain = cheap right / reference wrong, loss = cheap wrong / reference right, both wrong). Every
population figure at every threshold is then an exact finite sum, so a certificate's violation
("the population figure at the chosen threshold misses the target") is decided without Monte
Carlo error.

:meth:`Population.draw_counts` draws many calibration sets at once as multinomial counts per
(level, outcome): the count-based certification cores in :mod:`confroute.selection.accepted` and
:mod:`confroute.selection.paired` take
their cumulative sums directly, so a thousand draws cost one vectorised call.
:meth:`Population.draw_inputs` draws per-input sequences (for order-dependent tests such as
betting).

Public (not test support) for one reason: ``benchmarks/bench_certify.py`` and
``tests/test_validity.py`` both use it, and so can anyone checking a certificate on a population
of their own.

Examples
--------
>>> pop = Population.linear()
>>> round(pop.oracle_accepted(0.9), 3)      # P(correct | s) = 0.5 + 0.5 s: coverage 0.4
0.4
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .bounds import BETTING_SEED, betting_order, betting_test, clopper_pearson, fixed_sequence
from .accepted import betting_min_count, select_accepted, select_accepted_split
from .paired import select_paired

__all__ = ["Population", "CELLS", "ORDERS", "reorder", "library_order", "accepted_rows", "paired_rows",
           "summarize_accepted", "summarize_paired"]

#: Quantile grid of candidate thresholds for the betting tests.
GRID = 32

#: Outcome order of the last axis: both right, gain, loss, both wrong.
CELLS = ("both_right", "gain", "loss", "both_wrong")

#: The row orders a calibration set is passed in by the validity suite (issue 27): as drawn,
#: sorted by score (both ways), grouped by predicted class, sorted by true label.
ORDERS = ("as_drawn", "score_ascending", "score_descending", "by_class", "by_label")

#: Seed of the binary labels :func:`reorder` gives the inputs (the same for every order).
LABEL_SEED = 2027


def _joint(a: np.ndarray, r: np.ndarray, corr: float) -> np.ndarray:
    """Joint outcome probabilities from marginal accuracies and a dependence in [0, 1]."""
    p11 = a * r + corr * np.minimum(a * (1 - r), r * (1 - a))
    return np.stack([p11, a - p11, r - p11, 1 - a - r + p11], axis=-1)


@dataclass(frozen=True)
class Population:
    """Score levels (descending), their masses and the joint outcome probabilities per level."""

    name: str
    scores: np.ndarray  # (K,), strictly descending
    mass: np.ndarray  # (K,), sums to 1
    cells: np.ndarray  # (K, 4), rows sum to 1, order CELLS

    # ----------------------------------------------------------------- constructors
    @classmethod
    def from_accuracy(cls, name: str, scores: Any, mass: Any, cheap_acc: Any, ref_acc: Any = 0.9,
                      corr: float = 0.9) -> Population:
        s = np.asarray(scores, dtype=float)
        w = np.asarray(mass, dtype=float)
        a = np.broadcast_to(np.asarray(cheap_acc, dtype=float), s.shape)
        r = np.broadcast_to(np.asarray(ref_acc, dtype=float), s.shape)
        order = np.argsort(-s, kind="stable")
        return cls(name, s[order], w[order] / w.sum(), _joint(a, r, corr)[order])

    @classmethod
    def linear(cls, levels: int = 1000, ref_acc: float = 0.9, corr: float = 0.9) -> Population:
        """s uniform on (0, 1), P(cheap right | s) = 0.5 + 0.5 s (the issue's population)."""
        s = (np.arange(levels) + 0.5) / levels
        return cls.from_accuracy("linear", s, np.ones(levels), 0.5 + 0.5 * s, ref_acc, corr)

    @classmethod
    def ties(cls, levels: int = 8, ref_acc: float = 0.9, corr: float = 0.9) -> Population:
        """The linear population rounded to a few score values: heavy ties."""
        s = (np.arange(levels) + 0.5) / levels
        return cls.from_accuracy("ties", s, np.ones(levels), 0.5 + 0.5 * s, ref_acc, corr)

    @classmethod
    def perfect(cls, levels: int = 1000, top: float = 0.3, ref_acc: float = 0.9) -> Population:
        """A share ``top`` at score exactly 1 and always right (perfect confidence), then linear."""
        s = np.r_[1.0, (np.arange(levels) + 0.5) / levels * 0.99]
        w = np.r_[top * levels / (1 - top), np.ones(levels)]
        a = np.r_[1.0, 0.5 + 0.5 * s[1:]]
        return cls.from_accuracy("perfect", s, w, a, ref_acc, 0.9)

    @classmethod
    def top_errors(cls, levels: int = 1000, ref_acc: float = 0.9) -> Population:
        """Errors concentrated at the top: the most confident 3% are right only half the time,
        then accuracy is high and falls off (over-confident on a bad slice)."""
        s = (np.arange(levels) + 0.5) / levels
        a = np.where(s > 0.97, 0.5, 0.55 + 0.45 * np.clip(s / 0.97, 0, 1) ** 0.5)
        return cls.from_accuracy("top_errors", s, np.ones(levels), a, ref_acc, 0.6)

    @classmethod
    def agree(cls, levels: int = 1000) -> Population:
        """Both stages find the same inputs easy (as on SST-2): the cheap stage's accuracy
        0.5 + 0.5 s, the reference's 0.6 + 0.4 sqrt(s) (never below it), strongly dependent,
        so the most confident inputs have almost no disagreement and few gains anywhere."""
        s = (np.arange(levels) + 0.5) / levels
        return cls.from_accuracy("agree", s, np.ones(levels), 0.5 + 0.5 * s, 0.6 + 0.4 * np.sqrt(s), 0.9)

    # ----------------------------------------------------------------- truth per row
    # Row r accepts levels 0 .. r-1 (row 0 accepts nothing), like the certification cores.
    def _cum(self) -> np.ndarray:
        return np.vstack([np.zeros((1, 4)), np.cumsum(self.mass[:, None] * self.cells, axis=0)])

    def coverage(self) -> np.ndarray:
        """Population coverage per row."""
        return np.r_[0.0, np.cumsum(self.mass)]

    def accepted_accuracy(self) -> np.ndarray:
        """Population accuracy of the cheap stage on accepted inputs, per row (nan at row 0)."""
        cum = self._cum()
        cov = cum.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (cum[:, 0] + cum[:, 1]) / cov

    def drop(self) -> np.ndarray:
        """Population reference accuracy minus system accuracy, per row: P(loss) - P(gain)."""
        cum = self._cum()
        return cum[:, 2] - cum[:, 1]

    def reference_accuracy(self) -> float:
        tot = self._cum()[-1]
        return float(tot[0] + tot[2])

    def oracle_accepted(self, target: float) -> float:
        """Largest population coverage whose accepted accuracy meets the target."""
        ok = np.flatnonzero(self.accepted_accuracy()[1:] >= target - 1e-12)
        return float(self.coverage()[1 + ok[-1]]) if ok.size else 0.0

    def allowed_drop(self, epsilon: float, kind: str) -> float:
        return epsilon * self.reference_accuracy() if kind == "ratio" else epsilon

    def oracle_paired(self, epsilon: float, kind: str) -> float:
        ok = np.flatnonzero(self.drop() <= self.allowed_drop(epsilon, kind) + 1e-15)
        return float(self.coverage()[ok[-1]])

    # ----------------------------------------------------------------- draws
    def draw_counts(self, n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
        """Counts per (draw, level, outcome): ``draws`` calibration sets of ``n`` i.i.d. inputs."""
        p = (self.mass[:, None] * self.cells).ravel()
        return rng.multinomial(n, p / p.sum(), size=draws).reshape(draws, self.mass.size, 4)

    def draw_inputs(self, n: int, draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Per-input (level, outcome) index arrays of shape (draws, n), in arrival order."""
        p = (self.mass[:, None] * self.cells).ravel()
        flat = rng.choice(p.size, size=(draws, n), p=p / p.sum())
        return flat // 4, flat % 4

    @staticmethod
    def path(counts: np.ndarray) -> dict[str, np.ndarray]:
        """Cumulative counts per row (row 0 = nothing accepted) from :meth:`draw_counts`:
        accepted ``m``, cheap errors ``k``, losses ``L``, gains ``G``, and ``F`` (reference right,
        all inputs) and ``observed`` (the row of the same accepted set at an observed score)."""
        cum = np.concatenate([np.zeros(counts.shape[:1] + (1, 4), counts.dtype), np.cumsum(counts, axis=1)], axis=1)
        m = cum.sum(axis=2)
        nonempty = np.concatenate([np.ones((counts.shape[0], 1), bool), counts.sum(axis=2) > 0], axis=1)
        rows = np.arange(m.shape[1])
        observed = np.maximum.accumulate(np.where(nonempty, rows, 0), axis=1)
        return {"m": m, "k": cum[..., 2] + cum[..., 3], "L": cum[..., 2], "G": cum[..., 1],
                "F": cum[:, -1, 0] + cum[:, -1, 2], "observed": observed}


def _chunks(draws: int, size: int = 100) -> list[int]:
    return [min(size, draws - i) for i in range(0, draws, size)]


def _grid_rows(pop: Population, grid: int = GRID) -> np.ndarray:
    cov = pop.coverage()
    return np.unique(np.clip(np.searchsorted(cov, np.linspace(1 / grid, 1, grid) - 1e-12), 1, cov.size - 1))


def _observed_rows(levels: np.ndarray, K: int) -> np.ndarray:
    """Per draw, the row of the same accepted set at an observed score, for every row."""
    present = np.zeros((levels.shape[0], K + 1), bool)
    present[:, 0] = True
    np.put_along_axis(present, levels + 1, True, axis=1)
    rows = np.arange(K + 1)
    return np.maximum.accumulate(np.where(present, rows, 0), axis=1)


def reorder(pop: Population, levels: np.ndarray, cells: np.ndarray, order: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-input draws of :meth:`Population.draw_inputs` passed in another row order.

    ``order`` is one of :data:`ORDERS`. For the class orders every input gets a binary label,
    1 with probability its score (seeded by :data:`LABEL_SEED`, so the same draws get the same
    labels in every order); the predicted class is the label when the cheap stage is right and
    the other class when it is wrong. Sorts are stable (ties keep the order drawn).
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if order == "as_drawn":
        return levels, cells
    if order == "score_ascending":
        key = -levels  # level 0 is the highest score
    elif order == "score_descending":
        key = levels
    else:
        label = np.random.default_rng(LABEL_SEED).random(levels.shape) < pop.scores[levels]
        key = (label if order == "by_label" else label ^ (cells >= 2)).astype(np.int64)
    idx = np.argsort(key, axis=-1, kind="stable")
    return np.take_along_axis(levels, idx, -1), np.take_along_axis(cells, idx, -1)


def _inputs(pop: Population, n: int, size: int, rng: np.random.Generator, order: str | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Per-input draws in ``order`` (``None``: as drawn)."""
    levels, cells = pop.draw_inputs(n, size, rng)
    return (levels, cells) if order is None else reorder(pop, levels, cells, order)


def _counts(pop: Population, levels: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Counts per (draw, level, outcome) of per-input draws: what the count-based procedures
    read (the same in every order, by construction)."""
    K = pop.mass.size
    flat = levels * 4 + cells + (np.arange(levels.shape[0]) * K * 4)[:, None]
    return np.bincount(flat.ravel(), minlength=levels.shape[0] * K * 4).reshape(levels.shape[0], K, 4)


def library_order(pop: Population, levels: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Per draw, the order the library's betting certificates read the inputs in: the one
    :func:`~confroute.selection.bounds.betting_order` gives for the rows' values (score, cheap
    stage right, reference right) at the default seed."""
    score = pop.scores[levels]
    cheap_ok, ref_ok = cells <= 1, (cells == 0) | (cells == 2)
    return np.stack([betting_order(levels.shape[1], BETTING_SEED, [score[i], cheap_ok[i], ref_ok[i]])
                     for i in range(levels.shape[0])])


# --------------------------------------------------------------------------- accepted accuracy
def accepted_rows(pop: Population, n: int, target: float, delta: float, method: str, draws: int,
                  rng: np.random.Generator, order: str | None = None) -> np.ndarray:
    """Certify "accepted accuracy >= target" on ``draws`` calibration sets of size ``n``.

    ``method`` is one of ``"fallback"``, ``"single"``, ``"multistart"`` (counts, through
    :func:`~confroute.selection.accepted.select_accepted`; ``"fallback:0.1"`` sets the restart
    share), ``"split"`` (30% learns the order) or ``"betting"`` (per-input draws, a 32-point
    grid, read in the library's order :func:`~confroute.selection.bounds.betting_order`).
    Returns the row each draw certifies (0: nothing), mapped to the row of an observed
    score, so ``pop.accepted_accuracy()[rows]`` is the truth at the chosen threshold.

    ``order`` (one of :data:`ORDERS`) draws per-input sets and passes them in that row order
    (:func:`reorder`) to every method, the count-based ones included; ``None`` keeps the
    faster count draws (and, for ``"split"``, two independent parts).
    """
    out = []
    for size in _chunks(draws):
        if method == "betting":
            levels, cells = _inputs(pop, n, size, rng, order)
            perm = library_order(pop, levels, cells)
            levels, cells = np.take_along_axis(levels, perm, -1), np.take_along_axis(cells, perm, -1)
            rows = _grid_rows(pop)
            rows = rows[pop.coverage()[rows] * n >= betting_min_count(1 - target, delta)]
            err = (cells >= 2).astype(float) - (1 - target)
            y = np.where(levels[:, None, :] < rows[None, :, None], err[:, None, :], 0.0)
            run = fixed_sequence(betting_test(y, delta, upper=target, lower=-(1 - target)))
            chosen = np.where(run > 0, rows[np.maximum(run - 1, 0)], 0)
            obs = _observed_rows(levels, pop.mass.size)
            out.append(np.take_along_axis(obs, chosen[:, None], 1)[:, 0])
        elif method == "split":
            n_a = int(round(0.3 * n))
            if order is None:
                pa, pb = Population.path(pop.draw_counts(n_a, size, rng)), Population.path(pop.draw_counts(n - n_a, size, rng))
            else:  # the library's split: a seeded random part of the rows in a canonical order
                levels, cells = _inputs(pop, n, size, rng, order)
                perm = library_order(pop, levels, cells)
                levels, cells = np.take_along_axis(levels, perm, -1), np.take_along_axis(cells, perm, -1)
                pa = Population.path(_counts(pop, levels[:, :n_a], cells[:, :n_a]))
                pb = Population.path(_counts(pop, levels[:, n_a:], cells[:, n_a:]))
            row, _ = select_accepted_split(pa["m"], pa["k"], pb["m"], pb["k"], target, delta)
            both = np.maximum(np.take_along_axis(pa["observed"], row[:, None], 1),
                              np.take_along_axis(pb["observed"], row[:, None], 1))[:, 0]
            out.append(both)
        else:
            name, _, rho = method.partition(":")
            counts = pop.draw_counts(n, size, rng) if order is None else _counts(pop, *_inputs(pop, n, size, rng, order))
            path = Population.path(counts)
            kw = {"restart_weight": float(rho)} if rho else {}
            row, _ = select_accepted(path["m"], path["k"], n, target, delta, name, **kw)
            out.append(np.take_along_axis(path["observed"], row[:, None], 1)[:, 0])
    return np.concatenate(out)


def summarize_accepted(pop: Population, rows: np.ndarray, target: float) -> dict[str, float]:
    """Violation rate, mean population coverage and share certified of :func:`accepted_rows`."""
    acc = pop.accepted_accuracy()
    cov = pop.coverage()
    bad = (rows > 0) & (acc[rows] < target - 1e-12)
    return {"violation": float(bad.mean()), "coverage": float(cov[rows].mean()),
            "certified": float((rows > 0).mean())}


# --------------------------------------------------------------------------- paired
def paired_rows(pop: Population, n: int, kind: str, eps: float, delta: float, bound: str, draws: int,
                rng: np.random.Generator, order: str | None = None) -> np.ndarray:
    """Certify a paired target (``kind`` "ratio" or "difference") on ``draws`` calibration sets;
    ``bound`` is ``"cp_losses"``, ``"conditional"``, ``"betting"`` or ``"unpaired"`` (Clopper–
    Pearson on the system's accuracy against the target computed from the reference's observed
    accuracy: the rule before paired bounds, kept as a baseline). ``order`` as in
    :func:`accepted_rows`. Returns observed rows."""
    out = []
    for size in _chunks(draws):
        if bound == "betting":
            levels, cells = _inputs(pop, n, size, rng, order)
            perm = library_order(pop, levels, cells)
            levels, cells = np.take_along_axis(levels, perm, -1), np.take_along_axis(cells, perm, -1)
            rows = _grid_rows(pop)
            acc = levels[:, None, :] < rows[None, :, None]
            diff = (cells == 2).astype(float) - (cells == 1)
            off = eps * ((cells == 0) | (cells == 2)) if kind == "ratio" else np.full(cells.shape, eps)
            y = np.where(acc, diff[:, None, :], 0.0) - off[:, None, :]
            run = fixed_sequence(betting_test(y, delta, upper=1.0, lower=-1.0 - eps))
            chosen = np.where(run > 0, rows[np.maximum(run - 1, 0)], 0)
            obs = _observed_rows(levels, pop.mass.size)
            out.append(np.take_along_axis(obs, chosen[:, None], 1)[:, 0])
            continue
        counts = pop.draw_counts(n, size, rng) if order is None else _counts(pop, *_inputs(pop, n, size, rng, order))
        path = Population.path(counts)
        if bound == "unpaired":
            # Clopper–Pearson lower bound on system accuracy against the target computed from
            # the reference's observed accuracy, fixed-sequence from strict to loose.
            sys_correct = path["F"][:, None] - path["L"] + path["G"]
            goal = (1 - eps) * path["F"] / n if kind == "ratio" else path["F"] / n - eps
            lo = clopper_pearson(sys_correct, n, delta, "lower")
            row = fixed_sequence(lo[:, 1:] >= goal[:, None])
        else:
            row, _ = select_paired(path["L"], path["G"], n, eps, delta, kind=kind, bound=bound,
                                   fallback_correct=path["F"])
        out.append(np.take_along_axis(path["observed"], row[:, None], 1)[:, 0])
    return np.concatenate(out)


def summarize_paired(pop: Population, rows: np.ndarray, kind: str, eps: float) -> dict[str, float]:
    """Violation rate, mean population coverage and share certified of :func:`paired_rows`."""
    bad = pop.drop()[rows] > pop.allowed_drop(eps, kind) + 1e-15
    return {"violation": float(bad.mean()), "coverage": float(pop.coverage()[rows].mean()),
            "certified": float((rows > 0).mean())}
