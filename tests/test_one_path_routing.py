"""One stage loop, one output schema: every routing path follows the one accept rule and the
one cost model, and writes the same columns with the same types.

The accept rule is monkeypatched in :mod:`confroute.core.decision` (a strict ``>`` on data with
ties at the threshold) and the per-input cost in :class:`CostModel`; a path that kept a copy of
either would not follow.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from _routing_cases import TIE_XS, fake_per_input, strict_accepts, tie_router
from confroute import CallablePredictor, CostModel, Fallback, ThresholdRouter
from confroute.core import decision
from confroute.integrations.frames import route_dataframe
from confroute.integrations.ray import describe_router
from confroute.integrations.serve import Ingress, _oip_answer, _route_json
from confroute.routing.stage_loop import RowState, StageDecision, step
from confroute.routing.stagewise import advance, route_stagewise, to_routing_result

XS = TIE_XS
TIES = [1, 3, 5]


def _router() -> ThresholdRouter:
    return tie_router()


class _LocalStage:
    """A stand-in for a Ray Serve stage handle: ``remote`` runs the stage replica's step here."""

    def __init__(self, router, s):
        self.router, self.s = router, s

    def remote(self, inputs, state):
        async def run():
            return advance(self.router, self.s, inputs, state)

        return run()


def _ingress(router) -> Ingress:
    stages = [_LocalStage(router, s) for s in range(router.n_stages)]
    return Ingress(describe_router(router), "toy", stages, metrics=False)


def _every_path(router) -> dict[str, tuple[list[int], list[float]]]:
    """``(stage, cost)`` per input from every routing path."""
    out = {}
    r = router.route(XS)
    out["route"] = (r.stage.tolist(), r.cost.tolist())
    r = asyncio.run(router.aroute(XS))
    out["aroute"] = (r.stage.tolist(), r.cost.tolist())
    r = to_routing_result(router, route_stagewise(router, XS, batch_size=4))
    out["stagewise"] = (r.stage.tolist(), r.cost.tolist())
    df = route_dataframe(pd.DataFrame({"x": XS}), router, text_column="x")
    out["route_dataframe"] = (df["stage"].tolist(), df["cost"].tolist())
    r = asyncio.run(_ingress(router).route(XS))
    out["serve_ingress"] = (r.stage.tolist(), r.cost.tolist())
    table = _ray_stages_on_arrow(router)
    out["ray_route_stage"] = (table["stage"].tolist(), table["cost"].tolist())
    return out


def _ray_stages_on_arrow(router) -> pd.DataFrame:
    """Ray Data's route_dataset stage actors, run on Arrow tables without a cluster."""
    pa = pytest.importorskip("pyarrow")
    pytest.importorskip("ray")
    from confroute.integrations.frames import InputSpec
    from confroute.integrations.ray import _DEFER, ShippedRouter, _RouteStage

    source, spec = ShippedRouter(router), InputSpec.make("x", None)
    table = pa.table({"x": XS, "id": list(range(len(XS)))})
    finished = []
    for s in range(router.n_stages):
        table = _RouteStage(source, s, spec)(table)
        defer = np.asarray(table.column(_DEFER).to_pylist(), dtype=bool)
        finished.append(table.filter(pa.array(~defer)))
        table = table.filter(pa.array(defer))
    out = pa.concat_tables(finished).to_pandas().sort_values("id")
    return out.reset_index(drop=True)


def test_every_path_follows_the_default_rule_and_cost():
    got = _every_path(_router())
    want = ([0, 0, 1, 0, 0, 0], [1.0, 1.0, 11.0, 1.0, 1.0, 1.0])  # ties accepted (>=)
    assert got == {path: want for path in got}


def test_every_path_follows_a_monkeypatched_accept_rule(monkeypatch):
    monkeypatch.setattr(decision, "accepts", strict_accepts)
    got = _every_path(_router())
    stage = [0, 1, 1, 1, 0, 1]  # the ties go on to the fallback
    assert all(stage[i] == 1 for i in TIES)
    want = (stage, [1.0 + 10.0 * s for s in stage])
    assert got == {path: want for path in got}


def test_every_path_follows_a_monkeypatched_cost_model(monkeypatch):
    monkeypatch.setattr(CostModel, "per_input", fake_per_input)
    got = _every_path(_router())
    stage = [0, 0, 1, 0, 0, 0]
    want = (stage, [107.0 + 100.0 * s for s in stage])
    assert got == {path: want for path in got}


def test_hugging_face_datasets_follow_the_rule_and_cost(monkeypatch):
    datasets = pytest.importorskip("datasets")
    from confroute.integrations.datasets import route_dataset

    monkeypatch.setattr(decision, "accepts", strict_accepts)
    monkeypatch.setattr(CostModel, "per_input", fake_per_input)
    ds = datasets.Dataset.from_dict({"text": XS})
    routed = route_dataset(_router(), ds, "text", batch_size=4, load_from_cache_file=False)
    assert routed["route_stage"] == [0, 1, 1, 1, 0, 1]
    assert routed["route_cost"] == [107.0, 207.0, 207.0, 207.0, 107.0, 207.0]


# -- one output schema -------------------------------------------------------------------------------


