"""Issue 24, "every deadline held": what of a late answer is confroute's own doing.

A Fallback's timeout must not wait for the clean-up of the call it gives up on (an async
predictor cancelled at the timeout may take its time closing a connection); the call keeps its
concurrency slot until it has really ended. An OIPPredictor's async path never makes a blocking
request on the caller's event loop. Orderings are checked with events, never with timings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from confroute import Fallback, Predictions
from confroute.predictors.base import Predictor


class SlowToCancel(Predictor):
    """Never answers; once cancelled, its clean-up lasts until ``cleanup_done`` is set."""

    classes = ("a", "b")

    def __init__(self) -> None:
        self.name = "slow-to-cancel"
        self.cleaning = asyncio.Event()
        self.cleanup_done = asyncio.Event()

    def _predict_batch(self, inputs: Sequence[Any]) -> Predictions:  # pragma: no cover - async only
        raise NotImplementedError

    async def _apredict_batch(self, inputs: Sequence[Any]) -> Predictions:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cleaning.set()
            await self.cleanup_done.wait()  # closing a socket, say
            raise
        return Predictions.from_probs(np.full((len(inputs), 2), 0.5), self.classes)  # pragma: no cover


def test_the_timeout_does_not_wait_for_a_cancelled_calls_cleanup_and_the_slot_waits_for_its_end():
    async def scenario() -> None:
        predictor = SlowToCancel()
        fb = Fallback(predictor, on_error="abstain", timeout=0.05, max_concurrency=1)
        call = asyncio.ensure_future(fb.acall(["x"]))
        await predictor.cleaning.wait()  # the timeout passed and the call was cancelled
        # The clean-up is still running: the Fallback has given its answer already.
        # (A hang guard, not a timing: on main the answer waited for the clean-up forever.)
        done, _ = await asyncio.wait([call], timeout=10)
        assert done, "the Fallback's timeout waited for the cancelled call's clean-up"
        outcome = call.result()
        assert not outcome.ok.any() and outcome.errors[0].startswith("StageTimeoutError")
        assert fb._slots.in_use == 1  # the cancelled call has not ended: it keeps its slot
        predictor.cleanup_done.set()
        for _ in range(100):
            if not fb._slots.in_use:
                break
            await asyncio.sleep(0.01)
        assert fb._slots.in_use == 0  # ended: the slot is free

    asyncio.run(scenario())


def test_an_oip_predictors_async_path_makes_no_blocking_request(monkeypatch):
    pytest.importorskip("httpx")
    from _faulty_server import FaultyServer

    from confroute import OIPPredictor

    with FaultyServer(mode="ok") as srv:
        p = OIPPredictor(srv.url, "m", output="probs", input_name="x", output_name="probs", classes=["neg", "pos"],
                         timeout=5.0)  # binary="auto": the server's extensions are asked on first use
        try:
            def blocking(*args: Any, **kwargs: Any) -> Any:
                raise AssertionError(f"a blocking request from the async path: {args}")

            monkeypatch.setattr(p._http, "request", blocking)
            out = asyncio.run(p.apredict([[4.0, 0.0], [1.0, 0.0]]))
            assert list(out.labels) == ["pos", "neg"]
        finally:
            p.close()


def test_sync_calls_under_a_timeout_reuse_an_idle_worker_thread_instead_of_starting_one_each():
    """``Thread.start()`` waits until the new thread runs: under ``aroute`` that wait held the
    event loop (and every deadline timer on it) for up to 0.19 s on a loaded machine. A sync call
    under a timeout now goes to an idle worker when there is one."""
    import threading

    from confroute import CallablePredictor

    threads: list[threading.Thread] = []

    def model(xs: Sequence[Any]) -> np.ndarray:
        threads.append(threading.current_thread())
        return np.tile([0.2, 0.8], (len(xs), 1))

    fb = Fallback(CallablePredictor(model, classes=("a", "b")), timeout=5.0)

    async def calls() -> None:
        for _ in range(10):
            assert (await fb.acall(["x"])).ok.all()

    asyncio.run(calls())
    for _ in range(10):
        assert fb.call(["x"]).ok.all()
    assert len(threads) == 20
    # One worker, now and then a second (the next call can come before the worker that delivered
    # the last answer is back to idle); on main: a new thread for each of the 20 calls.
    assert len({id(t) for t in threads}) <= 3, "a thread was started for every call"
    assert threads[0].daemon and threads[0].name.startswith("confroute-")
