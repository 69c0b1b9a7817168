"""A stage's call slots: one limit shared by every thread and every event loop that calls it.

``max_concurrency`` protects what sits behind a stage (a rate-limited API, a GPU server), so it
has to bound the calls in flight *at the stage*, whoever makes them: sync callers in many
threads, async callers in many tasks, on any number of event loops. :class:`StageSlots` is a
first-in first-out counting semaphore that both kinds of caller can wait on: a thread blocks on
an event, a coroutine awaits a future that the releasing thread resolves through
``loop.call_soon_threadsafe``.

A slot is handed straight to the oldest waiter on release (no barging), and a waiter that gives
up (timeout, cancellation, interrupt) never leaks the slot it may have just been handed.

Waiting for a slot is not limited by the call's own timeout while the stage makes progress (a
busy stage is not a failing one). It *is* limited when nothing is released for ``patience``
seconds: every slot is then held by a call that has run past its timeout and was abandoned
(a sync call cannot be killed; it keeps its slot until it really returns, so that the limit
stays true), and waiting longer would hang the caller.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["StageSlots"]


class _Waiter:
    __slots__ = ("granted", "notify")

    def __init__(self, notify: Callable[[], None]) -> None:
        self.granted = False
        self.notify = notify


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class StageSlots:
    """At most ``limit`` holders at once, across threads and event loops (FIFO)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._in_use = 0
        self._waiters: deque[_Waiter] = deque()
        self._released_at = time.monotonic()

    def __getstate__(self) -> dict[str, int]:
        # A copy (a router sent to a Ray worker, say) is another process's stage: its own slots.
        return {"limit": self.limit}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["limit"])  # type: ignore[misc]

    @property
    def in_use(self) -> int:
        with self._lock:
            return self._in_use

    def _try_take(self) -> bool:  # with the lock held
        if self._in_use < self.limit and not self._waiters:
            self._in_use += 1
            return True
        return False

    def release(self) -> None:
        """Give a slot back: to the oldest waiter if there is one."""
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        self._released_at = time.monotonic()
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.granted = True
            try:
                waiter.notify()
            except RuntimeError:  # its event loop is closed: nobody will take this slot
                waiter.granted = False
                continue
            return
        self._in_use -= 1

    def _give_up(self, waiter: _Waiter) -> bool:
        """A waiter stops waiting; True if it was handed the slot in the meantime (it keeps it)."""
        with self._lock:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            return False

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiter was interrupted or cancelled: pass on a slot it may have been handed."""
        with self._lock:
            if waiter.granted:
                self._release_locked()
            else:
                self._waiters.remove(waiter)

    def _stalled(self, since: float, patience: float | None) -> float | None:
        """Seconds left before giving up (None: wait on), or 0 when the stage is stalled."""
        if patience is None:
            return None
        with self._lock:
            last = max(since, self._released_at)
        return max(last + patience - time.monotonic(), 0.0)

    def acquire(self, patience: float | None) -> bool:
        """Take a slot (blocking); False when no slot was released for ``patience`` seconds."""
        with self._lock:
            if self._try_take():
                return True
            event = threading.Event()
            waiter = _Waiter(event.set)
            self._waiters.append(waiter)
        since = time.monotonic()
        try:
            while True:
                left = self._stalled(since, patience)
                if left == 0.0:
                    return self._give_up(waiter)
                if event.wait(left):
                    return True
        except BaseException:
            self._abandon(waiter)
            raise

    async def acquire_async(self, patience: float | None) -> bool:
        """Async :meth:`acquire`: the event loop keeps running while this waits."""
        with self._lock:
            if self._try_take():
                return True
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()

            def notify() -> None:
                loop.call_soon_threadsafe(_resolve, fut)

            waiter = _Waiter(notify)
            self._waiters.append(waiter)
        since = time.monotonic()
        try:
            while True:
                left = self._stalled(since, patience)
                if left == 0.0:
                    return self._give_up(waiter)
                done, _ = await asyncio.wait([fut], timeout=left)
                if done:
                    return True
        except BaseException:
            self._abandon(waiter)
            raise
