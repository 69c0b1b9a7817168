"""Issue 24 (low): selection on raw score arrays refuses non-finite scores up front (routing
refuses them later, so a threshold chosen on them could never be used)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from confroute.selection.accepted import certify_accepted_accuracy
from confroute.selection.objectives import OBJECTIVES
from confroute.selection.per_class import select_per_class
from confroute.selection.two_stage import select_threshold


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_selection_on_raw_scores_refuses_non_finite_scores(bad):
    scores = np.r_[bad, np.linspace(0.0, 1.0, 99)]
    correct = np.ones(100, dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"score is not finite for input 0|scores contain NaN"):
            select_threshold(scores, correct, objective=OBJECTIVES["target_accuracy"], target=0.8, delta=None)
        with pytest.raises(ValueError, match=r"score is not finite for input 0|scores contain NaN"):
            select_per_class(scores, np.zeros(100, dtype=np.int64), correct, 0.8, delta=None)
        with pytest.raises(ValueError, match=r"score is not finite for input 0|scores contain NaN"):
            certify_accepted_accuracy(scores, correct, target=0.8)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_betting_on_tiny_calibration_sets_gives_a_clear_result(n):
    rng = np.random.default_rng(n)
    scores, correct = rng.random(n), rng.random(n) < 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cert = certify_accepted_accuracy(scores, correct, target=0.8, method="betting")
        choice = select_threshold(scores, correct, objective=OBJECTIVES["target_accuracy"], target=0.8,
                                  method="betting")
    assert not cert.certified and cert.reason
    assert not choice.feasible and np.isposinf(choice.threshold)
