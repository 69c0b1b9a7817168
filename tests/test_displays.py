"""What a notebook user sees (issue 26): labels, columns and figures of the displays, and the
names, warnings and import cost around them. tools/notebook_screenshot.sh shows the same displays
in a browser (tests/test_notebook.py runs it when Chromium is installed)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import numpy as np
import pytest

import confroute as cr
from confroute.core import _html

ROOT = Path(__file__).resolve().parents[1]


def _cells(html: str, tag: str = "td") -> list[str]:
    return [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", html, re.S)]


def _predictors():
    rng = np.random.default_rng(3)
    n = 300
    y = rng.integers(0, 3, n)

    def probs(noise, rows):
        logits = np.eye(3)[y[rows]] * 3 + rng.normal(0, noise, (len(rows), 3))
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def cheap(xs):
        return probs(2.0, np.asarray(xs, dtype=int))

    def big(xs):
        return probs(0.5, np.asarray(xs, dtype=int))

    return (y, cr.CallablePredictor(cheap, classes=[0, 1, 2], name="cheap"),
            cr.CallablePredictor(big, classes=[0, 1, 2], name="big"))


@pytest.fixture(scope="module")
def routed_eval():
    y, cheap, big = _predictors()
    router = cr.ThresholdRouter(cheap, big, threshold=0.8, cost_model=cr.CostModel.per_sample([0.001, 0.005]))
    return router, cr.evaluate(router, np.arange(len(y)), y, progress=False)


# --------------------------------------------------------------------------- the evaluation's HTML
def test_score_is_named_without_a_python_tuple(routed_eval):
    _, ev = routed_eval
    assert ev.score == ("max_prob",)
    html = ev._repr_html_()
    cells = _cells(html)
    assert cells[cells.index("score") + 1] == "max_prob"
    assert "(&#x27;" not in html and "('" not in unescape(html)
    assert _html.score_text(("max_prob", "margin")) == "max_prob, margin"


def test_plot_labels_name_the_score_without_a_python_tuple(routed_eval):
    plt = pytest.importorskip("matplotlib.pyplot")
    _, ev = routed_eval
    texts = []
    fig = ev.plot()
    for kind in ("accuracy_vs_threshold", "cost_vs_threshold", "accuracy_vs_cost", "risk_coverage", "reliability"):
        ev.plot(kind)
    for num in plt.get_fignums():
        for ax in plt.figure(num).axes:
            legend = ax.get_legend()
            texts += [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
            texts += [t.get_text() for t in legend.get_texts()] if legend else []
    plt.close("all")
    assert "threshold on max_prob" in texts and fig is not None
    assert not [t for t in texts if "('" in t or "',)" in t]


def test_html_cost_column_is_the_cost_per_input_as_in_the_text(routed_eval):
    _, ev = routed_eval
    html = ev._repr_html_()
    header = _cells(html, "th")
    assert "cost / input" in header and "cost" not in header
    cells = _cells(html)
    t = ev.table
    for i in ev.spread_rows(11):
        assert _html.fmt(t["cost_per_input"][i]) in cells
        assert f"{t['cost_per_input'][i]:.5g}" in repr(ev)  # the text table shows the same figure
    # The fallback alone costs 0.005 per input; its total over 300 inputs (1.5) is not shown.
    assert "0.005" in cells and "1.5" not in cells


def test_html_footer_does_not_guess_the_variable_name(routed_eval):
    _, ev = routed_eval
    html = ev._repr_html_()
    assert "res.to_pandas()" not in html
    assert "to_pandas() of this evaluation has them all" in html


# --------------------------------------------------------------------------- routers
def test_threshold_router_uses_the_predictors_names_by_default():
    _, cheap, big = _predictors()
    router = cr.ThresholdRouter(cheap, big, threshold=0.8)
    assert router.names == ("cheap", "big")
    assert router.route(np.arange(5)).stage_names == ("cheap", "big")
    sk = pytest.importorskip("sklearn.linear_model")
    X = np.random.default_rng(0).normal(size=(40, 2))
    y = (X[:, 0] > 0).astype(int)
    named = cr.SklearnPredictor(sk.LogisticRegression().fit(X, y), name="small")
    assert cr.ThresholdRouter(named, big).names == ("small", "big")
    # names= still wins; unnamed stages (a lambda) and equal names fall back to primary/fallback.
    assert cr.ThresholdRouter(cheap, big, names=("a", "b")).names == ("a", "b")
    lam = cr.CallablePredictor(lambda xs: np.tile([0.5, 0.5], (len(xs), 1)))
    assert cr.ThresholdRouter(lam, big).names == ("primary", "big")
    assert cr.ThresholdRouter(cheap, cheap).names == ("primary", "fallback")


def test_threshold_router_has_an_html_display():
    _, cheap, big = _predictors()
    router = cr.ThresholdRouter(cheap, cr.Fallback(big, on_error="abstain"), threshold=0.8,
                                cost_model=cr.CostModel.per_sample([0.001, 0.005]))
    html = router._repr_html_()
    assert "ThresholdRouter: cheap → big" in html
    header = _cells(html, "th")
    assert header == ["stage", "model", "score", "threshold", "calibrator", "price / input", "on error"]
    cells = _cells(html)
    assert cells[:7] == ["cheap", "CallablePredictor", "max_prob", "0.8", "—", "0.001", "raise"]
    assert cells[7:] == ["big", "CallablePredictor", "—", "answers the rest", "—", "0.005", "abstain"]
    three = cr.Cascade([cheap, big, big], thresholds=[0.9, {0: 0.5, 1: 0.6, 2: 0.7}], names=("a", "b", "c"))
    assert "0: 0.5, 1: 0.6, 2: 0.7" in _cells(three._repr_html_())


# --------------------------------------------------------------------------- RoutedClassifier
@pytest.fixture(scope="module")
def routed_classifier():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = load_digits(return_X_y=True)
    est = cr.RoutedClassifier(
        [("cheap", LogisticRegression(C=0.1, max_iter=300)), ("forest", RandomForestClassifier(30, random_state=0))],
        objective="accepted_accuracy", target=0.95, delta=0.1, costs=[0.001, 0.005], cv=3,
    ).fit(X[:600], y[:600])
    return sklearn, est


def test_routed_classifier_diagram_names_every_stage_side_by_side(routed_classifier):
    _, est = routed_classifier
    block = est._sk_visual_block_()
    assert block.kind == "parallel"  # an input is answered by one stage: not a chain
    html = est._repr_html_()
    labels = [unescape(re.sub(r"<[^>]+>", "", x)).strip() for x in re.findall(r"<label[^>]*>(.*?)</label>", html, re.S)]
    assert "cheap (stage 1)" in labels and "forest (stage 2, answers the rest)" in labels


def test_fitted_attributes_panel_shows_prices_to_their_precision(routed_classifier):
    sklearn, est = routed_classifier
    if not hasattr(sklearn.base.BaseEstimator, "_get_fitted_attr_html"):
        pytest.skip(f"scikit-learn {sklearn.__version__} has no fitted-attributes panel")
    html = est._repr_html_()
    row = re.search(r"stage_costs_.*?</tr>", html, re.S)
    assert row is not None
    text = unescape(re.sub(r"<[^>]+>", " ", row.group(0)))
    assert "[0.001, 0.005]" in text and "0.01" not in text


def test_fitted_routing_table_has_a_header_on_every_column(routed_classifier):
    _, est = routed_classifier
    html = _html.routed_classifier_html(est)
    first_table = html[: html.index("</table>")]
    header = _cells(first_table, "th")
    assert header == ["stage", "model", "threshold", "temperature", "price / input"]
    assert _cells(first_table)[:2] == ["cheap", "fitted"]


# --------------------------------------------------------------------------- figures
def test_summary_figure_fits_a_notebook_cell(routed_eval):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from PIL import Image

    _, ev = routed_eval
    fig = ev.plot()
    assert len(fig.axes) == 3
    buf = io.BytesIO()
    # What Jupyter's inline backend does: PNG at matplotlib's dpi, cropped to the drawing.
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=100)
    plt.close(fig)
    width = Image.open(io.BytesIO(buf.getvalue())).width
    assert width <= 960, f"the summary figure is {width} px wide: wider than a notebook cell (960 px)"


# --------------------------------------------------------------------------- import cost
def test_import_confroute_leaves_the_heavy_libraries_unimported():
    """``import confroute`` must not import pandas, matplotlib, SciPy or scikit-learn (they make
    it take seconds; docs/design.md gives the times). Run with -X importtime in a fresh process."""
    code = ("import sys, confroute; "
            "print(' '.join(m for m in ('pandas', 'matplotlib', 'scipy', 'scipy.stats', 'sklearn', 'pyarrow', "
            "'torch', 'transformers', 'onnxruntime', 'ray', 'httpx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"import confroute imported: {out.stdout.strip()}"
    assert "| confroute" in out.stderr  # the import was timed (the figures in the docs come from here)
    # The lazily made NotFittedError is still scikit-learn's, and one class.
    from sklearn.exceptions import NotFittedError as SkNotFitted

    assert issubclass(cr.NotFittedError, SkNotFitted) and cr.NotFittedError is cr.exceptions.NotFittedError
