"""Fallback: how a stage is called, and what happens when the call fails.

A :class:`Fallback` wraps the predictor of a later stage (an expensive model, an API) with an
error policy, retries with exponential backoff and jitter, a per-call timeout, split-on-failure
(a failing batch is retried in halves so that one poisoned input cannot take its batch down) and
an optional :class:`CircuitBreaker`.

The retry/split logic is written once, as a generator that *asks* for calls and sleeps
(:func:`_attempts`); a synchronous and an asynchronous driver carry those requests out. That is
how the sync and async paths share one core.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..core.batch import n_rows, slice_rows
from ..core.types import PredictionError, Predictions
from ..predictors.base import Predictor
from ..predictors.callable import CallablePredictor
from ..exceptions import CircuitOpenError, StageTimeoutError

__all__ = ["Fallback", "CircuitBreaker", "CircuitOpenError", "StageTimeoutError", "StageOutcome"]

OnError = Literal["raise", "keep_primary", "abstain"]
_POLICIES = ("raise", "keep_primary", "abstain")




class CircuitBreaker:
    """Stop calling a stage that keeps failing; try again after a cool-down.

    After ``failure_threshold`` consecutive failed calls the breaker *opens* and calls fail at
    once with :class:`CircuitOpenError`. After ``reset_after`` seconds it lets one trial call
    through (*half-open*): success closes it, failure opens it again. Safe to share between threads.

    Parameters
    ----------
    failure_threshold : int, default 5
    reset_after : float, default 30.0
        Seconds to rest once open.
    clock : callable, default time.monotonic
        Injected for tests.

    Examples
    --------
    >>> t = [0.0]
    >>> cb = CircuitBreaker(failure_threshold=2, reset_after=10, clock=lambda: t[0])
    >>> cb.record(False); cb.record(False); cb.state
    'open'
    >>> cb.allow()
    False
    >>> t[0] = 11.0; cb.allow(), cb.state
    (True, 'half_open')
    """

    def __init__(
        self, failure_threshold: int = 5, reset_after: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if reset_after < 0:
            raise ValueError(f"reset_after must be >= 0 seconds, got {reset_after}")
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_out = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half_open" if self._trial_out else "open"

    def allow(self) -> bool:
        """Whether a call may go ahead now."""
        with self._lock:
            if self._opened_at is None:
                return True
            if not self._trial_out and self.clock() - self._opened_at >= self.reset_after:
                self._trial_out = True
                return True
            return False

    def record(self, success: bool) -> None:
        """Report the outcome of a call that :meth:`allow` let through."""
        with self._lock:
            if success:
                self._failures = 0
                self._opened_at = None
                self._trial_out = False
                return
            self._failures += 1
            if self._trial_out or self._failures >= self.failure_threshold:
                self._opened_at = self.clock()
                self._trial_out = False


@dataclass(frozen=True)
class StageOutcome:
    """What a stage returned for a batch: predictions for the inputs that succeeded.

    ``ok[i]`` says whether input ``i`` of the batch got a prediction; ``predictions`` holds those
    rows in batch order (``ok.sum()`` rows); ``errors[i]`` is the message for a failed input.
    """

    predictions: Predictions | None
    ok: np.ndarray
    errors: list[str | None]


# A request from the core to its driver: call the predictor on a batch, or sleep.
_Call = tuple[Literal["call"], Sequence[Any]]
_Sleep = tuple[Literal["sleep"], float]


class Fallback:
    """A stage's predictor plus the policy for calling it.

    Parameters
    ----------
    predictor : Predictor or callable
        A callable is wrapped in :class:`~confroute.CallablePredictor` with ``output`` and ``classes``.
    on_error : {"raise", "keep_primary", "abstain"}, default "raise"
        What to do with inputs the stage still fails on after retries: raise the error, keep the
        previous stage's answer (flagged ``degraded``), or abstain (label ``-1``, flagged).
    retries : int, default 0
        Extra attempts per batch after a failure.
    backoff : float, default 0.1
        Seconds before the first retry; doubles every retry, capped at ``max_backoff``.
    max_backoff : float, default 10.0
    jitter : bool, default True
        Multiply each wait by a random factor in [0.5, 1.5) so that many clients do not retry in step.
    timeout : float, optional
        Seconds one call may take. A sync call that times out is abandoned (Python cannot kill a
        thread; it finishes in the background and its answer is discarded).
    split_on_failure : bool, default False
        When a batch still fails, retry each half separately, down to single inputs.
    batch_size : int, optional
        Split the deferred inputs into calls of at most this many (an API's limit, say).
    max_concurrency : int, default 1
        How many of those calls may run at once (threads for sync, tasks for async).
    circuit_breaker : CircuitBreaker, optional
    retry_on : tuple of exception types, default (Exception,)
        Errors worth retrying; others fail at once (still subject to ``on_error``).
    output, classes, name
        Passed to :class:`~confroute.CallablePredictor` when ``predictor`` is a plain callable.

    Examples
    --------
    >>> import numpy as np
    >>> fb = Fallback(lambda xs: np.tile([0.2, 0.8], (len(xs), 1)), on_error="abstain")
    >>> out = fb.call(["a", "b"])
    >>> out.ok.tolist(), out.predictions.labels.tolist()
    ([True, True], [1, 1])
    """

    def __init__(
        self,
        predictor: Predictor | Callable[[Sequence[Any]], Any],
        *,
        on_error: OnError = "raise",
        retries: int = 0,
        backoff: float = 0.1,
        max_backoff: float = 10.0,
        jitter: bool = True,
        timeout: float | None = None,
        split_on_failure: bool = False,
        batch_size: int | None = None,
        max_concurrency: int = 1,
        circuit_breaker: CircuitBreaker | None = None,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        output: Literal["probs", "logits"] = "probs",
        classes: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        if on_error not in _POLICIES:
            raise ValueError(f"on_error must be one of {_POLICIES}, got {on_error!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if isinstance(predictor, Fallback):
            raise TypeError("predictor is already a Fallback")
        if not isinstance(predictor, Predictor):
            predictor = CallablePredictor(predictor, output=output, classes=classes, name=name)
        self.predictor = predictor
        self.on_error = on_error
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.jitter = jitter
        self.timeout = timeout
        self.split_on_failure = split_on_failure
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency
        self.circuit_breaker = circuit_breaker
        self.retry_on = retry_on
        self.name = name or predictor.name

    @property
    def classes(self) -> tuple[Any, ...] | None:
        return self.predictor.classes

    def __repr__(self) -> str:
        return f"Fallback({self.predictor!r}, on_error={self.on_error!r}, retries={self.retries})"

    # -- the shared core -------------------------------------------------------------------------

    def _attempts(self, batch: Sequence[Any]) -> Generator[_Call | _Sleep, Any, StageOutcome]:
        """Retry, then split; yields requests, receives a Predictions or an exception per call."""
        error: BaseException | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                yield ("sleep", self._wait(attempt))
            if self.circuit_breaker is not None and not self.circuit_breaker.allow():
                error = CircuitOpenError(f"{self.name}: circuit breaker open after repeated failures")
                break
            answer = yield ("call", batch)
            success = isinstance(answer, Predictions)
            if self.circuit_breaker is not None:
                self.circuit_breaker.record(success)
            if success:
                m = n_rows(batch)
                return StageOutcome(answer, np.ones(m, dtype=bool), [None] * m)
            error = answer
            if not isinstance(error, self.retry_on):
                break
        assert error is not None
        if self.on_error == "raise":
            raise error
        m = n_rows(batch)
        if self.split_on_failure and m > 1 and not isinstance(error, CircuitOpenError):
            half = m // 2
            left = yield from self._attempts(slice_rows(batch, 0, half))
            right = yield from self._attempts(slice_rows(batch, half, m))
            return _join_outcomes([left, right])
        message = f"{type(error).__name__}: {error}"
        return StageOutcome(None, np.zeros(m, dtype=bool), [message] * m)

    def _wait(self, attempt: int) -> float:
        wait = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        return wait * random.uniform(0.5, 1.5) if self.jitter else wait

    def _batches(self, inputs: Sequence[Any]) -> list[Sequence[Any]]:
        n = n_rows(inputs)
        size = self.batch_size or max(n, 1)
        return [slice_rows(inputs, i, i + size) for i in range(0, n, size)]

    # -- sync driver -----------------------------------------------------------------------------

    def call(self, inputs: Sequence[Any]) -> StageOutcome:
        """Run the stage on ``inputs`` under this policy (blocking)."""
        batches = self._batches(inputs)
        if self.max_concurrency > 1 and len(batches) > 1:
            with ThreadPoolExecutor(self.max_concurrency) as pool:
                outcomes = list(pool.map(self._drive_sync, batches))
        else:
            outcomes = [self._drive_sync(b) for b in batches]
        return _join_outcomes(outcomes, empty_classes=self.classes)

    def _drive_sync(self, batch: Sequence[Any]) -> StageOutcome:
        core = self._attempts(batch)
        try:
            request = next(core)
            while True:
                kind, arg = request
                if kind == "sleep":
                    time.sleep(arg)
                    request = next(core)
                else:
                    request = core.send(self._call_sync(arg))
        except StopIteration as done:
            return done.value

    def _call_sync(self, batch: Sequence[Any]) -> Predictions | BaseException:
        if self.timeout is None:
            try:
                return self.predictor.predict(batch)
            except Exception as exc:  # noqa: BLE001 - the policy decides what to do with it
                return exc
        box: list[Predictions | BaseException] = []

        def target() -> None:
            try:
                box.append(self.predictor.predict(batch))
            except BaseException as exc:  # noqa: BLE001
                box.append(exc)

        worker = threading.Thread(target=target, daemon=True, name=f"confroute-{self.name}")
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive() or not box:
            return StageTimeoutError(f"{self.name} did not answer within {self.timeout} s")
        return box[0]

    # -- async driver ----------------------------------------------------------------------------

    async def acall(self, inputs: Sequence[Any]) -> StageOutcome:
        """Run the stage on ``inputs`` under this policy, at most ``max_concurrency`` calls at once."""
        limit = asyncio.Semaphore(self.max_concurrency)

        async def one(batch: Sequence[Any]) -> StageOutcome:
            async with limit:
                return await self._drive_async(batch)

        outcomes = await asyncio.gather(*(one(b) for b in self._batches(inputs)))
        return _join_outcomes(list(outcomes), empty_classes=self.classes)

    async def _drive_async(self, batch: Sequence[Any]) -> StageOutcome:
        core = self._attempts(batch)
        try:
            request = next(core)
            while True:
                kind, arg = request
                if kind == "sleep":
                    await asyncio.sleep(arg)
                    request = next(core)
                else:
                    request = core.send(await self._call_async(arg))
        except StopIteration as done:
            return done.value

    async def _call_async(self, batch: Sequence[Any]) -> Predictions | BaseException:
        try:
            if self.timeout is None:
                return await self.predictor.apredict(batch)
            return await asyncio.wait_for(self.predictor.apredict(batch), self.timeout)
        except asyncio.TimeoutError:
            return StageTimeoutError(f"{self.name} did not answer within {self.timeout} s")
        except Exception as exc:  # noqa: BLE001 - the policy decides
            return exc


def _join_outcomes(
    outcomes: list[StageOutcome], empty_classes: tuple[str, ...] | None = None
) -> StageOutcome:
    ok = np.concatenate([o.ok for o in outcomes]) if outcomes else np.zeros(0, dtype=bool)
    errors = [e for o in outcomes for e in o.errors]
    parts = [o.predictions for o in outcomes if o.predictions is not None and len(o.predictions)]
    if parts:
        widths = {p.n_classes for p in parts}
        if len(widths) > 1:
            raise PredictionError(f"stage returned different class counts across calls: {sorted(widths)}")
        return StageOutcome(Predictions.concat(parts), ok, errors)
    return StageOutcome(None, ok, errors)
