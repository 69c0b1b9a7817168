"""Cross-fitted calibration and threshold choice: no input is decided by a rule fitted on its own
label, the pooled figures are the held-out decisions' figures, and a missed target says why."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from confroute.calibration.calibrators import TemperatureScaler
from confroute.core.types import Predictions
from confroute.evaluation.evaluate import evaluate
from confroute import choose_thresholds
from confroute.selection.crossfit import (
    CrossFittedCalibrator,
    cross_fit_calibration,
    cross_fit_thresholds,
)


def _pair(n: int = 1500, seed: int = 0, temperature: float = 2.0, fallback_acc: float = 0.95):
    """A primary whose logits are ``temperature`` times too sharp and a fallback right at a fixed rate."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 6.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z / temperature))).astype(int)
    fb = np.where(rng.random(n) < fallback_acc, y, 1 - y)
    # Unnamed classes: the labels and the fallback answers are the column indices 0 and 1.
    return y, Predictions.from_logits(np.c_[np.zeros(n), z]), fb


def test_each_fold_is_decided_by_a_rule_fitted_without_it():
    y, pp, fb = _pair()
    cf = cross_fit_thresholds(y, pp, fb, target_relative_accuracy=0.97, delta=0.05, cost_model=[1.0, 4.0])
    assert np.bincount(cf.fold_of).tolist() == [f.n_held_out for f in cf.folds]
    # Stratified: every fold has the class balance of the whole (within one input).
    for j in range(cf.n_folds):
        assert abs(y[cf.fold_of == j].mean() - y.mean()) < 2 / (cf.fold_of == j).sum()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in cf.folds:
            fit, held = cf.fold_of != f.fold, cf.fold_of == f.fold
            # Refit by hand on the other folds only: same temperature and threshold.
            ts = TemperatureScaler().fit(pp.take(np.flatnonzero(fit)).log_scores(), y[fit])
            assert f.temperature == pytest.approx(ts.temperature_)
            ev = evaluate(labels=y[fit], primary=pp.take(np.flatnonzero(fit)), fallback=fb[fit], calibrator=ts,
                          cost_model=[1.0, 4.0])
            # The one path on the fitting folds: the same keyword, the paired certificate.
            choice = choose_thresholds(ev, target_relative_accuracy=0.97, delta=0.05)
            assert f.target == 0.97 and f.procedure == choice.procedure == "paired_cp_losses"
            assert f.threshold == choice.threshold
            assert f.guaranteed == choice.guaranteed or not f.feasible
            # The held-out fold's decisions are that rule applied to its calibrated scores.
            scores = ts.transform(pp.take(np.flatnonzero(held)).log_scores()).max(axis=1)
            assert np.array_equal(cf.accept[held], scores >= f.threshold)
            assert f.coverage == pytest.approx(cf.accept[held].mean())


def test_pooled_figures_are_the_held_out_decisions():
    y, pp, fb = _pair(seed=1)
    cf = cross_fit_thresholds(y, pp, fb, target_relative_accuracy=0.97, cost_model=[1.0, 4.0])
    pc, fc = pp.labels == y, fb == y
    system = np.where(cf.accept, pc, fc)
    assert cf.coverage == pytest.approx(cf.accept.mean())
    assert cf.system_accuracy == pytest.approx(system.mean())
    assert cf.accepted_accuracy == pytest.approx(pc[cf.accept].mean())
    assert cf.fallback_accuracy == pytest.approx(fc.mean()) and cf.primary_accuracy == pytest.approx(pc.mean())
    # Cascade accounting: everyone pays 1, deferred inputs also pay 4; against 4 for all.
    assert cf.savings == pytest.approx(1 - (1 + 4 * (1 - cf.coverage)) / 4)
    assert cf.met == (system.mean() >= 0.97 * fc.mean())
    assert cf.folds_met == sum(
        np.where(cf.accept, pc, fc)[cf.fold_of == j].mean() >= 0.97 * fc[cf.fold_of == j].mean() for j in range(5))


