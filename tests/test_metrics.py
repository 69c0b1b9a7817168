"""Metrics against hand-computed values and brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confroute.calibration import metrics
from confroute.calibration.metrics import (
    aurc,
    brier_score,
    calibration_bins,
    coverage_at,
    eaurc,
    ece,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    optimal_aurc,
    reliability_table,
    risk_coverage_curve,
    selective_accuracy,
    selective_risk,
)

# Six inputs, three classes. Confidences 0.5, 0.6, 0.7, 0.8, 0.9, 0.95; right on rows 0, 2, 4, 5.
PROBS = np.array(
    [
        [0.5, 0.3, 0.2],
        [0.2, 0.6, 0.2],
        [0.1, 0.2, 0.7],
        [0.8, 0.1, 0.1],
        [0.05, 0.9, 0.05],
        [0.95, 0.03, 0.02],
    ]
)
LABELS = np.array([0, 0, 2, 1, 1, 0])


def test_ece_hand_computed_equal_width():
    # 5 bins of width 0.2: (0.4, 0.6] holds 0.5 and 0.6 (acc 1/2, conf 0.55);
    # (0.6, 0.8] holds 0.7 and 0.8 (acc 1/2, conf 0.75); (0.8, 1] holds 0.9, 0.95 (acc 1, conf 0.925).
    expected = (2 * abs(0.5 - 0.55) + 2 * abs(0.5 - 0.75) + 2 * abs(1 - 0.925)) / 6
    assert expected_calibration_error(PROBS, LABELS, n_bins=5) == pytest.approx(expected)
    assert maximum_calibration_error(PROBS, LABELS, n_bins=5) == pytest.approx(0.25)
    assert ece is expected_calibration_error


def test_reliability_table_fields_and_right_closed_bins():
    t = reliability_table(PROBS, LABELS, n_bins=5)
    assert t.count.tolist() == [0, 0, 2, 2, 2]
    assert np.isnan(t.accuracy[0]) and np.isnan(t.confidence[1])
    np.testing.assert_allclose(t.confidence[2:], [0.55, 0.75, 0.925])
    np.testing.assert_allclose(t.accuracy[2:], [0.5, 0.5, 1.0])
    # 0.6 and 0.8 sit exactly on edges and belong to the bin they close.
    t2 = calibration_bins([0.6, 0.8, 0.0, 1.0], [True, True, False, True], n_bins=5)
    assert t2.count.tolist() == [1, 0, 1, 1, 1]
    d = t.to_dict()
    assert d["count"] == [0, 0, 2, 2, 2] and d["accuracy"][0] is None
    assert d["ece"] == pytest.approx(t.ece)


def test_ece_default_is_15_equal_width_bins():
    rng = np.random.default_rng(0)
    p = rng.dirichlet([1, 1, 1], size=500)
    y = rng.integers(0, 3, size=500)
    conf, correct = p.max(axis=1), p.argmax(axis=1) == y
    # Brute force: loop over the 15 bins (b/15, (b+1)/15].
    total = 0.0
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        inside = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - conf[inside].mean())
    assert ece(p, y) == pytest.approx(total / 500)


def test_equal_mass_bins():
    conf = np.array([0.55, 0.6, 0.65, 0.7, 0.8, 0.85, 0.9, 0.99])
    correct = np.array([0, 1, 1, 0, 1, 1, 1, 1], dtype=bool)
    t = calibration_bins(conf, correct, n_bins=4, strategy="quantile")
    assert t.count.tolist() == [2, 2, 2, 2]
    np.testing.assert_allclose(t.accuracy, [0.5, 0.5, 1.0, 1.0])
    expected = (2 * abs(0.5 - 0.575) + 2 * abs(0.5 - 0.675) + 2 * abs(1 - 0.825) + 2 * abs(1 - 0.945)) / 8
    assert t.ece == pytest.approx(expected)
    assert calibration_bins(conf, correct, n_bins=4, strategy="equal_mass").ece == pytest.approx(expected)


def test_brier_and_nll_hand_computed():
    p = np.array([[0.7, 0.2, 0.1], [0.25, 0.5, 0.25]])
    y = np.array([0, 2])
    brier = ((0.3**2 + 0.2**2 + 0.1**2) + (0.25**2 + 0.5**2 + 0.75**2)) / 2
    assert brier_score(p, y) == pytest.approx(brier)
    assert negative_log_likelihood(p, y) == pytest.approx((-math.log(0.7) - math.log(0.25)) / 2)
    # A zero on the true class is floored, not infinite.
    assert negative_log_likelihood([[1.0, 0.0]], [1]) == pytest.approx(-math.log(1e-15))


def test_metric_input_errors():
    with pytest.raises(ValueError, match="not logits"):
        ece([[2.0, -1.0]], [0])
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        brier_score([[0.5, 0.5]], [2])
    with pytest.raises(ValueError, match="class indices"):
        ece([[0.5, 0.5]], ["a"])
    with pytest.raises(ValueError, match="unknown binning strategy"):
        ece([[0.5, 0.5]], [0], strategy="log")
    with pytest.raises(ValueError, match="NaN"):
        aurc([0.1, np.nan], [True, False])


def test_selective_metrics_hand_computed():
    s = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    c = np.array([True, False, True, True, False])
    assert coverage_at(s, 0.8) == pytest.approx(0.6)
    assert selective_accuracy(s, c, 0.8) == pytest.approx(2 / 3)
    assert selective_risk(s, c, 0.8) == pytest.approx(1 / 3)
    # Boundary: a score equal to the threshold is accepted, just above it is not.
    assert coverage_at(s, 0.3) == pytest.approx(0.8)
    assert coverage_at(s, np.nextafter(0.3, 1)) == pytest.approx(0.6)
    assert math.isnan(selective_accuracy(s, c, 0.95))
    curve = risk_coverage_curve(s, c)
    assert curve.thresholds.tolist() == [0.9, 0.8, 0.3, 0.1]
    np.testing.assert_allclose(curve.coverage, [0.2, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(curve.risk, [0.0, 1 / 3, 0.25, 0.4])


def test_aurc_eaurc_hand_computed():
    s = [0.9, 0.7, 0.5, 0.3, 0.1]
    c = [True, False, True, True, False]
    # Risks at coverage 1..5: 0, 1/2, 1/3, 1/4, 2/5.
    expected = (0 + 1 / 2 + 1 / 3 + 1 / 4 + 2 / 5) / 5
    assert aurc(s, c) == pytest.approx(expected)
    # Perfect ranking of 3 right and 2 wrong: risks 0, 0, 0, 1/4, 2/5.
    opt = (1 / 4 + 2 / 5) / 5
    assert optimal_aurc(5, 2) == pytest.approx(opt)
    assert eaurc(s, c) == pytest.approx(expected - opt)
    r = 0.4
    assert eaurc(s, c, exact=False) == pytest.approx(expected - (r + (1 - r) * math.log(1 - r)))
    assert optimal_aurc(3, 3, exact=False) == 1.0 and optimal_aurc(3, 0) == 0.0


def test_aurc_ties_use_expected_order():
    # Two tied inputs, one right one wrong: orders (R, W) and (W, R) give AURC 1/4 and 3/4.
    assert aurc([0.5, 0.5], [True, False]) == pytest.approx(0.5)
    assert aurc([0.5, 0.5], [False, True]) == pytest.approx(0.5)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=6),
)
def test_aurc_with_ties_equals_mean_over_all_orders(rows):
    import itertools

    s = np.array([r[0] for r in rows], dtype=float)
    c = np.array([r[1] for r in rows])
    n = len(rows)
    values = []
    # Average the textbook AURC over every order consistent with the scores.
    for perm in itertools.permutations(range(n)):
        p = np.array(perm)
        if np.any(np.diff(s[p]) > 0):
            continue
        values.append(np.mean(np.cumsum(~c[p]) / np.arange(1, n + 1)))
    assert aurc(s, c) == pytest.approx(np.mean(values))
    assert eaurc(s, c) >= -1e-12


def test_module_exports_the_promised_names():
    for name in ["expected_calibration_error", "ece", "maximum_calibration_error", "brier_score",
                 "negative_log_likelihood", "reliability_table", "risk_coverage_curve", "aurc",
                 "eaurc", "selective_accuracy", "coverage_at"]:
        assert name in metrics.__all__ and callable(getattr(metrics, name))


def test_selective_metrics_follow_the_accept_rule(monkeypatch):
    from confroute.calibration import metrics
    from confroute.core import decision

    s, c = [0.2, 0.5, 0.9, 0.5], [False, True, True, False]
    assert metrics.coverage_at(s, 0.5) == 0.75
    monkeypatch.setattr(decision, "accepts", lambda scores, index, t: np.asarray(scores, float) > float(t))
    assert metrics.coverage_at(s, 0.5) == 0.25 and metrics.selective_accuracy(s, c, 0.5) == 1.0
    curve = metrics.risk_coverage_curve(s, c)  # the strict rule: each group is accepted above the next score
    assert curve.thresholds.tolist() == [0.5, 0.2, -np.inf] and curve.coverage.tolist() == [0.25, 0.75, 1.0]


def test_public_checks():
    from confroute.calibration import metrics

    with pytest.raises(ValueError, match="NaN at index 1"):
        metrics.check_scores([0.1, np.nan])
    assert metrics.check_correct([1, 0], 2).dtype == bool


def test_true_labels_are_label_index_and_the_old_keyword_warns():
    from confroute.calibration import metrics

    probs = [[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7]]
    y = [0, 1, 1, 1]
    for fn in (metrics.expected_calibration_error, metrics.maximum_calibration_error, metrics.brier_score,
               metrics.negative_log_likelihood):
        new = fn(probs, label_index=y)
        with pytest.deprecated_call(match=r"label_index="):
            assert fn(probs, labels=y) == new == fn(probs, y)
    with pytest.deprecated_call():
        assert metrics.reliability_table(probs, labels=y).count.tolist() == metrics.reliability_table(probs, y).count.tolist()
    with pytest.raises(TypeError, match="label_index only"):
        metrics.top_label(probs, y, labels=y)
