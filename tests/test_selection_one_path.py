"""Issue 21, selection: one objective table, one entry point, one choice contract.

Each test here failed on the code before the issue: the old names did not warn and gave another
answer, cross-fitting turned a relative target into an unpaired one, the three choice kinds had
different attributes, and a failed certificate reported the bound of "accept nothing".
"""

from __future__ import annotations

import inspect
import json
import math
import warnings

import numpy as np
import pytest

from confroute import Predictions, choose_thresholds, evaluate
from confroute.core import decision
from confroute.core.choice import Choice
from confroute.exceptions import ThresholdWarning
from confroute.selection.choices import CascadeChoice, PerClassChoice, ThresholdChoice
from confroute.selection.crossfit import cross_fit_calibration, cross_fit_thresholds
from confroute.selection.objectives import KEYWORDS, OBJECTIVES, objective_of


def _two_stage(n: int = 4000, seed: int = 0):
    """The example of choose_thresholds' docstring."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 + (2 * y - 1) * rng.uniform(-0.2, 0.5, n), 0, 1)
    return evaluate(labels=y, primary=np.c_[1 - p, p], fallback=y, cost_model=[1.0, 10.0])


def _pair(n: int = 1500, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 6.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z / 2.0))).astype(int)
    fb = np.where(rng.random(n) < 0.95, y, 1 - y)
    return y, Predictions.from_logits(np.c_[np.zeros(n), z]), fb


# --------------------------------------------------------------------------- one objective table
def test_every_entry_point_lists_the_objectives_of_the_one_table():
    params = inspect.signature(choose_thresholds).parameters
    assert [k for k in params if k in OBJECTIVES] == list(KEYWORDS)
    # cross_fit_thresholds passes its objective keyword on: it lists none of its own.
    params = inspect.signature(cross_fit_thresholds).parameters
    assert not [k for k in params if k in OBJECTIVES]
    assert params["options"].kind is inspect.Parameter.VAR_KEYWORD
    with pytest.raises(ValueError, match="exactly one of target_accuracy, target_system_accuracy"):
        cross_fit_thresholds([0, 1] * 50, np.tile([[0.8, 0.2], [0.3, 0.7]], (50, 1)))
    with pytest.raises(TypeError, match="unexpected arguments"):
        cross_fit_thresholds([0, 1] * 50, np.tile([[0.8, 0.2], [0.3, 0.7]], (50, 1)), target_accuracy=0.9,
                             target_acuracy=0.9)
    for key, obj in OBJECTIVES.items():
        assert objective_of(key) is obj is objective_of(obj.name)
        assert obj.wording and obj.constrains and obj.certificate and obj.sense in (">=", "<=")
    # A keyword means one guarantee: the relative targets are the paired certificate.
    assert [k for k, o in OBJECTIVES.items() if o.paired] == ["target_relative_accuracy", "max_accuracy_drop"]
    assert all(OBJECTIVES[k].certificate.startswith("paired") for k in ("target_relative_accuracy",
                                                                         "max_accuracy_drop"))
    assert [k for k, o in OBJECTIVES.items() if o.needs_prices] == ["max_cost_per_input", "min_savings"]
    with pytest.raises(ValueError, match="exactly one of target_accuracy, target_system_accuracy"):
        choose_thresholds(_two_stage(200))


def test_choice_objective_and_wording_come_from_the_table():
    ev = _two_stage()
    for key, target in [("target_accuracy", 0.95), ("target_system_accuracy", 0.9), ("target_coverage", 0.3),
                        ("max_cost_per_input", 6.0), ("min_savings", 0.3), ("target_relative_accuracy", 0.97),
                        ("max_accuracy_drop", 0.03)]:
        c = choose_thresholds(ev, **{key: target}, delta=0.05)
        assert c.objective == OBJECTIVES[key].name and OBJECTIVES[key].wording in str(c)
        assert c.feasible and OBJECTIVES[key].meets(c.guaranteed, target if key != "max_accuracy_drop" else -target)


# --------------------------------------------------------------------------- one entry point
OLD_NAMES = ["choose_threshold", "choose_per_class_thresholds", "choose_cascade_thresholds", "cross_fit_threshold"]


def test_choose_threshold_warns_at_the_callers_line_and_gives_choose_thresholds_answer():
    import confroute

    ev = _two_stage()
    new = choose_thresholds(ev, target_accuracy=0.95, delta=0.05)
    with pytest.deprecated_call() as record:
        old = confroute.choose_threshold(ev, target_accuracy=0.95, delta=0.05)
    assert record[0].filename == __file__
    assert "choose_thresholds" in str(record[0].message)
    # Before issue 21 these were 0.6886 and 0.6867: two default procedures.
    assert old == new and old.procedure == "fallback"
    # From arrays: the same procedure too.
    with pytest.deprecated_call():
        arrays = confroute.choose_threshold(ev.scores, ev.primary_correct, target_accuracy=0.95, delta=0.05)
    assert arrays.threshold == new.threshold and arrays.guaranteed == new.guaranteed


def test_every_old_selection_name_warns_and_runs_the_one_path():
    from confroute.selection import _deprecated, crossfit

    ev = evaluate(labels=np.array(["a", "b", "a"] * 400),
                  primary=Predictions.from_probs(np.random.default_rng(1).dirichlet([2, 2], 1200), ["a", "b"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThresholdWarning)
        new = choose_thresholds(ev, target_accuracy=0.6, per_class=True)
        with pytest.deprecated_call():
            old = _deprecated.choose_per_class_thresholds(ev, target_accuracy=0.6)
    assert old.to_dict() == new.to_dict()
    y = np.random.default_rng(2).integers(0, 2, 600)
    stages = [np.eye(2)[np.where(np.random.default_rng(s).random(600) < q, y, 1 - y)] * 0.6 + 0.2
              for s, q in ((3, 0.7), (4, 0.8), (5, 0.95))]
    cascade = evaluate(labels=y, stages=stages, cost_model=[1.0, 2.0, 10.0], grid=4)
    with pytest.deprecated_call():
        old_c = _deprecated.choose_cascade_thresholds(cascade, target_system_accuracy=0.8, delta=None)
    assert old_c.to_dict() == choose_thresholds(cascade, target_system_accuracy=0.8, delta=None).to_dict()
    two = _two_stage(500)
    with pytest.deprecated_call():
        old_two = _deprecated.choose_cascade_thresholds(two, target_system_accuracy=0.9)
    assert old_two == choose_thresholds(two, target_system_accuracy=0.9)
    y, pp, fb = _pair(400)
    with pytest.deprecated_call():
        old_cf = crossfit.cross_fit_threshold(y, pp, fb, target_coverage=0.5)
    assert old_cf.to_dict() == cross_fit_thresholds(y, pp, fb, target_coverage=0.5).to_dict()
    for name in OLD_NAMES:
        assert "Deprecated" in getattr(_deprecated if name != "cross_fit_threshold" else crossfit, name).__doc__


def test_cross_fitting_a_relative_target_uses_the_paired_certificate_on_each_fold():
    y, pp, fb = _pair()
    cf = cross_fit_thresholds(y, pp, fb, target_relative_accuracy=0.97, delta=0.05, random_state=1)
    cal = cross_fit_calibration(y, pp, random_state=1)
    unpaired_differs = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThresholdWarning)
        for f, fitted in zip(cf.folds, cal.calibrators):
            fit, _ = cal.split(f.fold)
            ev = evaluate(labels=y[fit], primary=pp.take(fit), fallback=fb[fit], calibrator=fitted)
            paired = choose_thresholds(ev, target_relative_accuracy=0.97, delta=0.05)
            assert (f.threshold, f.procedure, f.target) == (paired.threshold, "paired_cp_losses", 0.97)
            assert f.guaranteed == paired.guaranteed
            # What the fold used to do: an unpaired target of 0.97 x the fallback's accuracy.
            goal = 0.97 * ev.stage_accuracy["fallback"]
            unpaired = choose_thresholds(ev, target_system_accuracy=goal, delta=0.05)
            unpaired_differs |= unpaired.threshold != paired.threshold
    assert unpaired_differs
    assert cf.final == choose_thresholds(
        evaluate(labels=y, primary=pp, fallback=fb, calibrator=cf.final_calibrator),
        target_relative_accuracy=0.97, delta=0.05)


# --------------------------------------------------------------------------- one choice contract
COMMON = {"thresholds": list, "feasible": bool, "guaranteed": float, "procedure": str, "objective": str,
          "target": float, "coverage": float, "system_accuracy": float, "cost_per_input": float, "savings": float,
          "assumption": str}


def _three_kinds():
    ev = _two_stage(2000)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    stages = [np.eye(2)[np.where(rng.random(2000) < q, y, 1 - y)] * 0.7 + 0.15 for q in (0.7, 0.8, 0.95)]
    cascade = evaluate(labels=y, stages=stages, grid=4)  # no prices: the cost figures are nan
    return [
        choose_thresholds(ev, target_accuracy=0.9, delta=0.05),
        choose_thresholds(ev, target_accuracy=0.9, delta=0.05, per_class=True),
        choose_thresholds(cascade, target_system_accuracy=0.8, delta=0.05),
    ]


def test_the_three_choice_kinds_expose_the_same_attributes_with_the_same_types():
    kinds = _three_kinds()
    assert [type(c) for c in kinds] == [ThresholdChoice, PerClassChoice, CascadeChoice]
    for c in kinds:
        assert isinstance(c, Choice)
        for name, kind in COMMON.items():
            assert type(getattr(c, name)) is kind, (type(c).__name__, name, type(getattr(c, name)))
        assert c.delta == 0.05 and len(c.thresholds) == 1 + isinstance(c, CascadeChoice)
        assert c.feasible and c.guaranteed >= c.target
    assert math.isnan(kinds[2].cost_per_input) and math.isnan(kinds[2].savings)  # no prices: nan, not None


def test_every_choice_round_trips_through_json():
    for c in _three_kinds():
        d = json.loads(json.dumps(c.to_dict()))
        back = type(c).from_dict(d)
        assert back.to_dict() == c.to_dict()
        if not isinstance(c, PerClassChoice):  # (arrays make dataclass equality ambiguous)
            assert back == c
        assert all(np.array_equal(a, b) for a, b in zip(back.thresholds, c.thresholds))
    # inf ("accept nothing") is null in JSON and inf again after the round trip.
    with pytest.warns(ThresholdWarning):
        nothing = choose_thresholds(_two_stage(300), target_accuracy=0.999, delta=0.05)
    back = ThresholdChoice.from_dict(json.loads(json.dumps(nothing.to_dict())))
    assert back.threshold == math.inf and math.isnan(back.guaranteed)


def test_a_failed_certificate_reports_no_bound():
    ev = _two_stage(500)
    with pytest.warns(ThresholdWarning) as record:
        system = choose_thresholds(ev, target_system_accuracy=0.9999, delta=0.05)
    assert not system.feasible and math.isnan(system.guaranteed)
    assert record[0].filename == __file__  # at the user's line, through every layer
    with pytest.warns(ThresholdWarning):
        budget = choose_thresholds(ev, max_cost_per_input=0.5, delta=0.05)
    assert not budget.feasible and math.isnan(budget.guaranteed)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    stages = [np.eye(2)[np.where(rng.random(300) < q, y, 1 - y)] * 0.7 + 0.15 for q in (0.7, 0.8, 0.9)]
    with pytest.warns(ThresholdWarning) as record:
        cascade = choose_thresholds(evaluate(labels=y, stages=stages, grid=4), target_system_accuracy=0.999)
    assert not cascade.feasible and math.isnan(cascade.guaranteed)
    assert record[0].filename == __file__
    with pytest.warns(ThresholdWarning) as record:
        paired = choose_thresholds(_two_stage(100), target_relative_accuracy=0.999, delta=0.05)
    assert not paired.feasible and math.isnan(paired.guaranteed) and record[0].filename == __file__


# --------------------------------------------------------------------------- one accept rule
def test_selection_follows_the_accept_rule(monkeypatch):
    """With a strict rule (``>``) on scores full of ties, every choice's figures are those of
    Evaluation.at at the chosen threshold, and cross-fitting decides with the same rule."""
    rng = np.random.default_rng(4)
    n = 3000
    scores = rng.integers(50, 101, n) / 100  # 51 distinct values: ties everywhere
    correct = rng.random(n) < scores
    ev = evaluate(labels=np.zeros(n, int), primary=np.where(correct, 0, 1), scores=scores,
                  fallback=np.zeros(n, int), cost_model=[1.0, 10.0])

    def strict(s, predicted_index, threshold):
        return np.asarray(s, dtype=np.float64) > float(threshold)

    monkeypatch.setattr(decision, "accepts", strict)
    for kw in ({"target_accuracy": 0.9}, {"target_coverage": 0.4}, {"target_relative_accuracy": 0.95},
               {"max_cost_per_input": 6.0}):
        c = choose_thresholds(ev, **kw, delta=0.05)
        assert c.feasible and c.threshold in set(scores.tolist())  # a strict rule accepts above a score
        point = ev.at(c)
        assert point.coverage == pytest.approx(c.coverage) == pytest.approx((scores > c.threshold).mean())
        assert point.cost_per_input == pytest.approx(c.cost_per_input)


def test_selection_prices_through_the_cost_model(monkeypatch):
    """Replacing CostModel.per_input (the one home of per-input cost) changes every cost figure
    and every cost-constrained choice."""
    from confroute.core.cost import CostModel

    ev = _two_stage(1000)
    before = choose_thresholds(ev, target_coverage=0.5, delta=None)
    budget = choose_thresholds(ev, max_cost_per_input=6.0, delta=None)
    original = CostModel.per_input
    monkeypatch.setattr(CostModel, "per_input", lambda self, reached: 2.0 * original(self, reached))
    after = choose_thresholds(ev, target_coverage=0.5, delta=None)
    assert after.threshold == before.threshold and after.cost_per_input == pytest.approx(2 * before.cost_per_input)
    doubled = choose_thresholds(ev, max_cost_per_input=12.0, delta=None)
    assert doubled.threshold == budget.threshold and doubled.cost_per_input == pytest.approx(12.0, abs=0.02)


def test_cross_fitting_follows_the_accept_rule(monkeypatch):
    """Cross-fitted decisions come from the rule too: with ``>`` and tied scores, an input whose
    score equals its fold's threshold is deferred."""
    rng = np.random.default_rng(6)
    n = 1200
    z = np.round(rng.normal(0.0, 4.0, n))  # few distinct logits: ties across folds
    y = (rng.random(n) < 1 / (1 + np.exp(-z / 2.0))).astype(int)
    fb = np.where(rng.random(n) < 0.95, y, 1 - y)
    pp = Predictions.from_logits(np.c_[np.zeros(n), z])

    def strict(s, predicted_index, threshold):
        return np.asarray(s, dtype=np.float64) > float(threshold)

    monkeypatch.setattr(decision, "accepts", strict)
    cf = cross_fit_thresholds(y, pp, fb, target_coverage=0.4, delta=None, calibrator=None)
    scores = pp.probs.max(axis=1)
    at_threshold = 0
    for f in cf.folds:
        held = cf.fold_of == f.fold
        assert np.array_equal(cf.accept[held], scores[held] > f.threshold)
        at_threshold += int((scores[held] == f.threshold).sum())
    assert at_threshold > 0  # ties at the threshold exist, so ">=" would have decided otherwise
