"""OIPPredictor against a real MLServer (Open Inference Protocol), and its failure mapping."""

from __future__ import annotations

import asyncio
import pickle
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("httpx", reason="OIPPredictor needs httpx: pip install 'confroute[serve]'")

from confroute import CircuitBreaker, Fallback, OIPPredictor, ThresholdRouter  # noqa: E402
from confroute.exceptions import RemoteStageError, RemoteUnavailableError, StageTimeoutError  # noqa: E402

from _helpers import SpyPredictor, binary  # noqa: E402


def _dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on once this closes
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _offline(url: str, **kw: object) -> OIPPredictor:
    return OIPPredictor(url, "m", classes=["neg", "pos"], output="probs", input_name="text",
                        output_name="probs", **kw)  # type: ignore[arg-type]


# -- without a server ------------------------------------------------------------------------------


def test_dead_server_is_unavailable_and_fast():
    p = _offline(_dead_url(), connect_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(RemoteUnavailableError, match="unreachable"):
        p.predict(["a", "b"])
    with pytest.raises(RemoteUnavailableError):
        asyncio.run(p.apredict(["a"]))
    assert time.monotonic() - t0 < 5
    assert p.ready() is False


def test_metadata_needed_without_server_names_the_fix():
    with pytest.raises(RemoteUnavailableError, match="unreachable"):
        OIPPredictor(_dead_url(), "m")


def test_stalled_server_times_out():
    """A peer that accepts the connection and never answers: a read timeout, not a hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        p = _offline(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
        with pytest.raises(StageTimeoutError, match="did not answer within 0.5 s"):
            p.predict(["a"])
    finally:
        stop.set()
        thread.join()
        for c in conns:
            c.close()
        listener.close()


def test_keep_previous_and_breaker_with_dead_fallback():
    primary = SpyPredictor(lambda x: binary(x), classes=["neg", "pos"])
    breaker = CircuitBreaker(failure_threshold=2, reset_after=60)
    router = ThresholdRouter(primary, Fallback(_offline(_dead_url()), on_error="keep_previous",
                                               circuit_breaker=breaker), threshold=0.9)
    for _ in range(3):
        r = router.route([0.99, 0.6, 0.3])
        assert r.stage.tolist() == [0, 0, 0]
        assert r.degraded.tolist() == [False, True, True]
        assert r.label_index.tolist() == [1, 1, 0] and r.labels.tolist() == ["pos", "pos", "neg"]
    assert breaker.state == "open"
    assert "CircuitOpenError" in str(r.errors[1])


def test_bad_arguments():
    with pytest.raises(ValueError, match="http"):
        OIPPredictor("localhost:8080", "m", classes=["a"])
    with pytest.raises(ValueError, match="output"):
        OIPPredictor("http://x", "m", output="labels")  # type: ignore[arg-type]
    p = _offline(_dead_url())
    with pytest.raises(TypeError, match="texts"):
        p.predict([object()])
    with pytest.raises(ValueError, match="finite"):
        p.predict([[1.0, float("nan")]])


# -- against MLServer ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    from _mlserver import MINILM, start

    srv = start({"minilm": MINILM}, num_threads=1, batch_size=32)
    yield srv
    srv.close()


@pytest.mark.shared
@pytest.mark.slow
def test_remote_equals_in_process_on_sst2(server):
    from _mlserver import MINILM, sst2_dev

    from confroute import ONNXRuntimePredictor

    texts = sst2_dev(256)
    local = ONNXRuntimePredictor(MINILM, num_threads=1, batch_size=32)
    remote = OIPPredictor(server.url, "minilm", batch_size=32)
    assert remote.classes == local.classes == ("NEGATIVE", "POSITIVE")
    assert remote.output == "logits" and remote.input_name == "text"
    assert remote.ready()
    want = local.predict(texts)
    got = remote.predict(texts)
    # Same model, same batches, float64 through JSON: bit-identical.
    np.testing.assert_array_equal(got.logits, want.logits)
    np.testing.assert_array_equal(got.probs, want.probs)
    assert got.classes == want.classes

    async def both() -> list[np.ndarray]:
        outs = await asyncio.gather(remote.apredict(texts[:128]), remote.apredict(texts[128:]))
        await remote.aclose()
        return [o.probs for o in outs]

    np.testing.assert_array_equal(np.vstack(asyncio.run(both())), want.probs)
    # It pickles without its clients and works again on the other side.
    clone = pickle.loads(pickle.dumps(remote))
    np.testing.assert_array_equal(clone.predict(texts[:32]).probs, want.probs[:32])
    remote.close()


@pytest.mark.shared
@pytest.mark.slow
def test_remote_errors_from_the_server(server):
    with pytest.raises(RemoteStageError, match="HTTP 404") as info:
        OIPPredictor(server.url, "no-such-model")
    assert info.value.status == 404 and not isinstance(info.value, RemoteUnavailableError)
    p = OIPPredictor(server.url, "minilm", output_name="nope", output="probs")
    with pytest.raises(RemoteStageError, match="HTTP 400: unknown outputs") as info:
        p.predict(["fine"])
    assert not isinstance(info.value, RemoteUnavailableError)
