"""Routing and evaluating a Hugging Face datasets.Dataset with map(batched=True)."""

from __future__ import annotations

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")

from confroute import CallablePredictor, Cascade, CostModel, ThresholdRouter, evaluate  # noqa: E402
from confroute.exceptions import ClassMismatchError  # noqa: E402
from confroute.integrations.datasets import (  # noqa: E402
    evaluate_dataset,
    predict_dataset,
    probability_columns,
    route_dataset,
)


def _cheap(texts):
    # Confident on short texts, unsure on long ones; says "pos" when the text has "good".
    rows = []
    for t in texts:
        p = 0.95 if len(t) < 12 else 0.6
        rows.append([1 - p, p] if "good" in t else [p, 1 - p])
    return np.array(rows)


def _big(texts):
    return np.array([[0.1, 0.9] if ("good" in t) != ("not" in t) else [0.9, 0.1] for t in texts])


TEXTS = ["good", "bad", "good film", "not good at all, really", "bad, bad", "a good long day out",
         "not bad in the end at all", "meh"] * 25
LABELS = [1 if ("good" in t) != ("not" in t) else 0 for t in TEXTS]


def _dataset(names=("neg", "pos")):
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=list(names))})
    return datasets.Dataset.from_dict({"text": TEXTS, "label": LABELS}, features=features)


def _router():
    return ThresholdRouter(CallablePredictor(_cheap, classes=["neg", "pos"], name="cheap"),
                           CallablePredictor(_big, classes=["neg", "pos"], name="big"), threshold=0.9,
                           cost_model=CostModel.per_sample([1.0, 10.0]), names=("cheap", "big"))


def test_route_dataset_adds_the_routed_answers_in_row_order():
    router = _router()
    routed = route_dataset(router, _dataset(), batch_size=7)  # batches that do not divide n
    direct = router.route(TEXTS)
    assert routed.num_rows == len(TEXTS)
    assert routed["text"] == TEXTS and routed["label"] == LABELS  # nothing dropped or reordered
    assert routed["route_label"] == direct.labels.tolist()
    assert routed["route_stage"] == direct.stage.tolist()  # the stage index, as everywhere
    assert routed["route_stage_name"] == [router.names[s] for s in direct.stage]
    np.testing.assert_allclose(routed["route_confidence"], direct.confidence)
    np.testing.assert_allclose(routed["route_cost"], direct.cost)
    assert routed["route_degraded"] == [False] * len(TEXTS)
    assert set(routed["route_stage_name"]) == {"cheap", "big"}
    assert routed.features["route_stage"].dtype == "int64"
    assert routed.features["route_big_label"].dtype == "string"


def test_evaluate_dataset_matches_evaluate_and_reuses_the_columns():
    router = _router()
    result, with_probs = evaluate_dataset(router, _dataset(), batch_size=16)
    direct = evaluate(router, TEXTS, np.array(["neg", "pos"], dtype=object)[LABELS], progress=False)
    for column in ("coverage", "system_accuracy", "cost"):
        np.testing.assert_allclose(result.table[column], direct.table[column])
    assert result.stage_accuracy == direct.stage_accuracy
    assert set(probability_columns(router)) <= set(with_probs.column_names)

    # Second evaluation from the stored columns: the models do not run again.
    calls = []
    silent = ThresholdRouter(
        CallablePredictor(lambda xs: calls.append(len(xs)) or _cheap(xs), classes=["neg", "pos"],
                          name="cheap"),
        CallablePredictor(_big, classes=["neg", "pos"], name="big"), threshold=0.9, names=("cheap", "big"),
    )
    again, _ = evaluate_dataset(silent, with_probs, cost_model=[1.0, 10.0])
    assert calls == []
    np.testing.assert_allclose(again.table["system_accuracy"], direct.table["system_accuracy"])


def test_class_label_is_matched_by_name_not_position():
    # Same rows, ClassLabel order reversed: index 0 is now "pos". Comparing indices would be wrong.
    flipped_labels = [1 - v for v in LABELS]
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["pos", "neg"])})
    ds = datasets.Dataset.from_dict({"text": TEXTS, "label": flipped_labels}, features=features)
    result, _ = evaluate_dataset(_router(), ds)
    straight, _ = evaluate_dataset(_router(), _dataset())
    np.testing.assert_allclose(result.table["system_accuracy"], straight.table["system_accuracy"])
    with pytest.raises(ClassMismatchError, match="negative"):
        evaluate_dataset(_router(), _dataset(names=("negative", "positive")))


def test_three_stage_cascade_and_predict_dataset():
    mid = CallablePredictor(lambda xs: np.tile([0.3, 0.7], (len(xs), 1)), classes=["neg", "pos"], name="mid")
    cascade = Cascade([CallablePredictor(_cheap, classes=["neg", "pos"], name="cheap"), mid,
                       CallablePredictor(_big, classes=["neg", "pos"], name="big")], thresholds=[0.9, 0.8])
    ds = predict_dataset(cascade, _dataset(), batch_size=50)
    assert [len(row) for row in ds["probs_mid"][:3]] == [2, 2, 2]
    result, _ = evaluate_dataset(cascade, ds, cost_model=[1.0, 2.0, 10.0], grid=5)
    assert result.n_stages == 3 and result.n == len(TEXTS)


def test_bad_input_is_named():
    router = _router()
    with pytest.raises(TypeError, match="datasets.Dataset"):
        route_dataset(router, TEXTS)
    with pytest.raises(KeyError, match="no column 'sentence'"):
        route_dataset(router, _dataset(), "sentence")
    routed = route_dataset(router, _dataset())
    with pytest.raises(ValueError, match="already has columns"):
        route_dataset(router, routed)
    with pytest.raises(TypeError, match="DatasetDict"):
        route_dataset(router, datasets.DatasetDict({"test": _dataset()}))


def test_routing_a_dataset_logs_no_hashing_warning():
    """The router cannot be hashed by ``datasets``; route_dataset/predict_dataset give the map a
    fresh fingerprint, so no "couldn't be hashed properly" warning reaches a notebook (issue 26)."""
    import logging

    from datasets import fingerprint

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(level=logging.WARNING)
    logger = logging.getLogger("datasets.fingerprint")
    logger.addHandler(handler)
    saved = dict(fingerprint.fingerprint_warnings)
    fingerprint.fingerprint_warnings.clear()  # datasets warns once per process

    router = _router()
    router.stages[0].predictor.session = (i for i in range(1))  # unpicklable, like a runtime session
    try:
        routed = route_dataset(router, _dataset(), "text")
        predict_dataset(router, _dataset(), "text")
    finally:
        logger.removeHandler(handler)
        fingerprint.fingerprint_warnings.update(saved)
    assert not [r for r in records if "couldn't be hashed" in r.getMessage()]
    assert routed.num_rows == len(TEXTS)
