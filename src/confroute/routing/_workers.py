"""Daemon worker threads for a stage's sync calls, reused instead of started per call.

A sync predictor called under a timeout runs in a daemon thread of its own, never in an
executor of fixed size: a call that hangs past its timeout is abandoned and must not starve other
calls of workers. Starting a thread per call has a price on the caller's side, though:
``Thread.start()`` waits until the new thread has run, and on a busy machine that wait (up to
0.19 s measured, under ``aroute`` on a loaded 2-core machine) holds the caller, or, under
``aroute``, the whole event loop with every other task's deadline timer on it.

:class:`DaemonWorkers` hands a call to an idle worker when there is one (no thread start, no
wait) and starts a new daemon worker only when every worker is busy (a hung call keeps its
worker; the others go on). A worker idle for ``idle_s`` seconds ends, so the threads of a quiet
stage go away.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

__all__ = ["DaemonWorkers"]


class DaemonWorkers:
    """Run callables on daemon threads: an idle one if any, else a new one (no upper bound)."""

    def __init__(self, name: str, idle_s: float = 1.0) -> None:
        self.name = name
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting for work, not yet promised any
        self._work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def __getstate__(self) -> dict[str, object]:
        # A copy (a router sent to a Ray worker) has workers of its own.
        return {"name": self.name, "idle_s": self.idle_s}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(str(state["name"]), float(state["idle_s"]))  # type: ignore[misc, arg-type]

    def submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (which must not raise) on a worker; never waits for a thread to start
        unless every worker is busy."""
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1  # that worker is promised this call
        self._work.put(fn)
        if start:
            threading.Thread(target=self._serve, daemon=True, name=f"confroute-{self.name}").start()

    def _serve(self) -> None:
        while True:
            try:
                fn = self._work.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody promised this worker a call: it ends
                        self._idle -= 1
                        return
                continue  # a call was promised to an idle worker meanwhile: take it
            fn()
            with self._lock:
                self._idle += 1
