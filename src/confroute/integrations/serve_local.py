"""Serve a router from one process, without Ray: the light engine for small machines.

:func:`build_local_app` serves the same endpoints, answers and metrics as the Ray Serve
application of :func:`~confroute.integrations.serve.build_app` (``POST /route``, the Open
Inference Protocol with the binary tensor extension, health and metadata), from one Python
process: an ASGI application (run it with :func:`serve_local`, i.e. uvicorn, or any ASGI server)
whose ingress is the same :class:`~confroute.integrations.serve.Ingress` and whose stages are
:class:`LocalStage` objects in the same process instead of Ray deployments.

Why: on Ray Serve every request crosses the HTTP proxy actor, the ingress replica and one
replica per stage it reaches. On the 2-vCPU machine of the benchmarks that costs 39-45 ms of
CPU per request (``docs/serving.md``), more than the fallback model itself on a short sentence,
so with one sentence per request the routed service and the fallback alone ran at the same rate
(about 40 requests/s). The local engine pays one HTTP parse and two thread hand-offs per stage
call. What it gives up: replicas, several machines, autoscaling, GPUs per replica and the audit
loop (``audit:`` needs ``engine: ray``).

Each stage keeps Ray Serve's dynamic batching: concurrent requests reaching a stage are merged
into one model call of up to ``max_batch_size`` requests, after waiting up to
``batch_wait_timeout_s`` for the batch to fill; up to ``max_concurrent_batches`` merged calls
run at once, each in a worker thread of the stage (the models release the GIL while they run).
A stage's model calls never run on the event loop, so a slow fallback does not hold up
requests that stage 0 answers. Metrics are ``prometheus_client`` objects served at
``GET /metrics`` (:class:`~confroute.integrations.serve_metrics.PrometheusMetrics`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..routing.cascade import Cascade
from ..routing.stage_loop import RowState
from ..routing.stagewise import advance
from .ray import describe_router
from .serve import BATCH_OPTIONS, Ingress, options_per_stage
from .serve_metrics import BREAKER_STATES, PrometheusMetrics
from .serve_policy import routed

__all__ = ["LocalStage", "LocalApp", "build_local_app", "serve_local"]


class LocalStage:
    """One stage of the router in this process, with dynamic batching (as Ray Serve's
    ``serve.batch`` in a stage replica): ``await stage.remote(inputs, state)`` returns
    ``(new_state, deferred)`` for those rows, from a model call merged with the concurrent ones."""

    def __init__(self, router: Cascade, s: int, metrics: Any, max_batch_size: int = 32,
                 batch_wait_timeout_s: float = 0.005, max_concurrent_batches: int = 1) -> None:
        if int(max_batch_size) < 1 or int(max_concurrent_batches) < 1 or not float(batch_wait_timeout_s) >= 0:
            raise ValueError(f"stage {router.names[s]!r}: max_batch_size and max_concurrent_batches must be >= 1 "
                             f"and batch_wait_timeout_s >= 0, got {max_batch_size}, {max_concurrent_batches}, "
                             f"{batch_wait_timeout_s}")
        self.router, self.s, self.metrics = router, s, metrics
        self.max_batch_size, self.wait_s = int(max_batch_size), float(batch_wait_timeout_s)
        self.max_concurrent_batches = int(max_concurrent_batches)
        self.stage_name = router.names[s]
        self._executor = ThreadPoolExecutor(self.max_concurrent_batches, thread_name_prefix=f"confroute-{self.stage_name}")
        # (inputs, state, future, arrival time); created and read on the event loop only
        self._pending: list[tuple[Sequence[Any], RowState, asyncio.Future[Any], float]] = []
        self._more: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._report_breaker()

    async def remote(self, inputs: Sequence[Any], state: RowState) -> tuple[RowState, np.ndarray]:
        """The stage on these rows (merged with concurrent calls into one model call)."""
        loop = asyncio.get_running_loop()
        if self._more is None or self._slots is None:
            self._more, self._slots = asyncio.Event(), asyncio.Semaphore(self.max_concurrent_batches)
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((inputs, state, future, loop.time()))
        self._more.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        result: tuple[RowState, np.ndarray] = await future
        return result

    async def _drain(self) -> None:
        """Take batches off the queue while it holds requests (one merged call per free slot)."""
        assert self._more is not None and self._slots is not None
        loop = asyncio.get_running_loop()
        while self._pending:
            await self._slots.acquire()
            try:
                # wait for the batch to fill, counted from its first request's arrival
                deadline = self._pending[0][3] + self.wait_s
                while len(self._pending) < self.max_batch_size and (left := deadline - loop.time()) > 0:
                    self._more.clear()
                    try:
                        await asyncio.wait_for(self._more.wait(), left)
                    except asyncio.TimeoutError:
                        break
                batch = self._pending[:self.max_batch_size]
                del self._pending[:len(batch)]
            except BaseException:
                self._slots.release()
                raise
            task = loop.create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[Sequence[Any], RowState, asyncio.Future[Any], float]]) -> None:
        assert self._slots is not None
        try:
            inputs = [x for rows, _, _, _ in batch for x in rows]
            state = RowState.concat([st for _, st, _, _ in batch])
            self.metrics.observe("confroute_stage_batch_size", len(inputs), stage=self.stage_name)
            loop = asyncio.get_running_loop()
            try:
                new, defer = await loop.run_in_executor(self._executor, advance, self.router, self.s, inputs, state)
            finally:
                self._report_breaker()
        except BaseException as exc:  # noqa: BLE001 - every waiting request gets the stage's error
            for _, _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            lo = 0
            for rows, _, future, _ in batch:
                take = np.arange(lo, lo + len(rows))
                lo += len(rows)
                if not future.done():  # the client may have gone away
                    future.set_result(routed(new.take(take), defer[take], None))
        finally:
            self._slots.release()

    def _report_breaker(self) -> None:
        breaker = self.router.stages[self.s].circuit_breaker
        if breaker is not None:
            self.metrics.set("confroute_breaker_state", BREAKER_STATES[breaker.state], stage=self.stage_name)

    def close(self) -> None:
        """Stop the stage's worker threads (after the calls in progress)."""
        self._executor.shutdown(wait=True, cancel_futures=True)


