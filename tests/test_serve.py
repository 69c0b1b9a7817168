"""The routed system on Ray Serve, with a real MLServer fallback: answers, metrics, kill/restart.

One module-scoped setup (Ray is slow to start on a small machine): MLServer serves the MPNet
fallback over the Open Inference Protocol; Ray Serve runs the MiniLM primary in-process in its
stage deployment and calls the fallback through :class:`OIPPredictor`.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("httpx", reason="the serving tests need httpx: pip install 'confroute[serve]'")
pytest.importorskip("ray.serve", reason="the serving tests need Ray Serve: pip install 'confroute[serve]'")

import httpx  # noqa: E402


pytestmark = [pytest.mark.shared, pytest.mark.slow]

THRESHOLD = 0.9
N = 240


CONFIG = """
name: sst2
stages:
  - name: minilm
    model: onnx:{minilm}
    threads: 1
    batch_size: 32
    deployment: {{ray_actor_options: {{num_cpus: 0.5}}, max_batch_size: 32}}
  - name: mpnet
    url: {url}
    model_name: mpnet
    batch_size: 32
    timeout: 20
    connect_timeout: 1
    fallback:
      on_error: keep_previous
      circuit_breaker: {{failure_threshold: 2, reset_after: 2.0}}
    deployment: {{ray_actor_options: {{num_cpus: 0.5}}, max_batch_size: 32}}
thresholds: [{threshold}]
cost: {{per_sample: [1.0, 10.0]}}
drift: {{reference_scores: reference.npy, every: 50, min_samples: 50}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    from _mlserver import MINILM, MPNET, start, sst2_dev

    import ray
    from ray import serve

    from confroute.cli.serve import app_from_config, build_router, load_config

    # batch_size=1: the int8 MPNet quantizes activations per batch (DynamicQuantizeLinear), so a
    # row's output depends on the rows that share its batch; one text per call makes it exact.
    fallback = start({"mpnet": MPNET}, num_threads=1, batch_size=1)
    metrics_port, http_port = _free_port(), _free_port()
    folder = tmp_path_factory.mktemp("serve")
    from confroute import ONNXRuntimePredictor

    # Drift reference: the primary's scores on other dev sentences (as if from calibration).
    reference = ONNXRuntimePredictor(MINILM, num_threads=1).predict(sst2_dev(N + 200)[N:]).probs.max(axis=1)
    np.save(folder / "reference.npy", reference)
    (folder / "serve.yaml").write_text(CONFIG.format(minilm=MINILM, url=fallback.url, threshold=THRESHOLD))
    cfg = load_config(folder / "serve.yaml")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 _metrics_export_port=metrics_port)
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        serve.run(app_from_config(cfg), name="sst2", route_prefix="/")
        yield {
            "url": f"http://127.0.0.1:{http_port}",
            "metrics": f"http://127.0.0.1:{metrics_port}/metrics",
            "fallback": fallback,
            "router": build_router(cfg),
            "texts": sst2_dev(N),
            "serve": serve,
            "sent": {"requests": 0, "inputs": 0, "degraded": 0, "answered": {"minilm": 0, "mpnet": 0}},
        }
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        fallback.close()


async def _post_all(url: str, chunks: list[list[str]], concurrency: int, on_done=None) -> list[dict]:
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=120) as client:
        async def one(i: int, chunk: list[str]) -> dict:
            async with limit:
                r = await client.post(url + "/route", json={"inputs": chunk})
                assert r.status_code == 200, r.text
                if on_done is not None:
                    await on_done(i)
                return r.json()

        return await asyncio.gather(*(one(i, c) for i, c in enumerate(chunks)))


