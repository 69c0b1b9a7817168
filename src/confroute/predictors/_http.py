"""The one HTTP transport of confroute's remote predictors (:class:`~confroute.OIPPredictor`,
:class:`~confroute.OpenAIPredictor`, and any remote predictor built later).

A :class:`Transport` owns **one** ``httpx.AsyncClient`` that lives on **one** private event loop,
run by a daemon thread of its own. Every request goes there, whoever makes it:

* sync callers (any thread) block on the private loop's answer;
* async callers (on any event loop) await it; cancelling the caller cancels the request;
* so the process holds at most ``max_connections`` sockets per predictor, however many threads
  and event loops (``asyncio.run`` after ``asyncio.run``) use it, and a closed caller loop
  leaves nothing behind.

``timeout`` is a **deadline** for a whole request, counted from the call: waiting for one of the
``max_connections`` request slots, connecting, sending the body and reading every byte of the
answer (a server that trickles its answer one byte at a time still fails at ``timeout``
seconds). The caller keeps it itself (it does not wait for the private loop to notice), and the
private loop keeps it too, from the moment the request has its slot.

Failures become confroute errors, so a :class:`~confroute.Fallback` applies its policies:

* no connection (refused, reset, connect timeout), the connection dropped, HTTP 429 and 5xx:
  :class:`~confroute.exceptions.RemoteUnavailableError` (``status`` and ``retry_after``, the
  server's ``Retry-After`` in seconds, when there was an answer);
* the deadline passed: :class:`~confroute.exceptions.StageTimeoutError`;
* any other HTTP error: :class:`~confroute.exceptions.RemoteStageError` (``status``).

Messages name the predictor, the method and the path, never the server's host or port (routing
results carry them in their ``error`` column, and a service returns that column to its clients).

:meth:`Transport.close` (or :meth:`Transport.aclose`) closes the client (its sockets) and stops
the loop thread; the next request starts both again. A transport that is garbage-collected
stops its thread and closes its client too. It pickles as its settings alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from ..exceptions import RemoteStageError, RemoteUnavailableError, StageTimeoutError

__all__ = ["Transport", "status_error", "error_detail", "retry_after_seconds", "short", "import_httpx"]

T = TypeVar("T")


def import_httpx(who: str, extra: str) -> Any:
    """``httpx``, or an ImportError that says which extra to install."""
    try:
        import httpx
    except ImportError:
        raise ImportError(f"{who} needs httpx: pip install 'confroute[{extra}]'") from None
    return httpx


class Expired(Exception):
    """The caller's own deadline passed (:meth:`Transport.run` / :meth:`Transport.arun`)."""