class LocalApp:
    """The ASGI application of :func:`build_local_app`: the :class:`Ingress` endpoints plus
    ``GET /metrics``; closes the stages' threads at shutdown (ASGI lifespan)."""

    def __init__(self, ingress: Ingress, stages: list[LocalStage], metrics: PrometheusMetrics) -> None:
        self.ingress, self.stages, self.metrics = ingress, stages, metrics
        self.started = time.time()

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        from starlette.requests import Request
        from starlette.responses import Response

        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"].rstrip("/") == "/metrics" and scope["method"] == "GET" and self.metrics.enabled:
            from prometheus_client import CONTENT_TYPE_LATEST

            response: Any = Response(self.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
        else:
            response = await self.ingress(Request(scope, receive))
        await response(scope, receive, send)

    def close(self) -> None:
        for stage in self.stages:
            stage.close()


class _LocalIngress(Ingress):
    def gone_errors(self) -> tuple[type[BaseException], ...]:
        return ()  # a stage in this process cannot vanish; its failures are the on_error policy's


def build_local_app(
    router: Cascade | Callable[[], Cascade],
    *,
    name: str = "confroute",
    stage_options: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
    drift: Any = None,
    drift_every: int = 100,
    metrics: bool = True,
) -> LocalApp:
    """An ASGI application that serves ``router`` from this process (no Ray).

    Parameters
    ----------
    router : Cascade or callable
        The router, or a zero-argument function building it (called once, here).
    name : str, default "confroute"
        Model name on the Open Inference Protocol endpoint and the ``app`` tag of the metrics.
    stage_options : mapping or list of mappings, optional
        Per stage (or one for all): ``max_batch_size`` (default 32 requests merged into one model
        call), ``batch_wait_timeout_s`` (default 0.005) and ``max_concurrent_batches`` (default
        1; more for a remote stage, whose calls wait on a server). Ray Serve's deployment options
        (replicas, resources) have no meaning here and are refused, naming the option.
    drift : DriftMonitor, optional
        As in :func:`~confroute.integrations.serve.build_app`.
    drift_every : int, default 100
        Inputs between two drift checks.
    metrics : bool, default True
        Serve the metrics at ``GET /metrics`` (needs ``prometheus-client``).

    Returns
    -------
    LocalApp
        An ASGI application; :func:`serve_local` runs it with uvicorn.

    Examples
    --------
    >>> from confroute import Cascade
    >>> from confroute.predictors import CallablePredictor
    >>> import numpy as np
    >>> cheap = CallablePredictor(lambda X: np.tile([0.9, 0.1], (len(X), 1)), classes=["neg", "pos"])
    >>> strong = CallablePredictor(lambda X: np.tile([0.2, 0.8], (len(X), 1)), classes=["neg", "pos"])
    >>> app = build_local_app(Cascade([cheap, strong], [0.95], names=["cheap", "strong"]), metrics=False)
    >>> import asyncio
    >>> r = asyncio.run(app.ingress.route(["a", "b"]))
    >>> r.stage.tolist(), r.labels.tolist()
    ([1, 1], ['pos', 'pos'])
    >>> app.close()
    """
    if drift is not None and not hasattr(drift, "reference_scores_"):
        raise ValueError("drift: pass a DriftMonitor fitted on the first stage's calibration scores")
    built = router if isinstance(router, Cascade) else router()
    if not isinstance(built, Cascade):
        raise TypeError(f"router: pass a Cascade or a function returning one, got {type(built).__name__}")
    sink = PrometheusMetrics(name, metrics)
    per_stage = _local_options(stage_options, built.n_stages)
    stages = [LocalStage(built, s, sink, **opts) for s, opts in enumerate(per_stage)]
    ingress = _LocalIngress(describe_router(built), name, stages, drift=drift, drift_every=drift_every, metrics=sink)
    return LocalApp(ingress, stages, sink)


def _local_options(options: Any, n_stages: int) -> list[dict[str, Any]]:
    per_stage = options_per_stage(options, n_stages)
    for s, opts in enumerate(per_stage):
        other = sorted(set(opts) - set(BATCH_OPTIONS))
        if other:
            raise ValueError(f"stage_options[{s}]: {other} are Ray Serve deployment options; the local engine runs "
                             f"one copy of each stage in this process and takes only {list(BATCH_OPTIONS)} "
                             "(remove them, or serve on Ray)")
    return per_stage


def serve_local(app: LocalApp, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Run ``app`` with uvicorn until interrupted (one event loop, one process)."""
    try:
        import uvicorn
    except ImportError:
        raise ImportError("the local engine runs on uvicorn: pip install 'confroute[serve]' (or uvicorn)") from None
    try:
        uvicorn.run(app, host=host, port=int(port), log_level=log_level, lifespan="on")
    finally:
        app.close()