def _chunks(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def _rows(answers: list[dict]) -> list[dict]:
    return [row for a in answers for row in a["results"]]


def _count(service: dict, rows: list[dict]) -> None:
    sent = service["sent"]
    sent["inputs"] += len(rows)
    sent["degraded"] += sum(r["degraded"] for r in rows)
    for r in rows:
        sent["answered"][r["stage_name"]] += 1


def _scrape(url: str, metric: str, **tags: str) -> float:
    """Sum of a Ray-exported metric over workers, for the given tags."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(f"ray_{metric}{{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if all(labels.get(k) == v for k, v in tags.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_metric(url: str, metric: str, want: float, timeout: float = 60.0, **tags: str) -> float:
    deadline, got = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            got = _scrape(url, metric, **tags)
        except OSError:
            got = None
        if got == want:
            return got
        time.sleep(1.0)
    return got  # type: ignore[return-value]


def test_service_answers_equal_router_route(service):
    texts, router = service["texts"], service["router"]
    want = router.route(texts)
    assert 0.03 < want.routed_fraction < 0.5  # both stages really answer something
    answers = asyncio.run(_post_all(service["url"], _chunks(texts, 8), concurrency=8))
    rows = _rows(answers)
    service["sent"]["requests"] += len(answers)
    _count(service, rows)
    assert len(rows) == len(texts)
    assert [r["label"] for r in rows] == want.labels.tolist()
    # The one output schema: ``stage`` is the stage index, ``stage_name`` its name.
    assert [r["stage"] for r in rows] == want.stage.tolist()
    assert [r["stage_name"] for r in rows] == [router.names[s] for s in want.stage]
    assert not any(r["degraded"] for r in rows)
    np.testing.assert_allclose([r["confidence"] for r in rows], want.confidence, rtol=1e-6)
    np.testing.assert_allclose([r["cost"] for r in rows], want.cost)

    # The Open Inference Protocol endpoint of the routed system gives the same answers.
    body = {"id": "x1", "inputs": [{"name": "input", "datatype": "BYTES", "shape": [40], "data": texts[:40]}]}
    r = httpx.post(service["url"] + "/v2/models/sst2/infer", json=body, timeout=60)
    service["sent"]["requests"] += 1
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert r.json()["id"] == "x1"
    assert out["label"]["data"] == want.labels[:40].tolist()
    assert out["stage"]["data"] == want.stage[:40].tolist()
    assert out["stage_name"]["data"] == [router.names[s] for s in want.stage[:40]]
    _count(service, [{"degraded": d, "stage_name": router.names[s]} for d, s in
                     zip(out["degraded"]["data"], out["stage"]["data"])])
    meta = httpx.get(service["url"] + "/v2/models/sst2").json()
    assert meta["outputs"][0]["parameters"]["classes"] == ["NEGATIVE", "POSITIVE"]
    assert httpx.get(service["url"] + "/v2/health/ready").status_code == 200
    service["sent"]["requests"] += 2  # the metadata and readiness requests count too
    bad = httpx.post(service["url"] + "/route", json={"texts": ["a"]})
    service["sent"]["requests"] += 1
    assert bad.status_code == 400 and "inputs" in bad.json()["error"]


def test_fallback_killed_then_restarted(service):
    texts, router, fallback = service["texts"], service["router"], service["fallback"]
    chunks = _chunks(texts, 6)
    done = {"n": 0}

    async def kill_after_a_third(i: int) -> None:
        done["n"] += 1
        if done["n"] == len(chunks) // 3:
            await asyncio.to_thread(fallback.stop)

    answers = asyncio.run(_post_all(service["url"], chunks, concurrency=4, on_done=kill_after_a_third))
    rows = _rows(answers)  # every request answered (200), checked in _post_all
    service["sent"]["requests"] += len(answers)
    _count(service, rows)
    degraded = [i for i, r in enumerate(rows) if r["degraded"]]
    assert degraded, "the fallback was killed mid-run: some inputs must have been degraded"
    # Degraded inputs keep the primary's answer (keep_previous): stage minilm, the primary's label.
    primary_labels = router.stages[0].predictor.predict([texts[i] for i in degraded]).labels.tolist()
    assert [rows[i]["stage_name"] for i in degraded] == ["minilm"] * len(degraded)
    assert [rows[i]["stage"] for i in degraded] == [0] * len(degraded)
    assert [rows[i]["label"] for i in degraded] == primary_labels
    assert all(rows[i]["error"] for i in degraded)
    handle = service["serve"].get_deployment_handle("stage1-mpnet", app_name="sst2")
    assert handle.breaker_state.remote().result() == "open"

    fallback.start()  # same port
    deadline = time.monotonic() + 60
    while handle.breaker_state.remote().result() != "closed" and time.monotonic() < deadline:
        time.sleep(2.5)  # past reset_after: the next deferred batch is the breaker's trial call
        rows_again = _rows(asyncio.run(_post_all(service["url"], _chunks(texts[:24], 24), concurrency=1)))
        service["sent"]["requests"] += 1
        _count(service, rows_again)
    assert handle.breaker_state.remote().result() == "closed"
    after = _rows(asyncio.run(_post_all(service["url"], _chunks(texts, 24), concurrency=2)))
    service["sent"]["requests"] += len(_chunks(texts, 24))
    _count(service, after)
    want = router.route(texts)
    assert not any(r["degraded"] for r in after)
    assert [r["stage"] for r in after] == want.stage.tolist()
    assert [r["label"] for r in after] == want.labels.tolist()


def test_metrics_match_what_was_sent(service):
    sent, url = service["sent"], service["metrics"]
    assert sent["inputs"] > 0, "runs after the other tests of this module"
    assert _wait_metric(url, "confroute_inputs_total", sent["inputs"], app="sst2") == sent["inputs"]
    assert _wait_metric(url, "confroute_requests_total", sent["requests"], app="sst2") == sent["requests"]
    assert _scrape(url, "confroute_requests_total", app="sst2", status="error") == 1  # the bad request
    for stage, n in sent["answered"].items():
        assert _wait_metric(url, "confroute_answered_total", n, app="sst2", stage=stage) == n
    assert _wait_metric(url, "confroute_degraded_total", sent["degraded"], app="sst2") == sent["degraded"]
    assert _scrape(url, "confroute_degraded_total", app="sst2", stage="mpnet") == sent["degraded"]
    assert _scrape(url, "confroute_stage_latency_seconds_count", app="sst2", stage="minilm") > 0
    assert _wait_metric(url, "confroute_breaker_state", 0.0, app="sst2", stage="mpnet") == 0.0
    # The drift monitor is fed online: its gauges are exported (PSI of a same-distribution window).
    psi = _scrape(url, "confroute_drift_psi", app="sst2")
    assert 0 < psi < 1
    assert _scrape(url, "confroute_drift_alarm", app="sst2", flag="psi") in (0.0, 1.0)
