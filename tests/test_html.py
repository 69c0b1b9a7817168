"""Notebook displays: every result type renders its own figures as HTML."""

from __future__ import annotations

import re
import warnings
from html import unescape

import numpy as np
import pytest

from confroute import CallablePredictor, Cascade, CostModel, ThresholdRouter, choose_thresholds, evaluate
from confroute.core import _html


def _cells(html: str) -> list[str]:
    return [unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", html)]


@pytest.fixture(scope="module")
def two_stage():
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)

    def stage(noise):
        p = 1 / (1 + np.exp(-(2 * y - 1) * 3 + rng.normal(0, noise, n)))
        return np.c_[1 - p, p]

    return y, stage(5), stage(1), stage(3)


def test_evaluation_html_shows_the_operating_points_and_key_figures(two_stage):
    y, p, f, _ = two_stage
    res = evaluate(labels=y, primary=p, fallback=f, cost_model=[1.0, 10.0])
    html = res._repr_html_()
    cells = _cells(html)
    assert "Evaluation: primary → fallback" in html
    assert f"{res.aurc:.4g}" in cells and f"{res.n:,}" in cells
    # The first row accepts nothing (threshold inf, the fallback alone), the last accepts all.
    t = res.table
    for i in (0, res.n_thresholds - 1):
        assert f"{t['coverage'][i]:.2%}" in cells and f"{t['system_accuracy'][i]:.2%}" in cells
        assert f"{t['savings'][i]:.2%}" in cells
    assert "∞" in cells
    assert f"11 of {res.n_thresholds} operating points" in html


def test_choice_html_shows_target_guarantee_and_coverage(two_stage):
    y, p, f, _ = two_stage
    c = choose_thresholds(evaluate(labels=y, primary=p, fallback=f), target_system_accuracy=0.8, delta=0.05)
    cells = _cells(c._repr_html_())
    assert "system accuracy" in cells and "80.00%" in cells
    assert f"≥ {c.guaranteed:.2%} with probability 0.95" in cells
    assert f"{c.coverage:.2%} ({c.m:,} of {c.n:,} accepted, {c.k:,} errors)" in cells
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bad = choose_thresholds(evaluate(labels=y, primary=p, fallback=f), target_accuracy=0.9999, delta=0.05)
    assert any(cell.startswith("no: the target is not reachable") for cell in _cells(bad._repr_html_()))
    empirical = choose_thresholds(evaluate(labels=y, primary=p), target_coverage=0.5, delta=None)
    assert "none (empirical choice)" in _cells(empirical._repr_html_())


def test_routing_result_html_counts_stages_degraded_and_cost():
    calls = {"n": 0}

    def flaky(xs):
        calls["n"] += 1
        raise RuntimeError("the big model is down")

    from confroute import Fallback

    cheap = CallablePredictor(lambda xs: np.array([[1 - x, x] for x in xs]), classes=["neg", "pos"])
    router = ThresholdRouter(cheap, Fallback(CallablePredictor(flaky), on_error="keep_previous"),
                             threshold=0.8, cost_model=CostModel.per_sample([1.0, 5.0]),
                             names=("<b>cheap</b>", "big"))
    result = router.route([0.95, 0.5, 0.1, 0.6])
    html = result._repr_html_()
    cells = _cells(html)
    assert "&lt;b&gt;cheap&lt;/b&gt;" in html and "<b>cheap" not in html  # names are escaped
    # cheap answers 0.95 and 0.1 itself, and keeps 0.5 and 0.6 when the fallback fails.
    assert cells[cells.index("degraded") + 1] == "2 (50.00%)"
    assert cells[cells.index("total cost") + 1] == f"{result.total_cost:.4g}"
    primary_row = cells.index("<b>cheap</b>")
    assert cells[primary_row + 1: primary_row + 4] == ["4", "100.00%", "4"]