def test_stage_column_has_the_same_type_everywhere():
    router = _router()
    result = router.route(XS)
    frame = result.to_pandas()
    routed = route_dataframe(pd.DataFrame({"x": XS}), router, text_column="x")
    rows = _route_json(result, describe_router(router))["results"]
    oip = {o["name"]: o for o in _oip_answer(result, "toy", {})["outputs"]}
    assert frame["stage"].dtype == np.int64 and routed["stage"].dtype == np.int64
    assert frame["stage"].tolist() == routed["stage"].tolist() == result.stage.tolist()
    assert [r["stage"] for r in rows] == result.stage.tolist() == oip["stage"]["data"]
    assert all(type(r["stage"]) is int for r in rows) and oip["stage"]["datatype"] == "INT64"
    assert [r["stage_name"] for r in rows] == frame["stage_name"].tolist() == routed["stage_name"].tolist() \
        == ["primary", "primary", "fallback", "primary", "primary", "primary"] == oip["stage_name"]["data"]
    assert [r for r in result.to_dict()["rows"]] == rows
    # The same columns, in the same order, whatever writes them.
    assert list(frame.columns) == list(routed.columns[1:]) == list(rows[0])
    datasets = pytest.importorskip("datasets")
    from confroute.integrations.datasets import route_dataset

    ds = route_dataset(router, datasets.Dataset.from_dict({"text": XS}), "text", load_from_cache_file=False)
    assert ds.features["route_stage"].dtype == "int64" and ds["route_stage"] == result.stage.tolist()
    assert ds.column_names[1:] == ["route_" + c for c in frame.columns]


def test_stage_label_columns_keep_their_type_where_a_stage_was_not_reached():
    # Integer classes: the fallback's label is missing for most rows; it must not become a float.
    router = ThresholdRouter(
        CallablePredictor(lambda xs: np.array([[1 - x, x] for x in xs]), classes=[3, 7], name="small"),
        CallablePredictor(lambda xs: np.tile([0.3, 0.7], (len(xs), 1)), classes=[3, 7], name="big"),
        threshold=0.8, names=("primary", "fallback"),
    )
    result = router.route(XS)
    frame = result.to_pandas()
    for column in ("label", "primary_label", "fallback_label"):
        assert frame[column].dtype == object, column
    assert frame["fallback_label"].tolist() == [None, None, 7, None, None, None]
    assert frame["primary_label"].tolist() == [7, 7, 3, 3, 3, 7]
    assert all(type(v) is int for v in frame["label"])
    routed = route_dataframe(pd.DataFrame({"x": XS}), router, text_column="x")
    assert routed["fallback_label"].dtype == object and routed["fallback_label"].tolist() == [None, None, 7, None, None, None]
    pa = pytest.importorskip("pyarrow")
    table = route_dataframe(pa.table({"x": XS}), router, text_column="x")
    assert table.schema.field("fallback_label").type == pa.int64()
    assert table.column("fallback_label").to_pylist() == [None, None, 7, None, None, None]
    assert table.schema.field("stage").type == pa.int64() and table.schema.field("stage_name").type == pa.string()
    # No stage reached: the column keeps its type in Arrow too (a distributed job's batches agree).
    only_small = route_dataframe(pa.table({"x": [0.95, 0.05]}), router, text_column="x")
    assert only_small.schema.field("fallback_label").type == pa.int64()


# -- the step itself ---------------------------------------------------------------------------------


def _decision(ok, label_index, scores, accept, errors):
    return StageDecision(np.array(ok), np.array(label_index), np.array(scores, dtype=float), np.array(accept),
                         np.array(errors, dtype=object), None, 2)


@pytest.mark.parametrize("policy", ["keep_previous", "abstain"])
def test_step_records_the_failed_stage_and_applies_the_policy(policy):
    state = RowState.initial(3, 3)
    first = _decision([True, True, True], [1, 0, 1], [0.6, 0.5, 0.9], [False, False, True], [None, None, None])
    defer = step(state, np.arange(3), 0, first, "abstain")
    assert defer.tolist() == [True, True, False]
    second = _decision([False, True], [-1, 1], [np.nan, 0.7], [False, False], ["E: down", None])
    defer = step(state, np.array([0, 1]), 1, second, policy)
    assert defer.tolist() == [False, True]
    assert state.failed_stage.tolist() == [1, -1, -1] and state.degraded.tolist() == [True, False, False]
    if policy == "keep_previous":
        assert state.stage[0] == 0 and state.label_index[0] == 1 and state.confidence[0] == 0.6
    else:
        assert state.stage[0] == -1 and state.label_index[0] == -1 and np.isnan(state.confidence[0])
    assert state.reached(3)[:, 0].tolist() == [True, True, False]


def test_failed_stage_of_a_routing_result():
    def broken(xs):
        raise RuntimeError("down")

    router = ThresholdRouter(CallablePredictor(lambda xs: np.array([[1 - x, x] for x in xs]), classes=["neg", "pos"]),
                             Fallback(broken, on_error="keep_previous"), threshold=0.8)
    result = router.route(XS)
    assert result.failed_stage.tolist() == [-1, -1, 1, -1, -1, -1]
    assert result.stage.tolist() == [0, 0, 0, 0, 0, 0] and result.degraded.tolist()[2]


def test_row_state_old_names_warn():
    state = RowState.initial(2, 1)
    with pytest.deprecated_call():
        assert state.labels.tolist() == [-1]
    with pytest.deprecated_call():
        assert state.stage_labels.shape == (2, 1)
    d = _decision([True], [1], [0.9], [True], [None])
    with pytest.deprecated_call():
        assert d.labels.tolist() == [1]
