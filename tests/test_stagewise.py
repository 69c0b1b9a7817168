"""Routing stage by stage (what the Ray path does per batch) equals ``router.route``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from _routing_cases import ROUTERS, features, two_stage
from confroute import CallablePredictor, Predictions, PredictionError, ThresholdRouter
from confroute.routing.stagewise import RowState, advance, route_stagewise, to_routing_result
from confroute.integrations.frames import result_column_names, route_dataframe


# Scores may differ in the last bit: a model's float results can depend on how many rows share
# its batch (BLAS kernels), and stage-wise routing batches rows differently from ``route``.
CLOSE = dict(rtol=1e-12, atol=1e-15)


def assert_same_result(a, b):
    np.testing.assert_array_equal(a.label_index, b.label_index)
    np.testing.assert_array_equal(a.stage, b.stage)
    np.testing.assert_allclose(a.confidence, b.confidence, **CLOSE)
    np.testing.assert_array_equal(a.stage_labels, b.stage_labels)
    np.testing.assert_allclose(a.stage_scores, b.stage_scores, **CLOSE)
    np.testing.assert_array_equal(a.reached, b.reached)
    np.testing.assert_array_equal(a.degraded, b.degraded)
    assert a.errors.tolist() == b.errors.tolist()
    assert a.classes == b.classes
    if a.cost is None:
        assert b.cost is None
    else:
        np.testing.assert_allclose(a.cost, b.cost, **CLOSE)


@pytest.mark.parametrize("case", sorted(ROUTERS))
@pytest.mark.parametrize("batch_size", [None, 1, 37])
def test_stagewise_equals_route(case, batch_size):
    router = ROUTERS[case]()
    X, _ = features(300, seed=7)
    expected = router.route(X)
    got = to_routing_result(router, route_stagewise(router, X, batch_size=batch_size))
    assert_same_result(got, expected)


def test_cases_exercise_every_branch():
    X, _ = features(300, seed=7)
    keep = ROUTERS["two_stage_keep_previous"]().route(X)
    abstain = ROUTERS["two_stage_abstain"]().route(X)
    three = ROUTERS["three_stage"]().route(X)
    # Some rows answered by each stage, some fallback failures kept the primary's answer ...
    assert 0 < keep.coverage < 1
    assert keep.degraded.sum() > 0 and (keep.stage[keep.degraded] == 0).all()
    # ... or were abstained on.
    assert (abstain.label_index[abstain.degraded] == -1).all() and abstain.degraded.sum() > 0
    assert set(three.stage.tolist()) == {-1, 0, 1, 2}


def test_failure_at_first_stage_abstains():
    def flaky(xs):
        xs = np.asarray(xs, dtype=float)
        if (xs < 0).any():
            raise RuntimeError("negative input")
        return np.column_stack([1 - xs, xs])

    from confroute import Fallback

    router = ThresholdRouter(
        Fallback(CallablePredictor(flaky, classes=["a", "b"]), on_error="keep_previous",
                 split_on_failure=True),
        CallablePredictor(lambda xs: np.tile([0.3, 0.7], (len(xs), 1)), classes=["a", "b"]),
        threshold=0.9,
    )
    xs = np.array([0.95, -1.0, 0.5, 0.01])
    expected = router.route(xs)
    got = to_routing_result(router, route_stagewise(router, xs, batch_size=2))
    assert_same_result(got, expected)
    assert got.label_index.tolist() == [1, -1, 1, 0] and got.stage.tolist() == [0, -1, 1, 0]


def test_undeclared_class_names_are_refused():
    named = CallablePredictor(
        lambda xs: Predictions.from_probs(np.tile([0.6, 0.4], (len(xs), 1)), ["x", "y"])
    )
    router = ThresholdRouter(named, lambda xs: np.tile([0.5, 0.5], (len(xs), 1)), threshold=0.9)
    with pytest.raises(PredictionError, match="declare them"):
        route_stagewise(router, [1, 2])


def test_class_count_mismatch_is_an_error_without_names():
    router = ThresholdRouter(
        lambda xs: np.tile([0.6, 0.4], (len(xs), 1)),
        lambda xs: np.tile([0.2, 0.3, 0.5], (len(xs), 1)),
        threshold=0.9,
    )
    with pytest.raises(PredictionError, match="returns 3 classes but earlier stages return 2"):
        route_stagewise(router, [1, 2])
    with pytest.raises(PredictionError, match="returns 3 classes but earlier stages return 2"):
        router.route([1, 2])


def test_advance_on_empty_batch():
    router = two_stage()
    state, defer = advance(router, 0, np.zeros((0, 3)), RowState.initial(2, 0))
    assert len(state) == 0 and defer.shape == (0,)


@pytest.mark.parametrize("kind", ["pandas", "arrow"])
def test_route_dataframe_matches_route(kind):
    router = two_stage("abstain")
    X, _ = features(50, seed=3)
    df = pd.DataFrame({"f0": X[:, 0], "f1": X[:, 1], "f2": X[:, 2], "keep": np.arange(50)})
    df.index = np.arange(100, 150)
    table = df if kind == "pandas" else pa.Table.from_pandas(df, preserve_index=False)
    out = route_dataframe(table, router, feature_columns=["f0", "f1", "f2"])
    out = out if kind == "pandas" else out.to_pandas()
    expected = router.route(X)
    assert list(out.columns) == ["f0", "f1", "f2", "keep"] + result_column_names(router.names, True)
    assert out["keep"].tolist() == list(range(50))
    if kind == "pandas":
        assert out.index.tolist() == list(range(100, 150))
    np.testing.assert_array_equal(out["label_index"].to_numpy(), expected.label_index)
    labels = [None if v is None or v != v else v for v in out["label"].tolist()]
    assert labels == expected.labels.tolist()
    np.testing.assert_array_equal(out["stage"].to_numpy(), expected.stage)
    np.testing.assert_array_equal(out["cost"].to_numpy(), expected.cost)
    np.testing.assert_array_equal(out["primary_score"].to_numpy(), expected.stage_scores[0])
    errors = [None if v is None or v != v else v for v in out["error"].tolist()]
    assert errors == expected.errors.tolist() and any(errors)


def test_route_dataframe_text_column_and_errors():
    router = ThresholdRouter(
        CallablePredictor(lambda xs: np.array([[1 - len(x) / 10, len(x) / 10] for x in xs]),
                          classes=["s", "l"]),
        CallablePredictor(lambda xs: np.tile([0.5, 0.5], (len(xs), 1)), classes=["s", "l"]),
        threshold=0.75,
    )
    df = pd.DataFrame({"text": ["a", "abcdefghi", "abcde"]})
    out = route_dataframe(df, router, text_column="text")
    assert out["stage"].tolist() == [0, 0, 1]
    assert out["label"].tolist() == ["s", "l", "s"]
    with pytest.raises(ValueError, match="exactly one of"):
        route_dataframe(df, router)
    with pytest.raises(KeyError, match="not found"):
        route_dataframe(df, router, text_column="nope")
    # A table with its own label column keeps it; the result columns are then prefixed route_.
    own = route_dataframe(df.assign(label=[1, 0, 1]), router, text_column="text")
    assert own["label"].tolist() == [1, 0, 1]
    assert own["route_label"].tolist() == ["s", "l", "s"] and own["route_stage"].tolist() == [0, 0, 1]
    assert "stage" not in own.columns
    named = route_dataframe(df, router, text_column="text", prefix="pred_")
    assert named["pred_label"].tolist() == ["s", "l", "s"] and "label" not in named.columns
    with pytest.raises(ValueError, match=r"already has column\(s\) \['label'\].*another prefix="):
        route_dataframe(df.assign(label=1), router, text_column="text", prefix="")
    with pytest.raises(ValueError, match=r"already has column\(s\) \['route_label'\]"):
        route_dataframe(df.assign(label=1, route_label=2), router, text_column="text")
    pa = pytest.importorskip("pyarrow")
    table = route_dataframe(pa.table({"text": ["a", "abcdefghi"], "label": [1, 0]}), router, text_column="text")
    assert table.column("label").to_pylist() == [1, 0]
    assert table.column("route_stage").to_pylist() == [0, 0]
