"""Validity suite: every certificate's violation rate stays within delta over many draws.

In the style of MAPIE's theoretical-validity tests. Each population of
:mod:`confroute.selection.simulate` has exact truth at every threshold (ties, perfect confidence,
errors concentrated among the most confident inputs, a smooth linear one); for every objective
and every bound, 1,000 calibration sets are drawn and certified, and the share whose chosen
threshold misses the target in the population must be at most delta plus a binomial margin
(the 99.99% quantile of Binomial(1000, delta) / 1000: a valid procedure fails a check with
probability < 1e-4; the seeds are fixed anyway). Vectorised over draws: about a minute on one core.

Row orders (issue 27): the same draws are also passed as drawn, sorted by score ascending and
descending, grouped by predicted class and sorted by label, through every procedure and bound;
the violation rate must be within delta in each order (and, the procedures being order-free,
the certified rows must be the same). ``benchmarks/bench_validity_orders.py`` re-runs the
settings near delta at 10,000 draws (results in docs/evaluation.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from confroute.selection.simulate import (
    ORDERS,
    Population,
    accepted_rows,
    paired_rows,
    summarize_accepted,
    summarize_paired,
)

pytestmark = pytest.mark.slow

DRAWS = 1000
POPULATIONS = {
    "linear": Population.linear,
    "ties": Population.ties,
    "perfect": Population.perfect,
    "top_errors": Population.top_errors,
    "agree": Population.agree,
}


def margin(delta: float, draws: int = DRAWS) -> float:
    return float(binom.ppf(0.9999, draws, delta)) / draws


@pytest.mark.parametrize("pop_name", list(POPULATIONS))
@pytest.mark.parametrize("method", ["fallback", "single", "multistart", "split", "betting"])
def test_accepted_accuracy_violation_rate(pop_name, method):
    pop = POPULATIONS[pop_name]()
    rng = np.random.default_rng(1234)
    for n, target, delta in ((500, 0.9, 0.1), (500, 0.95, 0.1)):
        rows = accepted_rows(pop, n, target, delta, method, DRAWS, rng)
        s = summarize_accepted(pop, rows, target)
        assert s["violation"] <= margin(delta), (pop_name, method, n, target, s)


@pytest.mark.parametrize("pop_name", list(POPULATIONS))
@pytest.mark.parametrize("bound", ["cp_losses", "conditional", "betting"])
@pytest.mark.parametrize("kind, eps", [("ratio", 0.005), ("ratio", 0.02), ("difference", 0.01)])
def test_paired_violation_rate(pop_name, bound, kind, eps):
    pop = POPULATIONS[pop_name]()
    rng = np.random.default_rng(4321)
    delta = 0.1
    n = 1000 if eps < 0.01 else 500  # 0.5% needs about 700 inputs before anything can pass
    rows = paired_rows(pop, n, kind, eps, delta, bound, DRAWS, rng)
    s = summarize_paired(pop, rows, kind, eps)
    assert s["violation"] <= margin(delta), (pop_name, bound, kind, s)


def test_suite_can_fail():
    """The check is not vacuous: an empirical choice (no guarantee) and a test at a level far
    above the nominal one both break it on the populations above."""
    pop = Population.linear()
    rng = np.random.default_rng(0)
    rows = accepted_rows(pop, 500, 0.9, 0.5, "single", DRAWS, rng)  # tested at 0.5, judged at 0.1
    assert summarize_accepted(pop, rows, 0.9)["violation"] > margin(0.1)
    # Losses only (the reference is always right): the loss bound is tight there.
    s = (np.arange(1000) + 0.5) / 1000
    no_gains = Population.from_accuracy("no_gains", s, np.ones(1000), 0.5 + 0.5 * s, ref_acc=1.0)
    rows = paired_rows(no_gains, 500, "difference", 0.01, 0.6, "cp_losses", DRAWS, rng)
    assert summarize_paired(no_gains, rows, "difference", 0.01)["violation"] > margin(0.1)


# --------------------------------------------------------------------------- row orders (issue 27)
ORDER_POPULATIONS = ("linear", "top_errors")


@pytest.mark.parametrize("pop_name", ORDER_POPULATIONS)
@pytest.mark.parametrize("method", ["fallback", "single", "multistart", "split", "betting"])
def test_accepted_accuracy_violation_rate_in_every_row_order(pop_name, method):
    """The same draws passed in five row orders: the violation rate is within delta in each,
    and (every procedure being order-free) each order certifies the same rows."""
    pop = POPULATIONS[pop_name]()
    n, target, delta = 500, 0.9, 0.1
    rows = {order: accepted_rows(pop, n, target, delta, method, DRAWS, np.random.default_rng(2718), order=order)
            for order in ORDERS}
    for order, r in rows.items():
        s = summarize_accepted(pop, r, target)
        assert s["violation"] <= margin(delta), (pop_name, method, order, s)
        np.testing.assert_array_equal(r, rows["as_drawn"], err_msg=f"{method} depends on the order {order}")


@pytest.mark.parametrize("pop_name", ORDER_POPULATIONS)
@pytest.mark.parametrize("bound", ["cp_losses", "conditional", "betting"])
@pytest.mark.parametrize("kind, eps", [("ratio", 0.02), ("difference", 0.01)])
def test_paired_violation_rate_in_every_row_order(pop_name, bound, kind, eps):
    pop = POPULATIONS[pop_name]()
    delta = 0.1
    rows = {order: paired_rows(pop, 500, kind, eps, delta, bound, DRAWS, np.random.default_rng(3141), order=order)
            for order in ORDERS}
    for order, r in rows.items():
        s = summarize_paired(pop, r, kind, eps)
        assert s["violation"] <= margin(delta), (pop_name, bound, kind, order, s)
        np.testing.assert_array_equal(r, rows["as_drawn"], err_msg=f"{bound} depends on the order {order}")


def test_row_order_check_can_fail(monkeypatch):
    """Without the library's random order (rows read as passed), the betting certificate breaks
    on rows sorted by descending score (most confident first; 35% of draws miss the target
    against 10% allowed): the order suite would catch a regression."""
    from confroute.selection import simulate

    pop = Population.linear()
    monkeypatch.setattr(simulate, "library_order", lambda pop, levels, cells: np.broadcast_to(
        np.arange(levels.shape[1]), levels.shape))
    rows = accepted_rows(pop, 500, 0.9, 0.1, "betting", 200, np.random.default_rng(0), order="score_descending")
    assert summarize_accepted(pop, rows, 0.9)["violation"] > margin(0.1, 200)
