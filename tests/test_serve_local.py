"""A real Ray Serve application on a local Ray instance, with toy stages (no models, no shared data).

The stage replicas patch the accept rule and the cost model in their own processes (a monkeypatch
in the test process cannot reach them): the answers over HTTP must follow, which they do only if
the replicas route with the one rule (``confroute.core.decision.accepts``) and price with the one
cost model (``CostModel.per_input``). The answers are rows of the one output schema.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest

pytest.importorskip("httpx", reason="the serving tests need httpx: pip install 'confroute[serve]'")
pytest.importorskip("ray.serve", reason="the serving tests need Ray Serve: pip install 'confroute[serve]'")

import _routing_cases  # noqa: E402
import httpx  # noqa: E402

pytestmark = [pytest.mark.slow]

XS = _routing_cases.TIE_XS  # 0.8 and 0.2: a max probability of exactly 0.8, the threshold


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_served_router_follows_the_one_rule_and_cost_and_answers_in_the_schema():
    import ray
    from ray import cloudpickle, serve

    from confroute.integrations.serve import build_app

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    cloudpickle.register_pickle_by_value(_routing_cases)  # the replicas cannot import test files
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_app(_routing_cases.patched_tie_router, name="toy", metrics=False,
                        stage_options={"ray_actor_options": {"num_cpus": 0.5}, "max_batch_size": 8})
        serve.run(app, name="toy", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        rows = httpx.post(url + "/route", json={"inputs": XS}, timeout=120).json()["results"]
        body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [len(XS), 1], "data": XS}]}
        oip = {o["name"]: o for o in httpx.post(url + "/v2/models/toy/infer", json=body, timeout=120).json()["outputs"]}
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        cloudpickle.unregister_pickle_by_value(_routing_cases)
    stage = [0, 1, 1, 1, 0, 1]  # strict ">": the ties go on to the fallback
    assert [r["stage"] for r in rows] == stage == oip["stage"]["data"]
    assert [r["stage_name"] for r in rows] == [["small", "big"][s] for s in stage] == oip["stage_name"]["data"]
    assert [r["cost"] for r in rows] == [107.0 + 100.0 * s for s in stage] == oip["cost"]["data"]
    assert list(rows[0]) == ["label", "label_index", "confidence", "stage", "stage_name", "degraded", "error",
                             "cost", "small_label", "small_label_index", "small_score", "big_label",
                             "big_label_index", "big_score"]
    assert rows[0]["big_label"] is None and rows[1]["big_label"] == "pos"
    np.testing.assert_allclose([r["confidence"] for r in rows], [0.95, 0.7, 0.7, 0.7, 0.95, 0.7])


def test_app_under_a_route_prefix_answers_at_the_prefixed_paths():
    """``serve.run(app, route_prefix="/toy")``: Ray keeps the prefix in the request path (and sets
    ``root_path``); the ingress must strip it, or every endpoint answers 404 (failed on main)."""
    import ray
    from ray import cloudpickle, serve

    from confroute.integrations.serve import build_app

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    cloudpickle.register_pickle_by_value(_routing_cases)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_app(_routing_cases.patched_tie_router, name="toy", metrics=False,
                        stage_options={"ray_actor_options": {"num_cpus": 0.25}, "max_batch_size": 8},
                        ingress_options={"ray_actor_options": {"num_cpus": 0.25}})
        serve.run(app, name="toy", route_prefix="/toy")
        url = f"http://127.0.0.1:{port}/toy"
        routed = httpx.post(url + "/route", json={"inputs": XS}, timeout=120)
        ready = httpx.get(url + "/v2/health/ready", timeout=120)
        missing = httpx.post(url + "/nowhere", json={}, timeout=120)
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        cloudpickle.unregister_pickle_by_value(_routing_cases)
    assert routed.status_code == 200, routed.text
    assert [r["stage"] for r in routed.json()["results"]] == [0, 1, 1, 1, 0, 1]
    assert ready.status_code == 200
    assert missing.status_code == 404
