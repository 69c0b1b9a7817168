"""The local serving engine (``engine: local``, :mod:`confroute.integrations.serve_local`): the
service's endpoints from one process, without Ray, over real HTTP (uvicorn in a thread).

Its answers must be ``router.route``'s (JSON and the OIP binary extension, through
``tritonclient`` with its defaults), concurrent requests must be merged into shared model calls
without mixing up their answers, failures must keep the service answering, and a config with
Ray-only keys must be refused naming them. The SST-2 test runs ``confroute serve --engine local``
as a user would, on the shared models.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("httpx", reason="the serving tests need httpx: pip install 'confroute[serve]'")
pytest.importorskip("uvicorn", reason="the local engine runs on uvicorn: pip install 'confroute[serve]'")
pytest.importorskip("prometheus_client", reason="the local engine's metrics: pip install 'confroute[serve]'")

import _serve_toy  # noqa: E402
import httpx  # noqa: E402

from confroute import Cascade, CostModel, Fallback  # noqa: E402
from confroute.cli.serve import check_config  # noqa: E402
from confroute.exceptions import CLIError  # noqa: E402
from confroute.integrations.serve_local import build_local_app  # noqa: E402

BIG_CALLS: list[int] = []


def _big(texts):
    BIG_CALLS.append(len(texts))
    time.sleep(0.05)  # long enough for concurrent requests to queue behind a running call
    return np.array([[0.2, 0.8] if len(t) % 2 else [0.7, 0.3] for t in texts]).reshape(-1, 2)


def toy_router() -> Cascade:
    return Cascade(
        [Fallback(_serve_toy.TextToy(_serve_toy.small, classes=_serve_toy.CLASSES, name="small")),
         Fallback(_serve_toy.TextToy(_big, classes=_serve_toy.CLASSES, name="big"), on_error="keep_previous")],
        [0.8], cost_model=CostModel.per_sample([1.0, 10.0]), names=["small", "big"],
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Uvicorn:
    """``app`` served by uvicorn on a free port in a background thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def toy():
    app = build_local_app(toy_router, name="toy",
                          stage_options=[{"max_batch_size": 64, "batch_wait_timeout_s": 0.02}, {"max_batch_size": 64}])
    server = _Uvicorn(app)
    try:
        yield {"url": server.url, "app": app, "router": toy_router()}
    finally:
        server.stop()


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "fine", "so-so", "meh", "great film", "plain"]
    return [f"{words[rng.integers(len(words))]} {i} {'x' * int(rng.integers(3))}" for i in range(n)]


def _same_rows(rows: list[dict], want) -> None:
    assert [r["label"] for r in rows] == want.labels.tolist()
    assert [r["stage"] for r in rows] == want.stage.tolist()
    assert [r["stage_name"] for r in rows] == [want.stage_names[s] for s in want.stage]
    np.testing.assert_allclose([r["confidence"] for r in rows], want.confidence, rtol=1e-12)
    np.testing.assert_allclose([r["cost"] for r in rows], want.cost, rtol=1e-12)
    assert [r["degraded"] for r in rows] == want.degraded.tolist()


def test_route_answers_equal_router_route(toy):
    texts = _texts(40, 0)
    want = toy["router"].route(texts)
    assert 0 < want.routed_fraction < 1  # both stages answer
    rows = httpx.post(f"{toy['url']}/route", json={"inputs": texts}, timeout=60).json()["results"]
    _same_rows(rows, want)
    assert rows[0].keys() == want.to_dict()["rows"][0].keys()  # the one output schema


def test_concurrent_requests_are_merged_and_each_gets_its_own_answers(toy):
    requests = [_texts(int(n), seed) for seed, n in enumerate(np.random.default_rng(1).integers(1, 9, size=24))]

    async def fire() -> list[list[dict]]:
        async with httpx.AsyncClient(timeout=60) as client:
            answers = await asyncio.gather(*[client.post(f"{toy['url']}/route", json={"inputs": t}) for t in requests])
        return [a.json()["results"] for a in answers]

    metrics = httpx.get(f"{toy['url']}/metrics").text
    calls_before = _metric(metrics, 'confroute_stage_batch_size_count{app="toy",stage="small"}')
    inputs_before = _metric(metrics, 'confroute_stage_batch_size_sum{app="toy",stage="small"}')
    for rows, texts in zip(asyncio.run(fire()), requests):
        _same_rows(rows, toy["router"].route(texts))  # in order, nothing mixed up between requests
    metrics = httpx.get(f"{toy['url']}/metrics").text
    calls = _metric(metrics, 'confroute_stage_batch_size_count{app="toy",stage="small"}') - calls_before
    inputs = _metric(metrics, 'confroute_stage_batch_size_sum{app="toy",stage="small"}') - inputs_before
    assert inputs == sum(len(t) for t in requests)
    assert calls < len(requests)  # merged: fewer model calls than requests
    assert _metric(metrics, 'confroute_inputs_total{app="toy"}') >= inputs


def _metric(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert match, f"{series} not in /metrics"
    return float(match.group(1))


def test_tritonclient_defaults_get_router_route_answers(toy):
    triton = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the test extra)")
    texts = _texts(30, 7)
    want = toy["router"].route(texts)
    client = triton.InferenceServerClient(url=toy["url"].removeprefix("http://"), network_timeout=60.0)
    try:
        tensor = triton.InferInput("input", [len(texts)], "BYTES")
        tensor.set_data_from_numpy(np.array(texts, dtype=object))  # default: binary_data=True
        result = client.infer("toy", [tensor])
        response = result.get_response()
        assert all("binary_data_size" in o["parameters"] for o in response["outputs"])  # binary back
        assert [v.decode() for v in result.as_numpy("label")] == want.labels.tolist()
        assert result.as_numpy("stage").tolist() == want.stage.tolist()
        np.testing.assert_allclose(result.as_numpy("confidence"), want.confidence, rtol=1e-12)
        assert client.is_server_ready() and "binary_tensor_data" in client.get_server_metadata()["extensions"]
    finally:
        client.close()


