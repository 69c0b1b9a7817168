"""Routing: who answers what, in which order, and which stage saw which inputs."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import SpyPredictor, binary

from confroute import Cascade, CostModel, Fallback, PredictionError, Predictions, ThresholdRouter

CLASSES = ["neg", "pos"]


def make_pair(primary_p, fallback_p):
    primary = SpyPredictor(lambda x: binary(primary_p[x]), CLASSES, "primary")
    fallback = SpyPredictor(lambda x: binary(fallback_p[x]), CLASSES, "fallback")
    return primary, fallback


def test_two_stage_routing_hand_computed():
    # input -> P(pos) from the primary; confidence = max(p, 1-p)
    primary_p = {"a": 0.95, "b": 0.55, "c": 0.10, "d": 0.70, "e": 0.20}
    fallback_p = {"a": 0.0, "b": 0.9, "c": 0.0, "d": 0.1, "e": 0.0}
    primary, fallback = make_pair(primary_p, fallback_p)
    router = ThresholdRouter(primary, fallback, threshold=0.8)
    result = router.route(["a", "b", "c", "d", "e"])

    # confidences: a .95 ✓, b .55 ✗, c .90 ✓, d .70 ✗, e .80 ✓ (boundary: accepted)
    assert result.stage.tolist() == [0, 1, 0, 1, 0]
    assert result.labels.tolist() == ["pos", "pos", "neg", "neg", "neg"]
    assert result.label_index.tolist() == [1, 1, 0, 0, 0]
    np.testing.assert_allclose(result.confidence, [0.95, 0.9, 0.9, 0.9, 0.8])
    assert primary.calls == [["a", "b", "c", "d", "e"]]
    assert fallback.calls == [["b", "d"]]  # once, exactly the deferred inputs, in order
    assert result.coverage == pytest.approx(0.6)
    assert result.routed_fraction == pytest.approx(0.4)
    assert result.stage_label_index.tolist() == [[1, 1, 0, 1, 0], [-1, 1, -1, 0, -1]]
    assert result.stage_labels.tolist() == [["pos", "pos", "neg", "pos", "neg"], [None, "pos", None, "neg", None]]
    assert result.reached.sum(axis=1).tolist() == [5, 2]
    assert not result.degraded.any()


def test_threshold_boundary_both_sides():
    primary, fallback = make_pair({"x": 0.8}, {"x": 0.0})
    assert ThresholdRouter(primary, fallback, threshold=0.8).route(["x"]).stage.tolist() == [0]
    assert ThresholdRouter(primary, fallback, threshold=np.nextafter(0.8, 1)).route(["x"]).stage.tolist() == [1]


def test_threshold_zero_and_one():
    primary, fallback = make_pair({"x": 0.99, "y": 0.5}, {"x": 0.0, "y": 0.0})
    assert ThresholdRouter(primary, fallback, threshold=0.0).route(["x", "y"]).stage.tolist() == [0, 0]
    assert ThresholdRouter(primary, fallback, threshold=1.0).route(["x", "y"]).stage.tolist() == [1, 1]
    assert fallback.calls[-1] == ["x", "y"]


def test_fallback_not_called_when_nothing_deferred():
    primary, fallback = make_pair({"x": 0.99}, {"x": 0.0})
    ThresholdRouter(primary, fallback, threshold=0.5).route(["x"])
    assert fallback.calls == []


def test_empty_batch_calls_no_model():
    primary, fallback = make_pair({}, {})
    result = ThresholdRouter(primary, fallback).route([])
    assert len(result) == 0 and primary.calls == [] and fallback.calls == []
    assert result.classes == ("neg", "pos")


def test_three_stage_cascade_hand_computed():
    p1 = SpyPredictor({1: binary(0.95), 2: binary(0.6), 3: binary(0.3), 4: binary(0.5)}, CLASSES, "s1")
    p2 = SpyPredictor({2: binary(0.85), 3: binary(0.4), 4: binary(0.75)}, CLASSES, "s2")
    p3 = SpyPredictor({3: binary(0.2), 4: binary(0.9)}, CLASSES, "s3")
    cm = CostModel.per_sample([1.0, 10.0, 100.0])
    result = Cascade([p1, p2, p3], thresholds=[0.9, 0.8], cost_model=cm).route([1, 2, 3, 4])
    assert p1.calls == [[1, 2, 3, 4]] and p2.calls == [[2, 3, 4]] and p3.calls == [[3, 4]]
    assert result.stage.tolist() == [0, 1, 2, 2]
    assert result.labels.tolist() == ["pos", "pos", "neg", "pos"]
    assert result.cost.tolist() == [1.0, 11.0, 111.0, 111.0]
    assert result.total_cost == 234.0
    assert result.stage_counts == {"s1": 1, "s2": 1, "s3": 2, "abstained": 0}


def test_per_class_thresholds_by_index_and_name():
    primary, fallback = make_pair({"a": 0.85, "b": 0.15, "c": 0.95}, {"a": 0.0, "b": 1.0, "c": 0.0})
    # pos needs 0.9, neg needs 0.8: a (pos .85) deferred, b (neg .85) kept, c (pos .95) kept
    for thr in ([0.8, 0.9], {"neg": 0.8, "pos": 0.9}):
        result = ThresholdRouter(primary, fallback, threshold=thr).route(["a", "b", "c"])
        assert result.stage.tolist() == [1, 0, 0]


def test_classes_aligned_by_name_when_order_differs():
    primary = SpyPredictor(lambda x: [0.4, 0.6], ["neg", "pos"], "p")
    fallback = SpyPredictor(lambda x: [0.9, 0.1], ["pos", "neg"], "f")  # says "pos"
    result = ThresholdRouter(primary, fallback, threshold=0.9).route(["x"])
    assert result.labels.tolist() == ["pos"]


def test_mismatched_class_names_are_an_error():
    primary = SpyPredictor(lambda x: [0.4, 0.6], ["neg", "pos"], "p")
    fallback = SpyPredictor(lambda x: [0.9, 0.1], ["negative", "positive"], "f")
    with pytest.raises(PredictionError, match="cannot be matched by name"):
        ThresholdRouter(primary, fallback, threshold=0.9).route(["x"])


def test_class_count_mismatch_is_an_error():
    primary = SpyPredictor(lambda x: [0.4, 0.6], None, "p")
    fallback = SpyPredictor(lambda x: [0.2, 0.3, 0.5], None, "f")
    with pytest.raises(PredictionError, match="returns 3 classes but earlier stages return 2"):
        ThresholdRouter(primary, fallback, threshold=0.9).route(["x"])


def test_fallback_wrong_count_is_a_clear_error():
    primary, _ = make_pair({"a": 0.5, "b": 0.5}, {})
    bad = Fallback(lambda xs: np.array([[0.5, 0.5]]))  # always one row
    with pytest.raises(PredictionError, match="returned 1 predictions for 2 inputs"):
        ThresholdRouter(primary, bad, threshold=0.9).route(["a", "b"])


def test_order_preserved_on_numpy_inputs_and_large_random_batch():
    rng = np.random.default_rng(0)
    xs = rng.uniform(size=500)
    primary = SpyPredictor(lambda x: binary(x), CLASSES, "p", batch_size=64)
    fallback = SpyPredictor(lambda x: binary(1.0 if x > 0.5 else 0.0), CLASSES, "f", batch_size=7)
    result = ThresholdRouter(primary, fallback, threshold=0.75).route(xs)
    conf = np.maximum(xs, 1 - xs)
    np.testing.assert_array_equal(result.stage, np.where(conf >= 0.75, 0, 1))
    np.testing.assert_array_equal(result.label_index, (xs > 0.5).astype(int))
    deferred = [x for b in fallback.calls for x in b]
    np.testing.assert_array_equal(deferred, xs[conf < 0.75])


def test_calibrator_changes_routing():
    class Sharpen:  # temperature 0.5 on log-probs
        def transform(self, z):
            z = z / 0.5
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)

    primary, fallback = make_pair({"x": 0.75}, {"x": 0.0})
    assert ThresholdRouter(primary, fallback, 0.8).route(["x"]).stage.tolist() == [1]
    routed = ThresholdRouter(primary, fallback, 0.8, calibrator=Sharpen()).route(["x"])
    # 0.75^2 / (0.75^2 + 0.25^2) = 0.9
    assert routed.stage.tolist() == [0]
    assert routed.confidence[0] == pytest.approx(0.9)


@pytest.mark.parametrize("score,expected", [("margin", [0, 1]), ("neg_entropy", [1, 1])])
def test_other_scores(score, expected):
    primary, fallback = make_pair({"x": 0.95, "y": 0.7}, {"x": 0.0, "y": 0.0})
    # margin .9 / .4; entropy score of .95 is 1 - H(.95)/ln2 = 0.714
    result = ThresholdRouter(primary, fallback, 0.8, score=score).route(["x", "y"])
    assert result.stage.tolist() == expected


def test_callable_score_and_prediction_score():
    primary, fallback = make_pair({"long text": 0.6, "s": 0.6}, {"long text": 0.0, "s": 1.0})

    class LengthJudge:
        def score_predictions(self, predictions, inputs):
            return np.array([1.0 if len(x) > 3 else 0.0 for x in inputs])

    result = ThresholdRouter(primary, fallback, 0.5, score=LengthJudge()).route(["long text", "s"])
    assert result.stage.tolist() == [0, 1]
    result = ThresholdRouter(primary, fallback, 0.5, score=lambda p: p[:, 1]).route(["long text"])
    assert result.stage.tolist() == [0]


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), [0.5, 2.0]])
def test_threshold_outside_score_range(bad):
    primary, fallback = make_pair({}, {})
    with pytest.raises(ValueError, match="must lie in the score's range"):
        ThresholdRouter(primary, fallback, threshold=bad)


def test_wrong_number_of_thresholds_and_names():
    p, f = make_pair({}, {})
    with pytest.raises(ValueError, match="3 stages need 2 threshold"):
        Cascade([p, f, f], thresholds=[0.5])
    with pytest.raises(ValueError, match="distinct stage names"):
        Cascade([p, f], thresholds=[0.5], names=["a", "a"])


def test_per_class_threshold_size_checked_at_route_time():
    primary, fallback = make_pair({"x": 0.5}, {"x": 0.5})
    with pytest.raises(ValueError, match="3 per-class thresholds for 2 classes"):
        ThresholdRouter(primary, fallback, threshold=[0.5, 0.5, 0.5]).route(["x"])


def test_single_string_is_rejected():
    primary, fallback = make_pair({}, {})
    with pytest.raises(TypeError, match="not a single string"):
        ThresholdRouter(primary, fallback).route("hello")


def test_stage_predictions_run_each_stage_once_on_all_inputs():
    primary, fallback = make_pair({"a": 0.9, "b": 0.4}, {"a": 0.2, "b": 0.7})
    router = ThresholdRouter(primary, fallback, 0.8)
    preds = router.stage_predictions(["a", "b"])
    assert primary.calls == [["a", "b"]] and fallback.calls == [["a", "b"]]
    assert [p.label_index.tolist() for p in preds] == [[1, 0], [0, 1]]
    assert [p.labels.tolist() for p in preds] == [["pos", "neg"], ["neg", "pos"]]
    np.testing.assert_allclose(router.stage_score(0, preds[0], ["a", "b"]), [0.9, 0.6])


def test_result_tables_and_concat():
    pd = pytest.importorskip("pandas")
    primary, fallback = make_pair({"a": 0.9, "b": 0.4}, {"a": 0.2, "b": 0.7})
    router = ThresholdRouter(primary, fallback, 0.8, cost_model=CostModel.per_sample([1, 5]))
    r1, r2 = router.route(["a"]), router.route(["b"])
    joined = type(r1).concat([r1, r2])
    assert joined.stage.tolist() == [0, 1] and joined.total_cost == 7.0
    df = joined.to_pandas()
    assert isinstance(df, pd.DataFrame) and df["stage_name"].tolist() == ["primary", "fallback"]
    import json

    d = json.loads(json.dumps(joined.to_dict()))
    assert d["rows"][1]["label"] == "pos" and d["rows"][1]["label_index"] == 1 and d["total_cost"] == 7.0
    assert "primary" in repr(joined) and "50.0%" in repr(joined)


def test_predictions_validation_messages():
    with pytest.raises(PredictionError, match="do not sum to 1"):
        Predictions.from_probs([[0.5, 0.6]])
    with pytest.raises(PredictionError, match="non-finite"):
        Predictions.from_probs([[np.nan, 1.0]])
    with pytest.raises(PredictionError, match=r"shape \(2,\)"):
        Predictions.from_probs([0.5, 0.5])
    with pytest.raises(PredictionError, match="names 3 classes"):
        Predictions.from_probs([[0.5, 0.5]], classes=["a", "b", "c"])
    with pytest.raises(PredictionError, match="outside \\[0, 1\\]"):
        Predictions.from_probs([[2.0, -1.0]])


def test_thresholds_are_read_through_the_one_unwrap():
    from confroute.core.choice import Choice

    primary_p = {"a": 0.95, "b": 0.55}
    primary, fallback = make_pair(primary_p, {"a": 0.0, "b": 0.9})

    class Picked(Choice):
        thresholds = [0.5]

    router = ThresholdRouter(primary, fallback, Picked())
    assert router.thresholds == [0.5] and router.route(["a", "b"]).stage.tolist() == [0, 0]
    router.thresholds = Picked()
    assert router.with_thresholds(Picked()).threshold == 0.5

    class Table:  # an evaluation or a sweep: one threshold per table row, not per stage
        row_thresholds = np.array([np.inf, 0.9, 0.5])

    with pytest.raises(TypeError, match="one threshold per table row"):
        ThresholdRouter(primary, fallback, Table())
    with pytest.raises(TypeError, match="one threshold per table row"):
        router.thresholds = Table()
    with pytest.raises(TypeError, match="one threshold per table row"):
        Cascade([primary, fallback], Table())

    import confroute

    evaluation = confroute.evaluate(router, ["a", "b"], ["pos", "pos"], progress=False)
    with pytest.raises(TypeError, match="one threshold per table row"):
        ThresholdRouter(primary, fallback, evaluation)
    with pytest.raises(TypeError, match="one threshold per table row"):
        router.thresholds = evaluation
    assert router.thresholds == [0.5]  # unchanged


def test_label_names_is_a_warned_alias():
    primary, fallback = make_pair({"a": 0.95}, {"a": 0.0})
    result = ThresholdRouter(primary, fallback, threshold=0.8).route(["a"])
    with pytest.deprecated_call(match="RoutingResult.labels"):
        assert result.label_names.tolist() == ["pos"]
    with pytest.deprecated_call(match="Predictions.labels"):
        assert Predictions.from_probs([[0.2, 0.8]], classes=[3, 7]).label_names.tolist() == ["7"]
