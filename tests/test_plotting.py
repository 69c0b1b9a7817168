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
