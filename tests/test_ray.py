"""The Ray path gives what the in-memory path gives, on a local 2-CPU Ray instance.

One Ray instance serves the whole module (Ray takes seconds to start); every test routes a few
hundred rows, so the time goes to Ray's own start-up of actors, not to the models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ray", reason="the Ray tests need Ray Data: pip install 'confroute[ray]'")

import _routing_cases  # noqa: E402
from _ray_helpers import assert_same_routing, floats, local_ray  # noqa: E402
from _routing_cases import ROUTERS, features, three_stage, two_stage  # noqa: E402

import confroute  # noqa: E402
from confroute import CallablePredictor, CircuitBreaker, Fallback, ThresholdRouter  # noqa: E402
from confroute.integrations.frames import result_column_names, route_dataframe  # noqa: E402
from confroute.integrations.ray import collect_stage_arrays, evaluate_dataset, route_dataset  # noqa: E402

FEATURES = ["f0", "f1", "f2"]


@pytest.fixture(scope="module")
def ray_local():
    yield from local_ray(_routing_cases)


def frame(n: int, seed: int) -> pd.DataFrame:
    X, y = features(n, seed)
    return pd.DataFrame({"f0": X[:, 0], "f1": X[:, 1], "f2": X[:, 2], "y": y})


def dataset(ray, df: pd.DataFrame, blocks: int = 4):
    # Several blocks, so that rows are spread over tasks and batches.
    size = -(-len(df) // blocks)
    return ray.data.from_pandas([df.iloc[i : i + size] for i in range(0, len(df), size)])


def test_two_stage_keep_previous_matches_route_and_restores_order(ray_local):
    router = two_stage("keep_previous")
    df = frame(300, seed=1)
    # Two blocks: the distributed sort shuffles into as many partitions as there are blocks.
    out = route_dataset(dataset(ray_local, df, blocks=2), router, feature_columns=FEATURES, batch_size=40,
                        sort=True)
    got = out.to_pandas()
    expected = route_dataframe(df, router, feature_columns=FEATURES)
    # Every input row once, in input order after sorting on the added id.
    assert got["f0"].tolist() == df["f0"].tolist()
    assert got["id"].is_unique and got["id"].is_monotonic_increasing
    names = result_column_names(router.names, has_cost=True)
    assert list(got.columns) == ["f0", "f1", "f2", "y", "id", *names]
    assert_same_routing(got, expected, names)
    # The case covers all branches: primary answers, fallback answers, kept primary on failure.
    assert set(got["stage"]) == {0, 1}
    assert got["degraded"].sum() > 0 and (got.loc[got["degraded"], "stage"] == 0).all()
    assert got["error"].dropna().str.contains("upstream 503").all()


def test_abstain_with_factory_own_id_and_per_stage_options(ray_local):
    df = frame(300, seed=2).assign(rid=np.arange(1000, 1300)[::-1])
    out = route_dataset(
        dataset(ray_local, df),
        lambda: two_stage("abstain"),  # built once per actor
        feature_columns=FEATURES,
        id_column="rid",
        batch_size=[64, 5],
        concurrency=[1, (1, 2)],  # a fixed pool, then an autoscaling one
    )
    got = out.to_pandas().sort_values("rid", ascending=False).reset_index(drop=True)
    expected = route_dataframe(df, two_stage("abstain"), feature_columns=FEATURES)
    assert got["rid"].tolist() == df["rid"].tolist()
    assert_same_routing(got, expected, result_column_names(("primary", "fallback"), has_cost=True))
    abstained = got["stage"] == -1
    assert abstained.sum() > 0 and (got.loc[abstained, "label_index"] == -1).all()
    assert got.loc[abstained, "label"].isna().all() and got.loc[abstained, "degraded"].all()


def test_three_stage_cascade_matches_route(ray_local):
    router = three_stage()
    df = frame(300, seed=3)
    got = route_dataset(dataset(ray_local, df), router, feature_columns=FEATURES, batch_size=32).to_pandas()
    got = got.sort_values("id").reset_index(drop=True)
    expected = route_dataframe(df, router, feature_columns=FEATURES)
    assert_same_routing(got, expected, result_column_names(router.names, has_cost=True))
    assert set(got["stage"]) == {-1, 0, 1, 2}
    # Deferred rows reached the later stages only: the last stage's score is NaN for the rest.
    assert np.isnan(floats(got.loc[got["stage"] == 0, "big_score"])).all()
    assert not np.isnan(floats(got.loc[got["stage"] == 2, "big_score"])).any()


def test_evaluate_dataset_equals_in_memory_evaluate(ray_local):
    def make_router():
        primary = ROUTERS["three_stage"]().stages[0].predictor
        fallback = CallablePredictor(_routing_cases.reversed_model, classes=("pos", "neg"), name="mid")
        return ThresholdRouter(primary, fallback, 0.8, cost_model=confroute.CostModel.per_sample([1.0, 3.0]))

    df = frame(400, seed=4)
    X = df[FEATURES].to_numpy()
    expected = confroute.evaluate(make_router(), X, df["y"].to_numpy(), progress=False)
    ds = dataset(ray_local, df)
    arrays = collect_stage_arrays(ds, make_router, label_column="y", feature_columns=FEATURES, batch_size=64)
    # The arrays come back in row order, one label and score per stage and row.
    assert arrays.label_index.shape == arrays.scores.shape == (2, 400)
    assert arrays.y.tolist() == df["y"].tolist()
    got = arrays.evaluate()
    assert got.n == expected.n and got.stage_names == expected.stage_names and got.score == expected.score
    for column, values in expected.table.items():
        np.testing.assert_allclose(got.table[column], values, rtol=1e-12, equal_nan=True, err_msg=column)
    assert got.stage_accuracy == expected.stage_accuracy
    assert got.ece == pytest.approx(expected.ece, rel=1e-12)
    assert got.aurc == pytest.approx(expected.aurc, rel=1e-12)
    np.testing.assert_array_equal(got.primary_correct, expected.primary_correct)
    np.testing.assert_array_equal(got.fallback_correct, expected.fallback_correct)


def test_raise_policy_fails_the_run(ray_local):
    # The failing model first: its stage runs inside route_dataset (later stages run lazily).
    router = ThresholdRouter(
        Fallback(_routing_cases.big_model, classes=("neg", "pos"), on_error="raise"),
        two_stage().stages[0].predictor,
    )
    with pytest.raises(Exception, match="upstream 503"):
        route_dataset(dataset(ray_local, frame(40, seed=5), blocks=1), router, feature_columns=FEATURES)


def test_refusals_name_the_problem(ray_local):
    ds = dataset(ray_local, frame(20, seed=6), blocks=1)
    with_breaker = ThresholdRouter(
        ROUTERS["two_stage_abstain"]().stages[0].predictor,
        Fallback(_routing_cases.big_model, classes=("neg", "pos"), circuit_breaker=CircuitBreaker()),
    )
    with pytest.raises(TypeError, match="zero-argument function that builds it"):
        route_dataset(ds, with_breaker, feature_columns=FEATURES)
    with pytest.raises(KeyError, match=r"\['nope'\] not found"):
        route_dataset(ds, two_stage(), feature_columns=["f0", "nope"])
    with pytest.raises(ValueError, match="exactly one of"):
        route_dataset(ds, two_stage())
    with pytest.raises(ValueError, match="one per stage"):
        route_dataset(ds, two_stage(), feature_columns=FEATURES, batch_size=[8, 8, 8])
    with pytest.raises(TypeError, match="Cascade/ThresholdRouter or a zero-argument function"):
        route_dataset(ds, "router", feature_columns=FEATURES)


def test_scoring_actors_and_assembly_match_evaluate_with_a_calibrator():
    # No cluster needed: the actors' __call__ runs on Arrow tables directly, in shuffled parts.
    import pyarrow as pa

    from confroute import TemperatureScaler
    from confroute.integrations.frames import InputSpec
    from confroute.integrations.ray import ShippedRouter, _ScoreStage, assemble_stage_arrays, describe_router

    primary = ROUTERS["three_stage"]().stages[0].predictor
    X_cal, y_cal = features(300, seed=11)
    scaler = TemperatureScaler().fit(primary.predict(X_cal).log_scores(), (y_cal == "pos").astype(int))
    router = ThresholdRouter(
        primary,
        CallablePredictor(_routing_cases.reversed_model, classes=("pos", "neg"), name="mid"),
        0.8,
        calibrator=scaler,
        cost_model=confroute.CostModel.per_sample([1.0, 3.0]),
    )
    df = frame(200, seed=12)
    expected = confroute.evaluate(router, df[FEATURES].to_numpy(), df["y"].to_numpy(), progress=False)
    assert expected.ece_before_calibration is not None

    rng = np.random.default_rng(0)
    shuffled = df.assign(id=np.arange(len(df))).iloc[rng.permutation(len(df))]
    source, spec = ShippedRouter(router), InputSpec.make(None, FEATURES)
    stages = [_ScoreStage(source, s, spec) for s in range(2)]
    parts = []
    for chunk in np.array_split(np.arange(len(df)), 3):
        table = pa.Table.from_pandas(shuffled.iloc[chunk], preserve_index=False)
        for stage in stages:
            table = stage(table)
        parts.append(table)
    got = assemble_stage_arrays(parts, describe_router(router), id_column="id", label_column="y").evaluate()
    assert got.score == expected.score and got.stage_names == expected.stage_names
    for column, values in expected.table.items():
        np.testing.assert_allclose(got.table[column], values, rtol=1e-12, equal_nan=True, err_msg=column)
    assert got.ece == pytest.approx(expected.ece, rel=1e-12)
    assert got.ece_before_calibration == pytest.approx(expected.ece_before_calibration, rel=1e-12)
    assert got.ece != pytest.approx(got.ece_before_calibration)


def test_route_dataset_follows_a_patched_accept_rule_and_cost_model(ray_local):
    # Last in this module: the actors patch the rule in their own processes (as a monkeypatch in
    # the driver cannot reach them), so a path with its own copy of the rule would not follow.
    ds = ray_local.data.from_pandas(pd.DataFrame({"x": _routing_cases.TIE_XS}))
    got = route_dataset(ds, _routing_cases.patched_tie_router, text_column="x", batch_size=4, sort=True).to_pandas()
    assert got["stage"].tolist() == [0, 1, 1, 1, 0, 1]
    assert got["cost"].tolist() == [107.0, 207.0, 207.0, 207.0, 107.0, 207.0]
