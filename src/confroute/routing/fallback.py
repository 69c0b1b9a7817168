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
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from ..core._deprecation import warn_renamed
from ..core._params import check_int, check_number
from ..core.batch import n_rows, slice_rows
from ..core.types import PredictionError, Predictions
from ..exceptions import CircuitOpenError, StageTimeoutError
from ..predictors.base import Predictor
from ..predictors.callable import CallablePredictor
from ._slots import StageSlots
from ._workers import DaemonWorkers

__all__ = ["Fallback", "CircuitBreaker", "CircuitOpenError", "StageTimeoutError", "StageOutcome"]

OnError = Literal["raise", "keep_previous", "abstain"]
#: The ``on_error`` policies (``"keep_primary"`` is the deprecated spelling of ``"keep_previous"``).
POLICIES = ("raise", "keep_previous", "abstain")


class CircuitBreaker:
    """Stop calling a stage that keeps failing; try again after a cool-down.

    After ``failure_threshold`` consecutive failed calls the breaker *opens* and calls fail at
    once with :class:`CircuitOpenError`. After ``reset_after`` seconds it lets one trial call
    through (*half-open*): success closes it, failure opens it again. A trial that ends without
    a verdict (the caller cancelled it, or an interrupt stopped it) hands the trial on to the
    next call, so the breaker never stays half-open. Safe to share between threads.

    Parameters
    ----------
    failure_threshold : int, default 5
    reset_after : float, default 30.0
        Seconds to rest once open.
    clock : callable, default time.monotonic
        Injected for tests.

    Attributes
    ----------
    last_failure : BaseException or None
        The error of the most recent failed call; kept as the cause of :class:`CircuitOpenError`.

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
        self.failure_threshold = check_int(failure_threshold, "failure_threshold", 1)
        self.reset_after = check_number(reset_after, "reset_after", 0)
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {type(clock).__name__}")
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_out = False
        self.last_failure: BaseException | None = None

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half_open" if self._trial_out else "open"

    def allow(self) -> bool:
        """Whether a call may go ahead now."""
        return self.admit() is not None

    def admit(self) -> Literal["call", "trial"] | None:
        """Let a call through (``"trial"`` when it is the half-open trial) or refuse it (None)."""
        with self._lock:
            if self._opened_at is None:
                return "call"
            if not self._trial_out and self.clock() - self._opened_at >= self.reset_after:
                self._trial_out = True
                return "trial"
            return None

    def record(self, success: bool) -> None:
        """Report the outcome of a call that :meth:`allow` let through."""
        with self._lock:
            self._settle_locked(self._trial_out, success, None)

    def settle(self, ticket: Literal["call", "trial"], success: bool | None, error: BaseException | None = None) -> None:
        """The outcome of a call :meth:`admit` let through; ``None``: no verdict (cancelled)."""
        with self._lock:
            if success is None:
                if ticket == "trial":
                    self._trial_out = False  # the next call may be the trial
                return
            self._settle_locked(ticket == "trial", success, error)

    def _settle_locked(self, trial: bool, success: bool, error: BaseException | None) -> None:
        if success:
            self._failures = 0
            self._opened_at = None
            self._trial_out = False
            return
        self._failures += 1
        if error is not None:
            self.last_failure = error
        if trial or (self._opened_at is None and self._failures >= self.failure_threshold):
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
    on_error : {"raise", "keep_previous", "abstain"}, default "raise"
        What to do with inputs the stage still fails on after retries: raise the error, keep the
        previous stage's answer (flagged ``degraded``; on the first stage there is none, so the
        input is abstained on), or abstain (label ``-1``, flagged). ``"keep_primary"``, the old
        name of ``"keep_previous"``, still works and warns (``DeprecationWarning``).
        ``KeyboardInterrupt``, ``SystemExit`` and other non-``Exception`` errors always propagate.
    retries : int, default 0
        Extra attempts per batch after a failure.
    backoff : float, default 0.1
        Seconds before the first retry; doubles every retry, capped at ``max_backoff``.
    max_backoff : float, default 10.0
    jitter : bool, default True
        Multiply each wait by a random factor in [0.5, 1.5) so that many clients do not retry in
        step. The factor comes from this stage's own generator (see ``random_state``).
    timeout : float, optional
        Seconds one call may take, on every path (``route``, ``aroute``, ``route_stream``,
        :meth:`call`, :meth:`acall`), for every predictor. An async call is cancelled at the
        timeout. A sync call (``route`` on any predictor, natively async ones such as
        :class:`~confroute.OIPPredictor` included) cannot be killed (Python threads cannot be):
        it runs in a daemon thread, is abandoned at the timeout, and its answer is discarded
        when it finishes. It keeps its concurrency slot until then, so ``max_concurrency``
        stays true. A remote predictor (``cancellable``: :class:`~confroute.OIPPredictor`,
        :class:`~confroute.OpenAIPredictor`) is cancelled at the timeout on the sync path too,
        and gives its slot back at once.
    split_on_failure : bool, default False
        When a batch still fails, retry each half separately, down to single inputs.
    batch_size : int, optional
        Split the deferred inputs into calls of at most this many (an API's limit, say).
    max_concurrency : int, optional
        How many calls this stage may have in flight at once, across *every* concurrent caller
        (threads calling ``route``, tasks calling ``aroute``, on any event loop); also how many
        batches of one call run in parallel. A caller waits for a free slot; with a ``timeout``
        it stops waiting, with :class:`StageTimeoutError`, once no slot has been freed for
        ``timeout`` seconds (every slot then belongs to a call that ran past its timeout).
        Default ``None``: no limit across callers, and each call runs its batches one at a time.
    circuit_breaker : CircuitBreaker, optional
    retry_on : exception class or tuple of them, default (Exception,)
        Errors worth retrying; others fail at once (still subject to ``on_error``).
    random_state : int, optional
        Seed of the generator behind the retry jitter (the global ``random`` is never used).
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
        on_error: OnError | Literal["keep_primary"] = "raise",
        retries: int = 0,
        backoff: float = 0.1,
        max_backoff: float = 10.0,
        jitter: bool = True,
        timeout: float | None = None,
        split_on_failure: bool = False,
        batch_size: int | None = None,
        max_concurrency: int | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        retry_on: type[Exception] | tuple[type[Exception], ...] = (Exception,),
        random_state: int | None = None,
        output: Literal["probs", "logits"] = "probs",
        classes: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        if on_error == "keep_primary":
            warn_renamed('on_error="keep_primary"', 'on_error="keep_previous"')
            on_error = "keep_previous"
        if on_error not in POLICIES:
            raise ValueError(f"on_error must be one of {POLICIES}, got {on_error!r}")
        if timeout is not None:
            check_number(timeout, "timeout", 0, strict=True)
        if batch_size is not None:
            check_int(batch_size, "batch_size", 1)
        if circuit_breaker is not None and not isinstance(circuit_breaker, CircuitBreaker):
            raise TypeError(f"circuit_breaker must be a CircuitBreaker or None, got {type(circuit_breaker).__name__}")
        if isinstance(predictor, Fallback):
            raise TypeError("predictor is already a Fallback")
        if not isinstance(predictor, Predictor):
            predictor = CallablePredictor(predictor, output=output, classes=classes, name=name)
        self.predictor = predictor
        self.on_error = on_error
        self.retries = check_int(retries, "retries", 0)
        self.backoff = check_number(backoff, "backoff", 0)
        self.max_backoff = check_number(max_backoff, "max_backoff", 0)
        self.jitter = bool(jitter)
        self.timeout = None if timeout is None else float(timeout)
        self.split_on_failure = bool(split_on_failure)
        self.batch_size = batch_size
        self.max_concurrency = None if max_concurrency is None else check_int(max_concurrency, "max_concurrency", 1)
        self.circuit_breaker = circuit_breaker
        self.retry_on = _check_retry_on(retry_on)
        self.random_state = random_state
        self.name = name or predictor.name
        self._rng = random.Random(random_state)
        self._slots = None if self.max_concurrency is None else StageSlots(self.max_concurrency)
        self._parallel = self.max_concurrency or 1  # batches of one call run at once
        self._natively_async = _natively_async(predictor)
        self._workers = DaemonWorkers(self.name)  # the daemon threads of sync calls under a timeout

    @property
    def classes(self) -> tuple[Any, ...] | None:
        return self.predictor.classes

    def __repr__(self) -> str:
        return f"Fallback({self.predictor!r}, on_error={self.on_error!r}, retries={self.retries})"

    # -- the shared core -------------------------------------------------------------------------

    def _attempts(
        self, batch: Sequence[Any], cause: BaseException | None = None
    ) -> Generator[_Call | _Sleep, Any, StageOutcome]:
        """Retry, then split; yields requests, receives a Predictions or an exception per call.

        ``cause``: the error that made the caller split this batch off (kept when the breaker
        refuses the halves, so the real failure is not lost behind ``CircuitOpenError``).
        """
        error: BaseException | None = None
        breaker = self.circuit_breaker
        for attempt in range(self.retries + 1):
            if attempt:
                yield ("sleep", self._wait(attempt))
            ticket = None
            if breaker is not None:
                ticket = breaker.admit()
                if ticket is None:
                    error = self._circuit_open(error or cause or breaker.last_failure)
                    break
            try:
                answer = yield ("call", batch)
            except BaseException:  # cancelled or interrupted: no verdict on the stage
                if ticket is not None:
                    breaker.settle(ticket, None)  # type: ignore[union-attr]
                raise
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                if ticket is not None:
                    breaker.settle(ticket, None)  # type: ignore[union-attr]
                raise answer  # KeyboardInterrupt, SystemExit, ...: never a degraded row
            success = isinstance(answer, Predictions)
            if ticket is not None:
                breaker.settle(ticket, success, None if success else answer)  # type: ignore[union-attr]
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
            left = yield from self._attempts(slice_rows(batch, 0, half), error)
            right = yield from self._attempts(slice_rows(batch, half, m), error)
            return _join_outcomes([left, right])
        message = f"{type(error).__name__}: {error}"
        return StageOutcome(None, np.zeros(m, dtype=bool), [message] * m)

    def _circuit_open(self, cause: BaseException | None) -> CircuitOpenError:
        message = f"{self.name}: circuit breaker open after repeated failures"
        if cause is not None:
            message += f" (last failure: {type(cause).__name__}: {cause})"
        error = CircuitOpenError(message)
        error.__cause__ = cause
        return error

    def _wait(self, attempt: int) -> float:
        wait = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        return wait * self._rng.uniform(0.5, 1.5) if self.jitter else wait

    def _batches(self, inputs: Sequence[Any]) -> list[Sequence[Any]]:
        n = n_rows(inputs)
        size = self.batch_size or max(n, 1)
        return [slice_rows(inputs, i, i + size) for i in range(0, n, size)]

    def _predict(self, batch: Sequence[Any]) -> Predictions | BaseException:
        """One call of a sync predictor; ordinary errors are returned for the policy to judge."""
        try:
            return self.predictor.predict(batch)
        except Exception as exc:  # noqa: BLE001 - the policy decides what to do with it
            return exc

    def _release(self) -> None:
        if self._slots is not None:
            self._slots.release()

    def _timed_out(self) -> StageTimeoutError:
        return StageTimeoutError(f"{self.name} did not answer within {self.timeout} s")

    def _no_slot(self) -> StageTimeoutError:
        return StageTimeoutError(
            f"{self.name}: no free call slot within {self.timeout} s: all max_concurrency="
            f"{self.max_concurrency} slots are held by calls that ran past their timeout"
        )

    # -- sync driver -----------------------------------------------------------------------------

    def call(self, inputs: Sequence[Any]) -> StageOutcome:
        """Run the stage on ``inputs`` under this policy (blocking). When a batch raises, no
        other batch starts a call afterwards (calls already running cannot be stopped)."""
        batches = self._batches(inputs)
        if self._parallel > 1 and len(batches) > 1:
            halt: list[BaseException] = []

            def run(batch: Sequence[Any]) -> StageOutcome:
                try:
                    return self._drive_sync(batch, halt)
                except BaseException as exc:
                    if not isinstance(exc, _Halted):
                        halt.append(exc)
                    raise

            with ThreadPoolExecutor(min(self._parallel, len(batches))) as pool:
                futures = [pool.submit(run, b) for b in batches]
                wait(futures, return_when=FIRST_EXCEPTION)
                for f in futures:  # after a raised error, queued batches never start
                    f.cancel()
            if halt:
                raise halt[0]
            outcomes = [f.result() for f in futures]
        else:
            outcomes = [self._drive_sync(b) for b in batches]
        return _join_outcomes(outcomes, empty_classes=self.classes)

    def _drive_sync(self, batch: Sequence[Any], halt: list[BaseException] | None = None) -> StageOutcome:
        core = self._attempts(batch)
        try:
            request = next(core)
            while True:
                kind, arg = request
                if kind == "sleep":
                    time.sleep(cast(float, arg))
                    request = next(core)
                else:
                    if halt:
                        raise _Halted
                    request = core.send(self._call_sync(cast(Sequence[Any], arg)))
        except StopIteration as done:
            return done.value
        finally:
            core.close()  # interrupted mid-call: the core settles the breaker

    def _call_sync(self, batch: Sequence[Any]) -> Predictions | BaseException:
        # Every predictor, natively async ones included (an OIPPredictor's sync ``predict``, or
        # an async function explaining that it needs ``aroute``), goes through the slots and
        # the deadline: the same machinery on every path.
        if self._slots is not None and not self._slots.acquire(self.timeout):
            return self._no_slot()
        if self.timeout is None:
            try:
                return self._predict(batch)
            finally:
                self._release()
        box: list[Predictions | BaseException] = []
        finished = threading.Event()
        # A cancellable predictor (a remote one) runs its async path on a loop of its own, under
        # the timeout: at the timeout the request is cancelled and the slot freed at once.
        cancellable = self._natively_async and bool(getattr(self.predictor, "cancellable", False))

        def target() -> None:
            try:
                box.append(asyncio.run(self._awaited_call(batch)) if cancellable else self._predict(batch))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises
                box.append(exc)
            finally:
                self._release()
                finished.set()

        # The deadline counts from here: starting a thread can wait for the scheduler.
        deadline = time.monotonic() + self.timeout
        self._workers.submit(target)
        if not finished.wait(max(deadline - time.monotonic(), 0.0)):
            return self._timed_out()
        return box[0]

    # -- async driver ----------------------------------------------------------------------------

    async def acall(self, inputs: Sequence[Any]) -> StageOutcome:
        """Run the stage on ``inputs`` under this policy (at most ``max_concurrency`` calls in
        flight at the stage). When a batch raises, the batches still running are cancelled and
        none starts a call afterwards."""
        limit = asyncio.Semaphore(self._parallel)
        halt: list[BaseException] = []

        async def one(batch: Sequence[Any]) -> StageOutcome:
            async with limit:
                try:
                    return await self._drive_async(batch, halt)
                except BaseException as exc:
                    if not halt and not isinstance(exc, (_Halted, asyncio.CancelledError)):
                        halt.append(exc)
                    raise

        try:
            outcomes = await _gather_or_cancel(one(b) for b in self._batches(inputs))
        except _Halted:
            raise halt[0] from None
        return _join_outcomes(outcomes, empty_classes=self.classes)

    async def _drive_async(self, batch: Sequence[Any], halt: list[BaseException] | None = None) -> StageOutcome:
        core = self._attempts(batch)
        try:
            request = next(core)
            while True:
                kind, arg = request
                if kind == "sleep":
                    await asyncio.sleep(cast(float, arg))
                    request = next(core)
                else:
                    if halt:
                        raise _Halted
                    request = core.send(await self._call_async(cast(Sequence[Any], arg)))
        except StopIteration as done:
            return done.value
        finally:
            core.close()  # cancelled mid-call: the core settles the breaker

    async def _call_async(self, batch: Sequence[Any]) -> Predictions | BaseException:
        if self._slots is not None and not await self._slots.acquire_async(self.timeout):
            return self._no_slot()
        if self._natively_async:
            try:
                task = asyncio.ensure_future(self.predictor.apredict(batch))
            except BaseException:
                self._release()
                raise
            # The slot is given back when the call has really ended: a call cancelled at the
            # timeout may still be cleaning up (closing its connection) after the answer is given.
            task.add_done_callback(self._release_when_done)
            return await self._awaited(task)
        # A sync predictor runs in a daemon worker (an idle one, else a new one), never in the
        # loop's default executor: a call that hangs past its timeout must not starve others.
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Predictions | BaseException] = loop.create_future()

        def target() -> None:
            result: Predictions | BaseException
            try:
                result = self._predict(batch)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, which re-raises
                result = exc
            finally:
                self._release()
            try:
                loop.call_soon_threadsafe(_deliver, answer, result)
            except RuntimeError:  # the caller's loop is closed: nobody waits for this answer
                pass

        deadline = None if self.timeout is None else loop.time() + self.timeout
        # An idle worker thread if any: Thread.start() would hold the event loop until it has run.
        self._workers.submit(target)  # the deadline counts from before
        left = None if deadline is None else max(deadline - loop.time(), 0.0)
        done, _ = await asyncio.wait([answer], timeout=left)
        if not done:
            return self._timed_out()
        return answer.result()


    def _release_when_done(self, task: asyncio.Future[Any]) -> None:
        _retrieve(task)
        self._release()

    async def _awaited_call(self, batch: Sequence[Any]) -> Predictions | BaseException:
        task = asyncio.ensure_future(self.predictor.apredict(batch))
        task.add_done_callback(_retrieve)
        return await self._awaited(task)

    async def _awaited(self, task: asyncio.Future[Predictions]) -> Predictions | BaseException:
        """Await a natively async predictor's call under the timeout. Only the timeout's expiry
        is reported as this stage's timeout: a ``TimeoutError`` the predictor raises itself keeps
        its own message. At the timeout the call is cancelled and the answer given at once: the
        call's own clean-up (closing a connection, say) is not waited for."""
        try:
            done, _ = await asyncio.wait([task], timeout=self.timeout)
        except BaseException:  # the caller was cancelled: so is the call
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        if not done:
            task.cancel()
            return self._timed_out()
        if task.cancelled():
            raise asyncio.CancelledError
        error = task.exception()
        if error is None:
            return task.result()
        if isinstance(error, Exception):
            return error  # the policy decides
        raise error


