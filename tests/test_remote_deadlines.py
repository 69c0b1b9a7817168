"""Remote stages keep their deadlines and their limits on every path (issue 24, remote part).

Every test runs against a real (misbehaving) HTTP server on loopback (tests/_faulty_server.py):
slow, trickling, resetting, answering 500s or 3 columns. Each failed on main before the fix.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

pytest.importorskip("httpx", reason="OIPPredictor needs httpx: pip install 'confroute[serve]'")

from confroute import (  # noqa: E402
    CallablePredictor,
    Fallback,
    OIPPredictor,
    OpenAIPredictor,
    Predictions,
    ThresholdRouter,
)
from confroute.exceptions import (  # noqa: E402
    ClassMismatchError,
    PredictionError,
    RemoteUnavailableError,
    StageTimeoutError,
)

from _faulty_server import FaultyServer, client_sockets  # noqa: E402

ROWS = [[float(i), 0.0] for i in range(6)]


def _oip(url: str, **kw: object) -> OIPPredictor:
    kw.setdefault("classes", ["neg", "pos"])
    return OIPPredictor(url, "m", output="probs", input_name="x", output_name="probs", **kw)  # type: ignore[arg-type]


def _unsure(xs):  # the primary: never confident, every row goes on to the remote stage
    return np.tile([0.6, 0.4], (len(xs), 1))


def _router(stage: Fallback) -> ThresholdRouter:
    return ThresholdRouter(CallablePredictor(_unsure, classes=["neg", "pos"]), stage, threshold=0.9)


@pytest.fixture
def server():
    srv = FaultyServer()
    yield srv
    srv.close()


# -- High 1: a Fallback's timeout and max_concurrency hold on the sync paths ----------------------


def test_fallback_timeout_holds_for_a_remote_stage_on_every_sync_path(server):
    server.mode, server.delay = "slow", 3.0
    p = _oip(server.url, timeout=10.0)
    stage = Fallback(p, timeout=0.3, on_error="keep_previous")
    router = _router(stage)
    r = router.route(ROWS)
    assert r.degraded.all() and (r.stage == 0).all()
    assert all("did not answer within 0.3 s" in e for e in r.errors)
    [chunk] = list(router.route_stream(ROWS, chunk_size=6))
    assert chunk.degraded.all()
    out = stage.call(ROWS)
    assert not out.ok.any() and "StageTimeoutError" in str(out.errors[0])
    p.close()


def test_a_sync_call_past_the_timeout_is_cancelled_and_frees_its_slot(server):
    server.mode, server.delay = "slow", 5.0
    p = _oip(server.url, timeout=10.0)
    router = _router(Fallback(p, timeout=0.3, max_concurrency=1, on_error="abstain"))
    for _ in range(3):  # an abandoned call would keep the only slot for 5 s: "no free call slot"
        r = router.route(ROWS[:1])
        assert r.degraded.all() and "did not answer within 0.3 s" in r.errors[0], r.errors[0]
    p.close()


def test_fallback_max_concurrency_holds_for_a_remote_stage_under_threads(server):
    server.mode, server.delay = "slow", 0.3
    p = _oip(server.url)
    router = _router(Fallback(p, max_concurrency=1))
    threads = [threading.Thread(target=router.route, args=(ROWS[:2],)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.requests == 8
    assert server.peak_in_flight == 1
    p.close()


# -- High 2: the predictor's own timeout is a deadline for the whole answer -----------------------


def test_a_trickling_server_fails_at_the_deadline(server):
    server.mode, server.trickle_interval = "trickle", 0.1  # ~170 bytes: 17 s to send it all
    p = _oip(server.url, timeout=1.0)
    with pytest.raises(StageTimeoutError, match="did not answer within 1.0 s"):
        p.predict(ROWS[:1])
    with pytest.raises(StageTimeoutError, match="did not answer within 1.0 s"):
        asyncio.run(p.apredict(ROWS[:1]))
    # under a Fallback with a longer timeout, the predictor's deadline still ends the call
    r = _router(Fallback(p, timeout=5.0, on_error="abstain")).route(ROWS[:1])
    assert r.degraded.all() and "did not answer within 1.0 s" in r.errors[0]
    p.close()


# -- Medium 3: one client per predictor, whatever the event loops -----------------------------------


def test_sockets_stay_bounded_over_many_event_loops_and_close_releases_them(server):
    p = _oip(server.url, max_connections=4)
    router = _router(Fallback(p, on_error="raise"))
    for _ in range(300):  # 300 event loops, one after another
        r = asyncio.run(router.aroute(ROWS[:2]))
        assert not r.degraded.any()
    assert 1 <= client_sockets(server.port) <= 4
    server.mode, server.delay = "slow", 0.2
    threads = [threading.Thread(target=router.route, args=(ROWS[:2],)) for _ in range(16)]  # 16 at once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= client_sockets(server.port) <= 4 and server.peak_in_flight <= 4
    loop_thread = p._http._runner.thread  # this predictor's one loop thread
    p.close()
    assert client_sockets(server.port) == 0
    assert not loop_thread.is_alive()
    # usable again after close, and as a context manager
    server.mode = "ok"
    with p:
        assert p.predict(ROWS[:3]).labels.tolist() == ["neg", "neg", "neg"]
    assert client_sockets(server.port) == 0


# -- Medium 6b: a stage answering other classes is a stage failure ----------------------------------


@pytest.mark.parametrize("policy", ["keep_previous", "abstain"])
def test_a_remote_stage_with_other_classes_fails_under_on_error(server, policy):
    server.mode = "3cols"
    p = _oip(server.url, classes=None)  # the metadata names no classes
    assert p.classes is None
    router = _router(Fallback(p, on_error=policy))
    for r in (router.route(ROWS), asyncio.run(router.aroute(ROWS))):
        assert r.degraded.all()
        assert all("ClassMismatchError" in e for e in r.errors)
        assert (r.stage == (0 if policy == "keep_previous" else -1)).all()
    with pytest.raises(ClassMismatchError):
        _router(Fallback(p, on_error="raise")).route(ROWS)
    p.close()


# -- Low ---------------------------------------------------------------------------------------------


def test_http_500_with_a_json_list_body_is_unavailable_and_retried(server):
    server.mode = "500-list"
    p = _oip(server.url)
    with pytest.raises(RemoteUnavailableError, match="HTTP 500") as info:
        p.predict(ROWS[:1])
    assert info.value.status == 500
    out = Fallback(p, retries=2, backoff=0.0, retry_on=RemoteUnavailableError, on_error="abstain").call(ROWS[:1])
    assert not out.ok.any() and "HTTP 500" in out.errors[0]
    assert server.requests == 1 + 3
    p.close()


def test_degraded_rows_do_not_carry_the_servers_address(server):
    for mode in ("500", "reset", "slow"):
        server.mode, server.delay = mode, 2.0
        p = _oip(server.url, timeout=0.5)
        r = _router(Fallback(p, on_error="keep_previous")).route(ROWS[:2])
        assert r.degraded.all(), mode
        for e in r.errors:
            assert "127.0.0.1" not in e and str(server.port) not in e, e
            assert "oip:m" in e and "/v2/models/m/infer" in e, e
        p.close()


def test_an_async_predictors_own_timeout_error_keeps_its_message():
    async def gateway(xs):
        raise TimeoutError("upstream gateway 504")

    stage = Fallback(gateway, timeout=30.0, on_error="abstain")
    out = asyncio.run(stage.acall([1, 2]))
    assert not out.ok.any()
    assert "upstream gateway 504" in out.errors[0] and "did not answer" not in out.errors[0]


def test_predictions_returned_by_a_callable_are_validated():
    bad = CallablePredictor(lambda xs: Predictions(np.tile([5.0, -4.0], (len(xs), 1))))
    with pytest.raises(PredictionError, match="outside"):
        bad.predict([1, 2])
    good = CallablePredictor(lambda xs: Predictions(np.tile([0.2, 0.8], (len(xs), 1)), classes=["a", "b"]))
    assert good.predict([1]).labels.tolist() == ["b"]


def test_route_stream_refuses_a_fractional_chunk_size():
    router = _router(Fallback(lambda xs: np.tile([0.2, 0.8], (len(xs), 1)), classes=["neg", "pos"]))
    with pytest.raises((TypeError, ValueError), match="chunk_size must be an integer >= 1, got 2.5"):
        list(router.route_stream(ROWS, chunk_size=2.5))  # type: ignore[arg-type]

    async def drain() -> None:
        async for _ in router.aroute_stream(ROWS, chunk_size=2.5):  # type: ignore[arg-type]
            pass

    with pytest.raises((TypeError, ValueError), match="chunk_size"):
        asyncio.run(drain())


# -- the OpenAI-compatible stage shares the transport ------------------------------------------------


def _llm(url: str, **kw: object) -> OpenAIPredictor:
    return OpenAIPredictor(url + "/v1", "m", ["A", "B"], template="{input}", **kw)  # type: ignore[arg-type]


def test_openai_predictor_keeps_one_pool_over_event_loops_and_its_deadline(server):
    p = _llm(server.url, max_concurrency=2, timeout=1.0)
    for _ in range(100):
        assert asyncio.run(p.apredict(["x", "y", "z"])).labels.tolist() == ["A", "A", "A"]
    assert 1 <= client_sockets(server.port) <= 2
    assert p.predict(["x"]).labels.tolist() == ["A"]
    server.mode, server.trickle_interval = "trickle", 0.1
    with pytest.raises(StageTimeoutError, match="did not answer within 1.0 s"):
        p.predict(["t"])
    p.close()
    assert client_sockets(server.port) == 0


def test_a_dropped_or_pickled_predictor_leaves_no_thread_or_socket_behind(server):
    import gc
    import pickle

    p = _oip(server.url)
    assert p.predict(ROWS[:2]).labels.tolist() == ["neg", "neg"]
    clone = pickle.loads(pickle.dumps(p))  # settings only: the clone opens its own client
    assert clone.predict(ROWS[3:5]).labels.tolist() == ["pos", "pos"]
    threads = [p._http._runner.thread, clone._http._runner.thread]
    assert threads[0] is not threads[1] and client_sockets(server.port) == 2
    del p, clone
    gc.collect()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert client_sockets(server.port) == 0