class _LoopThread:
    """A private event loop in a daemon thread, and what lives on it (the client, the slots)."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self.state: dict[str, Any] = {}
        self.thread = threading.Thread(target=_serve, args=(self.loop, self.state), daemon=True,
                                       name=f"confroute-http-{name}")
        self.thread.start()

    def stop(self, join: bool = True) -> None:
        """Stop the loop; the thread closes the client and the loop on its way out."""
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # already closed
            return
        if join and threading.current_thread() is not self.thread:
            self.thread.join(30.0)


def _serve(loop: asyncio.AbstractEventLoop, state: dict[str, Any]) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            client = state.pop("client", None)
            if client is not None:
                loop.run_until_complete(client.aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


class Transport:
    """Deadline-enforced HTTP requests to one server, on one private event loop.

    Parameters
    ----------
    base_url : str
    name : str
        The predictor's name, for error messages and the thread's name.
    timeout : float
        Deadline in seconds for one whole request (connect, send, the whole answer).
    connect_timeout : float
        Seconds to wait for a connection (at most ``timeout``).
    max_connections : int
        Requests in flight at once (and sockets open) at most.
    headers : mapping or callable, optional
        Sent with every request; a callable is called when the client opens (an API key read
        from the environment then, never stored).
    extra : str
        The confroute extra that brings httpx (for the ImportError).

    Examples
    --------
    >>> t = Transport("http://127.0.0.1:9", name="demo", timeout=1.0, connect_timeout=0.5, max_connections=2)
    >>> t.request("GET", "/v2/health/ready")
    Traceback (most recent call last):
    ...
    confroute.exceptions.RemoteUnavailableError: demo: GET /v2/health/ready: server unreachable (ConnectError: All connection attempts failed)
    >>> t.close()
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        timeout: float,
        connect_timeout: float,
        max_connections: int,
        headers: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        extra: str = "serve",
    ) -> None:
        self.httpx = import_httpx(name, extra)
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.timeout = float(timeout)
        self.connect_timeout = min(float(connect_timeout), self.timeout)
        self.max_connections = int(max_connections)
        self.headers = headers
        self.extra = extra
        self._lock = threading.Lock()
        self._runner: _LoopThread | None = None
        self._finalizer: Any = None

    # -- the private loop ------------------------------------------------------------------------

    def _loop_thread(self) -> _LoopThread:
        with self._lock:
            if self._runner is not None and self._runner.pid != os.getpid():
                self._runner = None  # a forked child: the parent's loop thread does not run here
            if self._runner is None:
                self._runner = _LoopThread(self.name)
                self._finalizer = weakref.finalize(self, self._runner.stop, False)
            return self._runner

    def _client(self, state: dict[str, Any]) -> Any:
        """This loop's client (created on first use, on the private loop)."""
        client = state.get("client")
        if client is None:
            httpx = self.httpx
            headers = self.headers() if callable(self.headers) else dict(self.headers or {})
            client = httpx.AsyncClient(
                base_url=self.base_url,
                headers={"Content-Type": "application/json", **headers},
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                limits=httpx.Limits(max_connections=self.max_connections,
                                    max_keepalive_connections=self.max_connections),
            )
            state["client"] = client
            state["slots"] = asyncio.Semaphore(self.max_connections)
        return client

    async def _send(self, state: dict[str, Any], method: str, path: str, kwargs: dict[str, Any]) -> Any:
        client = self._client(state)
        async with state["slots"]:
            try:
                return await asyncio.wait_for(client.request(method, path, **kwargs), self.timeout)
            except asyncio.TimeoutError:  # the deadline (httpx's own timeouts are not TimeoutError)
                raise self.deadline_error(method, path) from None
            except self.httpx.HTTPError as exc:
                raise self.transport_error(exc, method, path) from None

    def deadline_error(self, method: str, path: str) -> StageTimeoutError:
        return StageTimeoutError(f"{self.name}: {method} {path}: did not answer within {self.timeout} s "
                                 "(the deadline for connect, send and the whole answer)")

    def transport_error(self, exc: Exception, method: str, path: str) -> Exception:
        """A confroute error for an ``httpx`` transport failure."""
        where = f"{self.name}: {method} {path}"
        if isinstance(exc, self.httpx.ConnectTimeout):
            return RemoteUnavailableError(f"{where}: no connection within {self.connect_timeout} s")
        if isinstance(exc, self.httpx.TimeoutException):
            return StageTimeoutError(f"{where}: did not answer within {self.timeout} s")
        return RemoteUnavailableError(f"{where}: server unreachable ({type(exc).__name__}: {exc})")

    # -- requests --------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request (blocking), under the deadline; returns the ``httpx.Response``.

        The deadline is kept twice: on the private loop (from the moment the request has a
        slot) and by the caller (from the call, slot wait included), so a busy or starved
        private loop cannot make the caller late."""
        try:
            return self.run(self._request_coro(method, path, kwargs), self.timeout)
        except Expired:
            raise self.deadline_error(method, path) from None

    async def arequest(self, method: str, path: str, **kwargs: Any) -> Any:
        """Async :meth:`request`, from any event loop; cancelling it cancels the request."""
        try:
            return await self.arun(self._request_coro(method, path, kwargs), self.timeout)
        except Expired:
            raise self.deadline_error(method, path) from None

    def _request_coro(self, method: str, path: str, kwargs: dict[str, Any]) -> Coroutine[Any, Any, Any]:
        runner = self._loop_thread()
        return self._send(runner.state, method, path, kwargs)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the private loop and wait for it (not from the private loop itself);
        past ``timeout`` seconds it is cancelled and :class:`Expired` raised."""
        runner = self._loop_thread()
        if threading.current_thread() is runner.thread:
            coro.close()
            raise RuntimeError(f"{self.name}: a blocking request from the transport's own loop")
        future = asyncio.run_coroutine_threadsafe(_outcome(coro), runner.loop)
        try:
            done, _ = concurrent.futures.wait([future], timeout)
            if not done:
                future.cancel()
                raise Expired
            return _unwrap(future.result())
        except concurrent.futures.CancelledError:
            raise RemoteUnavailableError(f"{self.name}: closed while a request was in flight") from None
        except BaseException:
            future.cancel()  # interrupted: the request stops too
            raise

    async def arun(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Await ``coro`` on the private loop (directly when already there); past ``timeout``
        seconds it is cancelled and :class:`Expired` raised."""
        runner = self._loop_thread()
        if asyncio.get_running_loop() is runner.loop:
            return await coro  # the private loop keeps the deadline itself
        future = asyncio.run_coroutine_threadsafe(_outcome(coro), runner.loop)
        waiter = asyncio.wrap_future(future)
        try:
            done, _ = await asyncio.wait([waiter], timeout=timeout)
            if not done:
                future.cancel()
                raise Expired
            return _unwrap(waiter.result())
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() and task is not None and not task.cancelling():
                raise RemoteUnavailableError(f"{self.name}: closed while a request was in flight") from None
            future.cancel()  # the caller was cancelled: so is the request
            raise

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the client (its sockets) and stop the loop thread; the next request reopens them."""
        with self._lock:
            runner, self._runner = self._runner, None
            finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer.detach()
        if runner is not None:
            runner.stop()

    async def aclose(self) -> None:
        """Async :meth:`close` (the wait for the thread runs off the caller's loop)."""
        with self._lock:
            runner = self._runner
        if runner is not None and asyncio.get_running_loop() is runner.loop:
            self.close()  # from the private loop itself: stops without waiting for itself
            return
        await asyncio.to_thread(self.close)

    @property
    def open(self) -> bool:
        """Whether the loop thread (and maybe a client) is running."""
        return self._runner is not None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(httpx=None, _lock=None, _runner=None, _finalizer=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.httpx = import_httpx(self.name, self.extra)
        self._lock = threading.Lock()


async def _outcome(coro: Coroutine[Any, Any, T]) -> tuple[bool, Any]:
    """``(True, value)`` or ``(False, error)``: the private loop's task never ends in an error,
    so one whose caller has already gone (deadline, cancellation) logs no "exception was never
    retrieved"."""
    try:
        return True, await coro
    except Exception as exc:  # noqa: BLE001 - handed to the caller, which raises it
        return False, exc


def _unwrap(outcome: tuple[bool, Any]) -> Any:
    ok, value = outcome
    if not ok:
        raise value
    return value


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (a number or an HTTP date), or None.

    >>> retry_after_seconds("2"), retry_after_seconds(None), retry_after_seconds("soon")
    (2.0, None, None)
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_detail(response: Any) -> str:
    """The short reason of an error answer: its JSON ``error`` (object bodies), the JSON, or the text."""
    try:
        body = response.json()
    except ValueError:
        return short(response.text)
    if isinstance(body, dict) and body.get("error") is not None:
        body = body["error"]
    return short(body)


def status_error(response: Any, where: str, hint: str = "") -> RemoteStageError:
    """The confroute error of a non-2xx answer: 429 and 5xx are
    :class:`~confroute.exceptions.RemoteUnavailableError` (with ``retry_after``), others
    :class:`~confroute.exceptions.RemoteStageError`; both carry ``status``."""
    status = int(response.status_code)
    message = f"{where} failed with HTTP {status}: {error_detail(response)}{hint}"
    error: RemoteStageError
    if status == 429 or status >= 500:
        error = RemoteUnavailableError(message, status)
    else:
        error = RemoteStageError(message, status)
    error.retry_after = retry_after_seconds(response.headers.get("retry-after"))  # type: ignore[attr-defined]
    return error


def short(value: Any, limit: int = 300) -> str:
    """``value`` as text (repr unless a str), cut at ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