def test_temperature_found_and_ece_improves_out_of_fold():
    y, pp, fb = _pair(n=3000, seed=2, temperature=2.5)
    cf = cross_fit_thresholds(y, pp, fb, target_system_accuracy=0.9, delta=None)
    assert all(2.0 < f.temperature < 3.0 for f in cf.folds)
    assert 2.0 < cf.final_temperature < 3.0
    assert cf.ece_after < cf.ece_before / 2
    # The pooled ECE is that of the out-of-fold probabilities from the cross-fitted calibrator.
    probs = cf.oof_calibrator.transform(pp)
    ev = evaluate(labels=y, primary=probs, fallback=fb)
    assert cf.ece_after == pytest.approx(ev.ece)


def test_final_choice_is_the_rule_refitted_on_everything():
    y, pp, fb = _pair(seed=3)
    cf = cross_fit_thresholds(y, pp, fb, target_accuracy=0.97, delta=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = TemperatureScaler().fit(pp.log_scores(), y)
    ev = evaluate(labels=y, primary=pp, fallback=fb, calibrator=ts)
    assert cf.final == choose_thresholds(ev, target_accuracy=0.97, delta=0.05)
    assert cf.final_temperature == pytest.approx(ts.temperature_)
    assert cf.usable == (cf.final.feasible and np.isfinite(cf.final.threshold) and cf.met)


def test_same_folds_as_cross_fit_calibration_and_reproducible():
    y, pp, fb = _pair(seed=4)
    cal = cross_fit_calibration(y, pp, n_folds=4, random_state=7)
    cf = cross_fit_thresholds(y, pp, fb, target_coverage=0.5, n_folds=4, random_state=7)
    assert np.array_equal(cal.folds, cf.fold_of)
    assert cal.temperatures == [f.temperature for f in cf.folds]
    again = cross_fit_thresholds(y, pp, fb, target_coverage=0.5, n_folds=4, random_state=7)
    assert again == cf and np.array_equal(again.accept, cf.accept)
    other = cross_fit_thresholds(y, pp, fb, target_coverage=0.5, n_folds=4, random_state=8)
    assert not np.array_equal(other.fold_of, cf.fold_of)


def test_unreachable_target_says_what_would_be_needed():
    # 800 inputs cannot certify 99.8% of a 95% fallback with probability 0.95 (99.5% they can,
    # with the paired certificate).
    y, pp, fb = _pair(n=800, seed=5)
    cf = cross_fit_thresholds(y, pp, fb, target_relative_accuracy=0.998, delta=0.05)
    assert not cf.usable and not cf.final.feasible and np.isinf(cf.final.threshold)
    assert np.isnan(cf.final.guaranteed)  # a failed certificate reports no bound
    assert cf.needed_n is not None and cf.needed_n > 800 and 0 < cf.needed_coverage <= 1
    assert cf.certifiable is not None and cf.certifiable < 0.998
    assert "labelled inputs would certify it" in cf.advice and "loosen the target" in cf.advice
    # The estimate is honest: at that size the paired bound passes at the rates seen where the
    # suggested threshold routes (the planner's typical draw).
    from confroute.selection.paired import select_paired

    ev = evaluate(labels=y, primary=cf.final_calibrator.calibrate(pp), fallback=fb)
    accepted = ev.scores >= np.quantile(ev.scores, 1 - cf.needed_coverage, method="higher")
    assert accepted.mean() == pytest.approx(cf.needed_coverage)
    pc, fc = ev.correct[0], ev.correct[1]
    rates = [(accepted & ~pc & fc).mean(), (accepted & pc & ~fc).mean(), fc.mean()]

    def passes(size):
        L, G, F = (round(r * size) for r in rates)
        row, _ = select_paired([0, L], [0, G], size, 0.002, 0.05, kind="ratio", fallback_correct=F)
        return bool(row > 0)

    assert passes(cf.needed_n) and not passes(800)
    # A target the data can certify gets no advice.
    ok = cross_fit_thresholds(y, pp, fb, target_relative_accuracy=0.95, delta=0.05)
    assert ok.usable and ok.advice is None


def test_an_unreachable_accuracy_target_says_what_would_be_needed():
    # The Clopper-Pearson estimate for an unpaired target (system accuracy): 800 inputs cannot
    # certify a system accuracy of 95% with a 95% fallback.
    y, pp, fb = _pair(n=800, seed=5)
    cf = cross_fit_thresholds(y, pp, fb, target_system_accuracy=0.95, delta=0.05)
    assert not cf.usable and not cf.final.feasible
    assert cf.needed_n is not None and cf.needed_n > 800 and 0 < cf.needed_coverage <= 1
    assert "labelled inputs would certify it" in cf.advice and "loosen the target" in cf.advice
    # The estimate is honest: at that size every threshold from "all to the fallback" down to
    # the suggested one clears the bar at the accuracy seen (as fixed-sequence testing needs),
    # and about 5% fewer inputs would not do.
    from confroute.selection.crossfit import _lower

    ev = evaluate(labels=y, primary=cf.final_calibrator.calibrate(pp), fallback=fb)
    row = int(np.flatnonzero(np.isclose(ev.table["coverage"], cf.needed_coverage))[0])
    acc = ev.table["system_accuracy"][: row + 1]
    assert (_lower(acc, np.full(acc.shape, cf.needed_n), 0.05) >= 0.95).all()
    assert not (_lower(acc, np.full(acc.shape, int(cf.needed_n / 1.06)), 0.05) >= 0.95).all()


def test_a_target_missed_on_held_out_folds_is_reported():
    # An empirical choice at a knife-edge target: it holds on the fitting folds, not on all held-out ones.
    y, pp, fb = _pair(n=600, seed=6)
    cf = cross_fit_thresholds(y, pp, fb, target_relative_accuracy=1.0, delta=None)
    assert cf.folds_met < cf.n_folds
    if not cf.met:
        assert not cf.usable and "misses" in cf.advice


def test_to_dict_is_json_and_repr_reads():
    y, pp, fb = _pair(seed=7)
    cf = cross_fit_thresholds(y, pp, fb, target_relative_accuracy=0.97, cost_model=[1.0, 4.0])
    doc = json.loads(json.dumps(cf.to_dict()))
    assert doc["usable"] is cf.usable and len(doc["folds"]) == 5
    assert doc["final"]["threshold"] == pytest.approx(cf.final.threshold)
    assert "accept" not in doc and "final_calibrator" not in doc
    text = repr(cf)
    assert text.startswith("CrossFitResult(system / fallback accuracy >= 0.97, delta 0.05, 5 folds")
    assert text.count("\n") >= 7 and "ECE before>after" in text
    assert "CrossFittedCalibrator(5 folds on 1500 inputs; T = [" in repr(cf.oof_calibrator)


def test_no_calibrator_and_label_names():
    y, pp, fb = _pair(seed=8)
    pp = Predictions.from_logits(pp.logits, classes=["neg", "pos"])  # labels matched by class name
    names = np.array(["neg", "pos"])[y]
    cf = cross_fit_thresholds(names, pp, names[fb], target_system_accuracy=0.9, calibrator=None, delta=None)
    assert cf.oof_calibrator is None and cf.final_temperature is None
    assert all(f.temperature is None and f.ece_before == f.ece_after for f in cf.folds)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give exactly one of"),
    ({"target_accuracy": 0.9, "target_coverage": 0.5}, "give exactly one of"),
    ({"target_relative_accuracy": 1.2}, r"must lie in \(0, 1\]"),
    ({"target_accuracy": 0.9, "n_folds": 1}, "n_folds must be an integer >= 2"),
    ({"target_accuracy": 0.9, "calibrator": TemperatureScaler()}, "make a fresh calibrator"),
])
def test_bad_arguments(kwargs, message):
    y, pp, fb = _pair(n=200)
    with pytest.raises((ValueError, TypeError), match=message):
        cross_fit_thresholds(y, pp, fb, **kwargs)


def test_too_few_of_a_class_for_the_folds():
    y, pp, fb = _pair(n=200)
    y = np.zeros_like(y)
    y[:3] = 1
    with pytest.raises(ValueError, match="needs at least 5 inputs of every class present; the rarest has 3"):
        cross_fit_thresholds(y, pp, fb, target_accuracy=0.9)


def test_relative_target_needs_a_fallback_and_calibrator_rows_must_match():
    y, pp, _ = _pair(n=200)
    with pytest.raises(ValueError, match="needs the fallback's answers"):
        cross_fit_thresholds(y, pp, None, target_relative_accuracy=0.9)
    cal = cross_fit_calibration(y, pp)
    assert isinstance(cal, CrossFittedCalibrator)
    with pytest.raises(ValueError, match="applies to those inputs only"):
        cal.transform(pp.log_scores()[:10])
