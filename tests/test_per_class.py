"""Per-class thresholds: each class meets its target; the router takes them; global vs per-class."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from confroute import CallablePredictor, Predictions, ThresholdRouter, choose_thresholds
from confroute.evaluation.evaluate import evaluate
from confroute.exceptions import ThresholdWarning
from confroute.selection.per_class import compare_thresholds, select_per_class

from _selection import choose


def three_classes(n, seed):
    """Predicted class 2 is hard (right less often at the same confidence), class 0 easy."""
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, 3, n)
    conf = rng.uniform(0.4, 1.0, n)
    penalty = np.array([0.0, 0.05, 0.1])
    right = rng.random(n) < conf - penalty[pred]
    y = np.where(right, pred, (pred + rng.integers(1, 3, n)) % 3)
    probs = np.repeat(((1 - conf) / 2)[:, None], 3, axis=1)
    probs[np.arange(n), pred] = conf
    return y, probs


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("delta", [None, 0.05])
def test_each_class_meets_target_on_its_calibration_data(seed, delta):
    y, probs = three_classes(4000, seed)
    pred, score = probs.argmax(1), probs.max(1)
    correct = pred == y
    target = 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThresholdWarning)
        c = choose_thresholds(evaluate(labels=y, primary=probs), target_accuracy=target, delta=delta, per_class=True)
    assert c.level == (None if delta is None else delta / 3)
    for k in range(3):
        acc = score >= c.threshold[k]
        sel = (pred == k) & acc
        if c.class_feasible[k]:
            assert correct[sel].mean() >= target
            # It is the loosest such threshold on this data under the same per-class test.
            ref = choose(score[pred == k], correct[pred == k], target_accuracy=target,
                         delta=None if delta is None else delta / 3, method="multistart")
            assert c.threshold[k] == ref.threshold
            if delta is not None:
                assert c.choices[k].guaranteed >= target
        else:
            assert np.isposinf(c.threshold[k]) and not sel.any()
    assert c.feasible == bool(c.class_feasible.all())
    assert c.feasible or delta is not None


def test_per_class_beats_global_on_the_hard_class_and_the_router_uses_it():
    y, probs = three_classes(6000, 11)
    pred, score = probs.argmax(1), probs.max(1)
    correct = pred == y
    g = choose(score, correct, target_accuracy=0.8, delta=0.05, method="multistart")
    named = evaluate(labels=np.array(["a", "b", "c"])[y], primary=Predictions.from_probs(probs, ["a", "b", "c"]))
    pc = choose_thresholds(named, target_accuracy=0.8, delta=0.05, per_class=True)
    assert pc.classes == ("a", "b", "c")
    fallback = y  # an oracle fallback
    res = evaluate(labels=y, primary=probs, fallback=fallback, cost_model=[1.0, 10.0],
                   per_class_thresholds=pc.threshold)
    cmp = compare_thresholds(res, {"global": g.threshold, "per-class": pc})
    gacc = cmp.by_class["global"]["accepted_accuracy"]
    pacc = cmp.by_class["per-class"]["accepted_accuracy"]
    # One global threshold lets the easy classes subsidise the hard one...
    assert gacc[2] < 0.8 and cmp.overall["global"].accepted_accuracy >= 0.8
    # ...per-class thresholds hold every class to the target and accept more of the easy class.
    assert (pacc >= 0.8).all()
    assert cmp.by_class["per-class"]["coverage"][0] > cmp.by_class["global"]["coverage"][0]
    assert res.per_class.to_dict() == res.at(pc.threshold).to_dict() == cmp.overall["per-class"].to_dict()
    assert "per-class" in repr(res) and "per-class" in repr(cmp)
    assert len(cmp.to_pandas()) == 2 * 4
    json.dumps(cmp.to_dict())
    json.dumps(pc.to_dict())
    # The router takes the choice as it is (array or name mapping) and routes exactly like at().
    primary = CallablePredictor(lambda idx: probs[np.asarray(idx)], classes=["a", "b", "c"])
    oracle = CallablePredictor(lambda idx: np.eye(3)[y[np.asarray(idx)]], classes=["a", "b", "c"])
    for thr in (pc, pc.as_dict()):
        routed = ThresholdRouter(primary, oracle, threshold=thr).route(np.arange(y.size))
        assert routed.coverage == pytest.approx(res.per_class.coverage)
        assert np.mean(routed.label_index == y) == pytest.approx(res.per_class.system_accuracy)
        assert np.mean(routed.labels == np.array(["a", "b", "c"])[y]) == pytest.approx(res.per_class.system_accuracy)


def test_infeasible_class_gets_upper_and_a_warning():
    rng = np.random.default_rng(0)
    score = rng.uniform(0.5, 1.0, 400)
    pred = np.repeat([0, 1], 200)
    correct = np.where(pred == 0, rng.random(400) < 0.99, rng.random(400) < 0.5)
    with pytest.warns(ThresholdWarning, match=r"classes \['y'\]"):
        c = select_per_class(score, pred, correct, 0.9, classes=["x", "y", "z"])
    assert c.class_feasible.tolist() == [True, False, False] and c.feasible is False
    assert np.isposinf(c.threshold[1]) and np.isposinf(c.threshold[2]) and c.choices[2] is None
    assert c.n_predicted.tolist() == [200, 200, 0]
    assert c.level == pytest.approx(0.05 / 2)  # two classes were tested
    assert "target not reachable" in repr(c)
    with pytest.warns(ThresholdWarning):
        none = select_per_class(score, pred, correct, 0.9, correction="none", n_classes=2)
    assert none.level == 0.05


def test_errors():
    with pytest.raises(ValueError, match="same shape"):
        select_per_class([0.5, 0.6], [0], [True, False], 0.9)
    with pytest.raises(ValueError, match="integers"):
        select_per_class([0.5], [0.0], [True], 0.9)
    with pytest.raises(ValueError, match="out of range"):
        select_per_class([0.5], [3], [True], 0.9, n_classes=2)
    # Predicted labels given as a vector are matched to the classes, so per-class thresholds
    # work on them; a threshold count that does not match the classes is an error.
    res = evaluate(labels=[0, 1], primary=np.array([0, 1]), scores=[0.5, 0.6])
    assert res.at([[0.5, 0.7]]).coverage == 0.5
    with pytest.raises(ValueError, match="3 per-class thresholds for 2 classes"):
        res.at([[0.5, 0.5, 0.5]])


def test_infeasible_class_refuses_even_a_score_of_exactly_one():
    """Issue 24: a class with no feasible threshold got 1.0, so a score of exactly 1.0 was still
    accepted for it; it gets inf (nothing accepted), which survives JSON and routing."""
    import json

    from confroute.selection.choices import PerClassChoice

    rng = np.random.default_rng(1)
    score = np.concatenate([rng.uniform(0.5, 1.0, 300), np.ones(100)])
    pred = np.repeat([0, 1], 200)
    correct = np.where(pred == 0, True, rng.random(400) < 0.3)
    with pytest.warns(ThresholdWarning, match="threshold inf"):
        c = select_per_class(score, pred, correct, 0.9, classes=["x", "y"])
    assert c.class_feasible.tolist() == [True, False]
    assert np.isposinf(c.threshold[1])
    back = PerClassChoice.from_dict(json.loads(json.dumps(c.to_dict(), allow_nan=False)))
    assert np.isposinf(back.threshold[1])
    primary = CallablePredictor(lambda xs: np.tile([0.0, 1.0], (len(xs), 1)), classes=["x", "y"], name="p")
    oracle = CallablePredictor(lambda xs: np.tile([1.0, 0.0], (len(xs), 1)), classes=["x", "y"], name="o")
    for thr in (c, back, c.as_dict()):
        routed = ThresholdRouter(primary, oracle, threshold=thr).route(["a", "b"])
        assert routed.stage.tolist() == [1, 1]  # a prediction of exactly 1.0 for 'y' is not accepted
