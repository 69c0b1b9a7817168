"""Issue 24, on a real Ray Serve application (the toy text router of tests/_serve_toy.py):

* every bad body of ``tests/bad_inputs.py`` gets, on both endpoints, exactly the status and the
  one-line message documented in docs/reliability.md (HTTP 400, never a 500 with a traceback);
* an error inside the service is an HTTP 500 of one line, without Ray's traceback;
* killing the stage-1 replica under load is a stage-1 failure under its ``on_error``
  (``keep_previous``): no HTTP 500, the inputs stage 0 answered keep its answer, degraded.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

pytest.importorskip("httpx", reason="the serving tests need httpx: pip install 'confroute[serve]'")
pytest.importorskip("ray.serve", reason="the serving tests need Ray Serve: pip install 'confroute[serve]'")

import _serve_toy  # noqa: E402
import httpx  # noqa: E402

pytestmark = [pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def calls(tmp_path_factory):
    """The file the stage-1 model appends a line to when a call starts."""
    return tmp_path_factory.mktemp("serve-toy") / "big-calls.txt"


@pytest.fixture(scope="module")
def url(calls):
    import ray
    from ray import cloudpickle, serve

    from confroute.integrations.serve import build_app

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {_serve_toy.CALLS_LOG: str(calls)}})
    cloudpickle.register_pickle_by_value(_serve_toy)  # the replicas cannot import test files
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_app(_serve_toy.text_router, name=_serve_toy.NAME, metrics=False,
                        stage_options={"ray_actor_options": {"num_cpus": 0.25}, "max_batch_size": 8})
        serve.run(app, name=_serve_toy.NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        cloudpickle.unregister_pickle_by_value(_serve_toy)


def test_every_bad_body_gets_the_documented_400_on_both_endpoints(url):
    from bad_inputs import BAD_BODIES, served_answer

    paths = {"route": "/route", "infer": f"/v2/models/{_serve_toy.NAME}/infer"}
    with httpx.Client(timeout=120) as client:
        for case in BAD_BODIES:
            for endpoint, body in (("route", case.route), ("infer", case.infer)):
                if body is None:
                    continue
                r = client.post(url + paths[endpoint], content=body, headers={"content-type": "application/json"})
                got = (r.status_code, r.json().get("error", ""))
                assert got[0] == 400, (case.what, endpoint, r.status_code, r.text[:300])
                assert got == served_answer(endpoint, body), (case.what, endpoint)
        # A good request still works after all that.
        ok = client.post(url + "/route", json={"inputs": ["good", "bad"]})
        assert ok.status_code == 200 and [row["label"] for row in ok.json()["results"]] == ["pos", "neg"]


def test_an_error_in_the_service_is_a_500_of_one_line(url):
    for path, body in (("/route", {"inputs": ["good", "boom"]}),
                       (f"/v2/models/{_serve_toy.NAME}/infer",
                        {"inputs": [{"name": "t", "datatype": "BYTES", "shape": [1], "data": ["boom"]}]})):
        r = httpx.post(url + path, json=body, timeout=120)
        assert r.status_code == 500
        message = r.json()["error"]
        assert message == "RuntimeError: the small model crashed on this input", message
        assert len(r.content) < 300 and "Traceback" not in r.text and "pid=" not in r.text


def test_killing_the_stage1_replica_under_load_degrades_under_keep_previous(url, calls):
    import ray

    texts = ["good film", "so-so film", "bad film", "a film"]  # the unsure ones go on to stage 1
    n_requests, killed = 24, asyncio.Event()
    calls.write_text("")

    def kill_stage1() -> None:
        names = [a for a in ray.util.list_named_actors(all_namespaces=True) if "stage1-big" in a["name"]]
        assert names, ray.util.list_named_actors(all_namespaces=True)
        for a in names:
            ray.kill(ray.get_actor(a["name"], namespace=a["namespace"]))

    async def kill_when_stage1_is_busy() -> None:
        while not calls.read_text():  # a stage-1 call has started (it takes 1 s): kill its replica
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        await asyncio.to_thread(kill_stage1)
        killed.set()

    async def run() -> list[httpx.Response]:
        limit = asyncio.Semaphore(8)
        async with httpx.AsyncClient(timeout=180) as client:
            async def one() -> httpx.Response:
                async with limit:
                    return await client.post(url + "/route", json={"inputs": texts})

            killer = asyncio.create_task(kill_when_stage1_is_busy())
            answers = await asyncio.gather(*(one() for _ in range(n_requests)))
            await killer
            return answers

    answers = asyncio.run(run())
    assert killed.is_set()
    statuses = [r.status_code for r in answers]
    assert statuses == [200] * n_requests, [(r.status_code, r.text[:200]) for r in answers if r.status_code != 200]
    rows = [row for r in answers for row in r.json()["results"]]
    assert len(rows) == n_requests * len(texts)
    degraded = [row for row in rows if row["degraded"]]
    assert degraded, "the stage-1 replica was killed with calls in flight: some inputs must be degraded"
    for i, row in enumerate(rows):
        text = texts[i % len(texts)]
        if "good" in text or "bad" in text:  # stage 0 is sure: never sent to stage 1
            assert row["stage"] == 0 and not row["degraded"] and row["label"] == ("pos" if "good" in text else "neg")
        elif row["degraded"]:  # keep_previous: stage 0's answer, marked degraded, with the error
            assert row["stage"] == 0 and row["stage_name"] == "small" and row["label"] == "pos"
            assert row["small_label"] == "pos" and row["big_label"] is None
            assert "stage 'big'" in row["error"] and "Traceback" not in row["error"]
        else:
            assert row["stage"] == 1 and row["label"] == "pos" and row["big_score"] == 0.8
