"""Plots draw what the result holds, return Axes/Figures and write PNG files."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from confroute.evaluation import plotting  # noqa: E402
from confroute.calibration.calibrators import TemperatureScaler  # noqa: E402
from confroute.evaluation.evaluate import evaluate  # noqa: E402
from confroute.evaluation.plotting import (  # noqa: E402
    AccuracyThresholdDisplay,
    CostAccuracyDisplay,
    CostThresholdDisplay,
    ReliabilityDisplay,
    RiskCoverageDisplay,
)
from confroute import choose_thresholds  # noqa: E402


@pytest.fixture(scope="module")
def result():
    rng = np.random.default_rng(0)
    n = 2500
    logits = rng.normal(size=(n, 3)) * 4
    p = _softmax(logits / 2.0)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, 2)
    fallback = np.where(rng.random(n) < 0.95, y, (y + 1) % 3)
    ts = TemperatureScaler().fit(logits[:1000], y[:1000])
    return evaluate(labels=y[1000:], primary=_softmax(logits[1000:]),
                    fallback=fallback[1000:], cost_model=[1.0, 8.0], calibrator=ts)


class _Choice:
    """What the plots read from a threshold choice: its per-stage ``thresholds``."""

    is_threshold_choice = True

    def __init__(self, t):
        self.thresholds = [t]


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_summary_figure_has_the_three_study_panels(result, tmp_path):
    choice = choose_thresholds(result, target_accuracy=0.9, delta=0.05)
    fig = result.plot(path=tmp_path / "summary.png", choice=choice)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Accuracy vs threshold", "Cost vs threshold", "Accuracy vs cost"]
    png = (tmp_path / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_accuracy_vs_threshold_draws_the_table(result):
    ax = plotting.plot_accuracy_vs_threshold(result)
    line = ax.get_lines()[0]
    t = result.table
    finite = np.isfinite(t["threshold"])
    np.testing.assert_allclose(line.get_xdata(), t["threshold"][finite])
    np.testing.assert_allclose(line.get_ydata(), t["accepted_accuracy"][finite])


def test_cost_plots_use_cost_per_input_and_pareto_front(result):
    ax = plotting.plot_cost_vs_threshold(result)
    y = ax.get_lines()[0].get_ydata()
    assert y.max() <= 9.0 + 1e-9 and y.min() >= 1.0 - 1e-9
    ax2 = result.plot("accuracy_vs_cost")
    front = [ln for ln in ax2.get_lines() if ln.get_label() == "Pareto front"][0]
    np.testing.assert_allclose(front.get_ydata(), result.table["system_accuracy"][result.pareto()])
    assert np.all(np.diff(front.get_xdata()) > 0) and np.all(np.diff(front.get_ydata()) > 0)


def test_risk_coverage_and_reliability(result, tmp_path):
    ax = result.plot("risk_coverage", path=tmp_path / "rc.png")
    assert ax.get_xlabel() == "coverage" and "AURC" in ax.get_legend().get_texts()[0].get_text()
    plotting.plot_risk_coverage(scores=result.scores, correct=result.primary_correct, ax=ax, label="again")
    assert len(ax.get_lines()) == 2
    ax = result.plot("reliability")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("before calibration" in s for s in labels) and any("after calibration" in s for s in labels)
    assert (tmp_path / "rc.png").stat().st_size > 2000


def test_large_results_are_thinned_and_bad_kinds_refused(result):
    rng = np.random.default_rng(1)
    big = evaluate(labels=np.zeros(50_000, int), primary=np.zeros(50_000, int), scores=rng.random(50_000))
    ax = plotting.plot_accuracy_vs_threshold(big)
    assert len(ax.get_lines()[0].get_xdata()) <= plotting.MAX_POINTS
    with pytest.raises(ValueError, match="unknown plot kind"):
        result.plot("pie")
    with pytest.raises(ValueError, match="stage prices"):
        big.plot("cost_vs_threshold")


def test_displays_draw_on_the_given_axes_and_keep_their_artists(result, tmp_path):
    fig, axes = plt.subplots(2, 3)
    rc = RiskCoverageDisplay.from_evaluation(result, ax=axes[0, 0])
    assert rc.ax_ is axes[0, 0] and rc.figure_ is fig and rc.line_ in axes[0, 0].get_lines()
    t = result.table
    accepted = t["n_accepted"] > 0
    np.testing.assert_allclose(rc.line_.get_xdata(), t["coverage"][accepted])
    np.testing.assert_allclose(rc.line_.get_ydata(), 1 - t["accepted_accuracy"][accepted])
    # from_predictions draws the same curve from the arrays, and plot() redraws on any Axes.
    again = RiskCoverageDisplay.from_predictions(result.scores, result.primary_correct, ax=axes[0, 1])
    np.testing.assert_allclose(again.line_.get_ydata(), rc.line_.get_ydata())
    assert again.aurc == pytest.approx(result.aurc)
    assert rc.plot(ax=axes[0, 1]).ax_ is axes[0, 1] and len(axes[0, 1].get_lines()) == 2

    choice = _Choice(float(np.median(result.scores)))
    ca = CostAccuracyDisplay.from_evaluation(result, ax=axes[0, 2], choice=choice)
    assert ca.ax_ is axes[0, 2] and ca.line_.get_label() == "all thresholds"
    np.testing.assert_allclose(ca.front_line_.get_ydata(), t["system_accuracy"][result.pareto()])
    row = result.row_at(choice.thresholds[0])
    assert ca.chosen_marker_.get_xdata()[0] == pytest.approx(t["cost_per_input"][row])
    assert set(ca.single_markers_) == {"primary", "fallback"}
    assert ca.single_markers_["fallback"].get_xdata()[0] == pytest.approx(8.0)

    rel = ReliabilityDisplay.from_evaluation(result, ax=axes[1, 0])
    assert rel.ax_ is axes[1, 0] and len(rel.lines_) == 2 and rel.line_ is rel.lines_[-1]
    assert "after calibration" in rel.line_.get_label()
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7]])
    one = ReliabilityDisplay.from_predictions(probs, [0, 1, 1, 1], ax=axes[1, 1], n_bins=5)
    assert len(one.lines_) == 1 and one.tables[0][1].count.tolist() == [0, 0, 1, 2, 1]

    acc = AccuracyThresholdDisplay.from_evaluation(result, ax=axes[1, 2], choice=choice)
    assert acc.chosen_line_ is not None and acc.system_line_ is not None and acc.ax_ is axes[1, 2]
    cost = CostThresholdDisplay.from_evaluation(result)
    assert cost.ax_ not in axes.ravel() and cost.baseline_line_.get_ydata()[0] == pytest.approx(8.0)
    assert cost.save(tmp_path / "cost.png").stat().st_size > 2000


def test_displays_refuse_what_they_cannot_draw():
    res = evaluate(labels=np.zeros(20, int), primary=np.zeros(20, int), scores=np.linspace(0, 1, 20))
    with pytest.raises(ValueError, match="stage prices"):
        CostAccuracyDisplay.from_evaluation(res)
    with pytest.raises(ValueError, match="no probabilities"):
        ReliabilityDisplay.from_evaluation(res)
    with pytest.raises(ValueError, match="kind must be"):
        RiskCoverageDisplay([0.5], [1.0], 0.0, kind="pie")
    with pytest.raises(TypeError, match="one threshold per table row"):
        AccuracyThresholdDisplay.from_evaluation(res, choice=res)
    plain = AccuracyThresholdDisplay.from_evaluation(res, choice=0.5)
    assert plain.chosen_line_.get_xdata()[0] == 0.5


def test_plotting_does_not_import_matplotlib_until_drawing():
    import subprocess
    import sys

    code = ("import sys; import confroute.evaluation.plotting, confroute.evaluation.evaluate; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