@pytest.mark.parametrize("path, headers, body, message", [
    ("/route", {}, b"{not json", "the body is not JSON"),
    ("/route", {}, b'{"inputs": "good"}', "inputs"),
    ("/v2/models/toy/infer", {}, b"{not json", "the body is not JSON"),
    ("/v2/models/toy/infer", {"Inference-Header-Content-Length": "1000"}, b'{"inputs": []}', "past the end"),
])
def test_bad_bodies_get_400_with_a_message(toy, path, headers, body, message):
    r = httpx.post(f"{toy['url']}{path}", content=body, headers={"Content-Type": "application/json", **headers})
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_a_failing_stage_gives_500_and_the_service_keeps_answering(toy):
    r = httpx.post(f"{toy['url']}/route", json={"inputs": ["good", "boom"]}, timeout=60)
    assert r.status_code == 500 and "the small model crashed" in r.json()["error"]
    assert "Traceback" not in r.text and "/" not in r.json()["error"]  # one short line, no paths
    rows = httpx.post(f"{toy['url']}/route", json={"inputs": ["good"]}, timeout=60).json()["results"]
    assert rows[0]["label"] == "pos"


def test_unknown_paths_and_health(toy):
    assert httpx.get(f"{toy['url']}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{toy['url']}/v2/models/toy").json()["name"] == "toy"
    assert httpx.get(f"{toy['url']}/nowhere").status_code == 404


@pytest.mark.parametrize("extra, key", [
    ({"ray": {"num_cpus": 2}}, "ray"),
    ({"ingress": {"num_replicas": 2}}, "ingress"),
    ({"audit": {"target_agreement": 0.99, "ledger": "/tmp/x.sqlite"}}, "audit"),
])
def test_config_refuses_ray_only_keys_by_name(tmp_path, extra, key):
    cfg = {"engine": "local", "stages": [{"name": "a", "model": "onnx:/m/a"}, {"name": "b", "model": "onnx:/m/b"}],
           "thresholds": [0.9], **extra}
    with pytest.raises(CLIError, match=rf"config: {key} need engine: ray"):
        check_config(cfg)


def test_config_local_takes_batching_options_only():
    stages = [{"name": "a", "model": "onnx:/m/a", "deployment": {"max_batch_size": 8}},
              {"name": "b", "model": "onnx:/m/b", "deployment": {"num_replicas": 2, "batch_wait_timeout_s": 0.01}}]
    with pytest.raises(CLIError, match=r"stages\[1\]\.deployment\.num_replicas need engine: ray"):
        check_config({"engine": "local", "stages": stages, "thresholds": [0.9]})
    del stages[1]["deployment"]["num_replicas"]
    assert check_config({"engine": "local", "stages": stages, "thresholds": [0.9]})["engine"] == "local"
    assert check_config({"stages": stages, "thresholds": [0.9]})["engine"] == "ray"  # the default
    with pytest.raises(CLIError, match="engine must be 'ray'"):
        check_config({"engine": "threads", "stages": stages, "thresholds": [0.9]})
    with pytest.raises(ValueError, match=r"stage_options\[0\]: \['num_replicas'\] are Ray Serve deployment options"):
        build_local_app(toy_router, stage_options={"num_replicas": 2}, metrics=False)


@pytest.mark.slow
@pytest.mark.shared
def test_confroute_serve_engine_local_on_sst2_equals_router_route(tmp_path):
    """``confroute serve --engine local`` as a user runs it: tritonclient (defaults) and KServe's
    client get ``router.route``'s answers on 200 SST-2 dev sentences."""
    from _mlserver import MINILM, MPNET, SST2_DEV, sst2_dev

    if not all(p.exists() for p in (MINILM, MPNET, SST2_DEV)):
        pytest.skip("shared assets not found (set CONFROUTE_SHARED)")
    pytest.importorskip("ray.serve", reason="reuses test_serve_binary's client helpers")
    from _serve_proc import confroute_serve
    from test_serve_binary import CONFIG, _check_same, _kserve, _triton

    from confroute.cli.serve import build_router, load_config

    port = _free_port()
    (tmp_path / "serve.yaml").write_text(f"http: {{host: 127.0.0.1, port: {port}}}\n"
                                         + CONFIG.format(minilm=MINILM, mpnet=MPNET))
    texts = sst2_dev(200)
    want = build_router(load_config(tmp_path / "serve.yaml")).route(texts)
    with confroute_serve(tmp_path / "serve.yaml", "--engine", "local", name="sst2", timeout_s=120) as line:
        assert "engine local" in line
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the line is printed just before uvicorn binds
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        out, _ = _triton(f"127.0.0.1:{port}", "sst2", np.array(texts, dtype=object), "BYTES")
        _check_same(out, want)
        assert 0.03 < want.routed_fraction < 0.5
        out = _kserve(f"127.0.0.1:{port}", "sst2", texts, "BYTES")
        out["label"] = ["" if v is None else v for v in out["label"]]
        out["stage_name"] = ["" if v is None else v for v in out["stage_name"]]
        _check_same(out, want)