class _Halted(Exception):
    """Another batch of the same call raised: this one must not start a call."""


def _natively_async(predictor: Predictor) -> bool:
    """Whether ``apredict`` awaits the model itself (rather than running ``predict`` in a thread)."""
    flag = getattr(predictor, "is_async", None)
    if flag is not None:
        return bool(flag)
    return type(predictor)._apredict_batch is not Predictor._apredict_batch


def _check_retry_on(retry_on: Any) -> tuple[type[Exception], ...]:
    classes = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not classes or not all(isinstance(c, type) and issubclass(c, Exception) for c in classes):
        raise TypeError(
            "retry_on must be a tuple of exception classes (subclasses of Exception; "
            f"KeyboardInterrupt and SystemExit always propagate), got {retry_on!r}"
        )
    return classes


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Read a finished call's error, so that one nobody waits for any more (cancelled at the
    timeout) logs no "exception was never retrieved"."""
    if not task.cancelled():
        task.exception()


def _deliver(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():  # the waiter may have timed out or been cancelled
        fut.set_result(value)


async def _gather_or_cancel(coros: Iterable[Awaitable[StageOutcome]]) -> list[StageOutcome]:
    """``asyncio.gather``, except that an error (or cancellation) cancels the other calls and
    waits until they have stopped, so none makes its (maybe paid) call afterwards."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


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