def test_cascade_html(two_stage):
    y, p, f, m = two_stage
    res = evaluate(labels=y, stages=[p, m, f], cost_model=[1.0, 2.0, 10.0], grid=5)
    html = res._repr_html_()
    assert "Pareto front" in html and "threshold stage0" in html
    c = choose_thresholds(res, target_system_accuracy=0.8, delta=None)
    cells = _cells(c._repr_html_())
    assert ", ".join(_html.fmt(t) for t in c.thresholds) in cells
    assert " / ".join(f"{s:.2%}" for s in c.shares) in cells
    no_cost = evaluate(labels=y, stages=[p, m, f], grid=4)
    assert "most accurate threshold tuples" in no_cost._repr_html_()


def test_empty_routing_result_renders():
    cheap = CallablePredictor(lambda xs: np.tile([0.5, 0.5], (len(xs), 1)), classes=["a", "b"])
    result = Cascade([cheap, cheap], thresholds=[0.9], names=["one", "two"]).route([])
    assert "RoutingResult" in result._repr_html_()


def test_choice_displays_read_the_unified_choice_attributes(two_stage):
    """The displays read ``thresholds``, ``feasible``, ``guaranteed`` (nan when nothing is
    certified) and ``procedure`` of any choice, and a fitted RoutedClassifier shows its choice's
    own display."""
    from dataclasses import replace

    y, p, f, m = two_stage
    c = choose_thresholds(evaluate(labels=y, primary=p, fallback=f), target_relative_accuracy=0.9, delta=0.05)
    cells = _cells(c._repr_html_())
    assert "system / fallback accuracy" in cells
    # A Choice writes a missing bound as nan: "nothing certified", never "≥ —".
    view = replace(c, guaranteed=float("nan"), procedure="paired (cp_losses)", threshold=0.7)
    cells = _cells(_html.threshold_choice_html(view))
    assert "nothing certified" in cells and "paired (cp_losses)" in cells and "0.7" in cells
    assert not any(cell.startswith("≥ —") for cell in cells)
    res = evaluate(labels=y, stages=[p, m, f], cost_model=[1.0, 2.0, 10.0], grid=5)
    cascade = choose_thresholds(res, target_system_accuracy=0.8, delta=0.05)
    view = replace(cascade, guaranteed=0.8123)
    assert "≥ 81.23% with probability 0.95" in _cells(_html.cascade_choice_html(view))


def test_evaluation_html_reads_row_thresholds(two_stage):
    y, p, f, _ = two_stage
    res = evaluate(labels=y, primary=p, fallback=f)
    rows = getattr(res, "row_thresholds", None)
    rows = res.table["threshold"] if rows is None else rows
    cells = _cells(res._repr_html_())
    assert _html.fmt(rows[-1]) in cells and "∞" in cells


def test_choices_say_their_objective_in_the_words_of_the_one_table(two_stage):
    """Every choice kind reads ``wording``, ``sense`` and ``figure_format`` from
    selection.objectives, and the displays read only those (a cost budget is a ceiling)."""
    from confroute.selection.objectives import OBJECTIVES

    y, p, f, m = two_stage
    ev = evaluate(labels=y, primary=p, fallback=f, cost_model=[1.0, 10.0])
    cascade = evaluate(labels=y, stages=[p, m, f], cost_model=[1.0, 2.0, 10.0], grid=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        choices = {
            "max_cost_per_input": choose_thresholds(ev, max_cost_per_input=6.0, delta=0.05),
            "target_accuracy": choose_thresholds(ev, target_accuracy=0.8, per_class=True, delta=0.05),
            "target_system_accuracy": choose_thresholds(cascade, target_system_accuracy=0.8, delta=None),
        }
    for keyword, c in choices.items():
        row = OBJECTIVES[keyword]
        assert (c.wording, c.sense, c.figure_format) == (row.wording, row.sense, row.display)
        assert any(cell.startswith(row.wording) for cell in _cells(c._repr_html_()))
    cost = choices["max_cost_per_input"]
    assert not np.isnan(cost.guaranteed)
    assert f"≤ {_html.fmt(cost.guaranteed)} with probability 0.95" in _cells(cost._repr_html_())
    assert "6" in _cells(cost._repr_html_())  # a budget is a price, not a percentage
