"""Calibrators: known temperatures are recovered, the protocol holds, bad input is refused."""

from __future__ import annotations

import numpy as np
from sklearn.exceptions import NotFittedError
import pytest

from confroute import Predictions
from confroute.core.types import softmax
from confroute.calibration.calibrators import (
    CalibrationWarning,
    HistogramBinning,
    IsotonicCalibrator,
    TemperatureScaler,
    VectorScaler,
)
from confroute.calibration.metrics import expected_calibration_error, negative_log_likelihood


def draw(n: int, k: int, temperature: float, seed: int, scale: float = 4.0):
    """Logits whose labels are drawn from softmax(logits / temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * scale
    p = softmax(logits / temperature)
    labels = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return logits, np.minimum(labels, k - 1)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
@pytest.mark.parametrize("k", [2, 5])
def test_temperature_is_recovered_within_5_percent(temperature, k):
    logits, labels = draw(20_000, k, temperature, seed=k)
    ts = TemperatureScaler().fit(logits, labels)
    assert ts.temperature_ == pytest.approx(temperature, rel=0.05)
    assert ts.nll_after_ <= ts.nll_before_ + 1e-12


def test_log_probabilities_give_the_same_temperature_as_logits():
    logits, labels = draw(5000, 4, 2.0, seed=7)
    log_probs = np.log(softmax(logits))
    t_logits = TemperatureScaler().fit(logits, labels)
    t_logp = TemperatureScaler().fit(log_probs, labels)
    assert t_logp.temperature_ == pytest.approx(t_logits.temperature_, rel=1e-4)
    np.testing.assert_allclose(t_logp.transform(log_probs), t_logits.transform(logits), atol=1e-6)
    # A Predictions object without logits is fitted on its log-probabilities.
    preds = Predictions.from_probs(softmax(logits))
    assert TemperatureScaler().fit(preds, labels).temperature_ == pytest.approx(t_logits.temperature_, rel=1e-4)


def test_temperature_scaling_keeps_labels_and_improves_calibration():
    logits, labels = draw(6000, 3, 3.0, seed=3)
    fit_l, fit_y, test_l, test_y = logits[:3000], labels[:3000], logits[3000:], labels[3000:]
    ts = TemperatureScaler().fit(fit_l, fit_y)
    calibrated = ts.transform(test_l)
    raw = softmax(test_l)
    assert (calibrated.argmax(axis=1) == raw.argmax(axis=1)).all()
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert expected_calibration_error(calibrated, test_y) < 0.5 * expected_calibration_error(raw, test_y)
    assert negative_log_likelihood(calibrated, test_y) < negative_log_likelihood(raw, test_y)


def test_probabilities_passed_as_logits_warn():
    logits, labels = draw(500, 2, 1.0, seed=1)
    with pytest.warns(CalibrationWarning, match="looks like probabilities"):
        TemperatureScaler().fit(softmax(logits), labels)


def test_temperature_at_search_bound_warns():
    # Perfectly separable: the NLL keeps falling as T -> 0.
    logits = np.array([[5.0, -5.0], [-5.0, 5.0]] * 50)
    labels = np.array([0, 1] * 50)
    with pytest.warns(CalibrationWarning, match="edge of the search range"):
        ts = TemperatureScaler().fit(logits, labels)
    assert ts.temperature_ == pytest.approx(0.01, rel=0.01)


def test_errors_name_the_problem():
    ts = TemperatureScaler()
    with pytest.raises(NotFittedError, match="not fitted"):
        ts.transform(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"labels \[2\] are not column indices .* classes are 0\.\.1"):
        ts.fit(np.zeros((2, 2)), [0, 2])
    with pytest.raises(ValueError, match="shape"):
        ts.fit(np.zeros(4), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="not finite"):
        ts.fit(np.array([[0.0, np.inf]]), [0])
    ts.fit(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.5]]), [0, 1, 1])
    with pytest.raises(ValueError, match="fitted on 2 classes"):
        ts.transform(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="bounds"):
        TemperatureScaler(bounds=(1.0, 0.5)).fit(np.zeros((2, 2)), [0, 1])


def test_vector_scaling_recovers_per_class_weights():
    logits, labels = draw(20_000, 3, 2.0, seed=11)
    vs = VectorScaler().fit(logits, labels)
    np.testing.assert_allclose(vs.weights_, 0.5, atol=0.05)
    # Biases are identified up to a common shift.
    np.testing.assert_allclose(vs.bias_ - vs.bias_.mean(), 0.0, atol=0.1)
    np.testing.assert_allclose(vs.transform(logits), softmax(logits / 2.0), atol=0.03)


@pytest.mark.parametrize("cls", [IsotonicCalibrator, HistogramBinning])
def test_one_vs_rest_calibrators_reduce_ece(cls):
    logits, labels = draw(8000, 3, 3.0, seed=5)
    cal = cls().fit(logits[:4000], labels[:4000])
    probs = cal.transform(logits[4000:])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert probs.min() >= 0
    raw = softmax(logits[4000:])
    assert expected_calibration_error(probs, labels[4000:]) < 0.5 * expected_calibration_error(raw, labels[4000:])


def test_calibrate_returns_predictions_with_same_classes():
    logits, labels = draw(1000, 2, 2.0, seed=2)
    preds = Predictions.from_logits(logits, classes=["neg", "pos"])
    ts = TemperatureScaler().fit(preds, np.array(["neg", "pos"])[labels])  # labels by class name
    out = ts.calibrate(preds)
    assert out.classes == ("neg", "pos") and out.logits is None
    np.testing.assert_allclose(out.probs, softmax(logits / ts.temperature_))
    np.testing.assert_allclose(ts.fit_transform(logits, labels), out.probs)
