"""DriftMonitor: flags shifted score distributions, stays quiet on unshifted ones (seeded)."""

from __future__ import annotations

import json

import numpy as np
from sklearn.exceptions import NotFittedError
import pytest

from confroute.evaluation.drift import DriftMonitor, population_stability_index


def calib(seed=0, n=4000):
    return np.random.default_rng(seed).beta(8, 2, n)


def test_unshifted_batches_do_not_make_recalibration_due():
    monitor = DriftMonitor(threshold=0.75).fit(calib())
    rng = np.random.default_rng(1)
    reports = [monitor.check(rng.beta(8, 2, 2000)) for _ in range(100)]
    due = sum(r.recalibration_due for r in reports)
    assert due <= 2, due  # the rate test runs at alpha 0.01 (and PSI stays far below 0.2)
    assert max(r.psi for r in reports) < 0.05
    # KS at alpha 0.01 false-alarms about 1% of the time.
    assert sum(r.ks_flag for r in reports) <= 4


@pytest.mark.parametrize("seed", range(5))
def test_shifted_batches_are_flagged(seed):
    monitor = DriftMonitor(threshold=0.75).fit(calib())
    rng = np.random.default_rng(100 + seed)
    r = monitor.check(rng.beta(5, 2, 2000))  # harder inputs: lower confidence, more routed
    assert r.recalibration_due and r.psi_flag and r.rate_flag and r.ks_flag
    assert r.routed_fraction > r.reference_routed_fraction + 0.1
    assert r.psi > 0.2 and len(r.reasons) == 3
    json.dumps(r.to_dict())
    assert "RECALIBRATION DUE" in str(r)


def test_psi_against_hand_computation():
    ref = np.repeat([0.1, 0.3, 0.6, 0.9], 25)  # quartile bins hold 25 each
    live = np.repeat([0.1, 0.3, 0.6, 0.9], [10, 20, 30, 40])
    e = (np.array([25, 25, 25, 25]) + 0.5) / 102
    a = (np.array([10, 20, 30, 40]) + 0.5) / 102
    expected = float(np.sum((a - e) * np.log(a / e)))
    assert population_stability_index(ref, live, n_bins=4) == pytest.approx(expected)
    assert population_stability_index(ref, ref, n_bins=4) == pytest.approx(0.0)


def test_rate_only_shift_and_tolerance():
    # Same shape of distribution away from the threshold, but mass moved across it.
    monitor = DriftMonitor(threshold=0.5, due_on=("rate",), rate_tolerance=0.05).fit(
        np.r_[np.full(10_000, 0.4), np.full(10_000, 0.9)])
    small = monitor.check(np.r_[np.full(10_600, 0.4), np.full(9_400, 0.9)])  # 53% routed vs 50%
    assert small.rate_pvalue < 0.01 and not small.rate_flag  # significant but within tolerance
    big = monitor.check(np.r_[np.full(700, 0.4), np.full(300, 0.9)])
    assert big.rate_flag and big.recalibration_due
    binom = DriftMonitor(threshold=0.5, rate_test="binomial").fit(np.r_[np.full(500, 0.4), np.full(500, 0.9)])
    assert binom.check(np.r_[np.full(700, 0.4), np.full(300, 0.9)]).rate_pvalue < \
        big.rate_pvalue  # treating the calibration share as exact is more eager


def test_update_window_per_class_and_small_samples():
    thr = np.array([0.7, 0.9])
    rng = np.random.default_rng(3)
    s0 = rng.beta(8, 2, 3000)
    lab0 = rng.integers(0, 2, 3000)
    monitor = DriftMonitor(threshold=thr, window=1000, min_samples=300).fit(s0, lab0)
    assert monitor.reference_routed_fraction_ == pytest.approx(np.mean(s0 < thr[lab0]))
    r = monitor.update(rng.beta(8, 2, 100), rng.integers(0, 2, 100))
    assert not r.enough_data and not r.recalibration_due and "not enough data" in str(r)
    for _ in range(5):
        r = monitor.update(rng.beta(8, 2, 200), rng.integers(0, 2, 200))
    assert r.n == 1000 and not r.recalibration_due
    for _ in range(5):  # drift fills the window
        r = monitor.update(rng.beta(4, 2, 200), rng.integers(0, 2, 200))
    assert r.n == 1000 and r.recalibration_due
    monitor.reset()
    assert monitor.update(rng.beta(8, 2, 10), np.zeros(10, int)).n == 10
    with pytest.raises(ValueError, match="predicted label index"):
        monitor.check(rng.beta(8, 2, 10))
    # The keyword is predicted_label_index (column indices); the old name still works, warned.
    s1, lab1 = rng.beta(8, 2, 500), rng.integers(0, 2, 500)
    new = monitor.check(s1, predicted_label_index=lab1)
    with pytest.deprecated_call(match="predicted_labels"):
        old = monitor.check(s1, predicted_labels=lab1)
    assert old.routed_fraction == new.routed_fraction == pytest.approx(np.mean(s1 < thr[lab1]))
    with pytest.raises(TypeError, match="predicted_label_index only"):
        monitor.check(s1, lab1, predicted_labels=lab1)


def test_threshold_choice_and_settings_are_checked():
    class Choice:  # what confroute.core.choice.stage_thresholds reads from a threshold choice
        is_threshold_choice = True
        thresholds = [0.75]

    s = calib()
    by_choice = DriftMonitor(threshold=Choice()).fit(s)
    assert by_choice.reference_routed_fraction_ == DriftMonitor(threshold=0.75).fit(s).reference_routed_fraction_

    class Table:  # an evaluation holds one threshold per table row: refused
        row_thresholds = np.array([np.inf, 0.9, 0.5])

    with pytest.raises(TypeError, match="one threshold per table row"):
        DriftMonitor(threshold=Table()).fit(s)
    for name, bad in [("ks_alpha", 1.5), ("rate_alpha", 0.0), ("rate_tolerance", -0.1), ("psi_alert", 0)]:
        with pytest.raises(ValueError, match=name):
            DriftMonitor(**{name: bad}).fit(s)


def test_errors():
    with pytest.raises(NotFittedError, match="not fitted"):
        DriftMonitor().check([0.5])
    with pytest.raises(ValueError, match="due_on"):
        DriftMonitor(due_on=("psi", "moon")).fit(calib())
    with pytest.raises(ValueError, match="finite"):
        DriftMonitor().fit([0.5, np.nan])
    r = DriftMonitor().fit(calib()).check(calib(1))
    assert r.routed_fraction is None and not r.rate_flag
