"""The served threshold follows the audit ledger: the replicas that accept or defer re-read the
deployed threshold from the ledger's deployment record.

With an ``audit`` section, the deployed threshold of the application is the one in the audit
ledger's deployment record (:class:`~confroute.monitoring.Deployment`: the audit replica's
monitor changes it by compare-and-set when its ``policy`` (``tighten``, ``fallback_all``) or
``looser="loosen"`` acts, and so do ``set_threshold`` / ``revert`` on the audit deployment). Every
replica of a stage that decides (every stage but the last) holds a :class:`ThresholdSync`: before
a merged batch, when ``sync_interval_s`` has passed since its last read, it reads the record (one
one-row read, in a thread) and adopts the record's threshold when the record is newer than the
one it adopted. So ``sync_interval_s`` after a change, every replica routes at the new threshold.

Each stage answer carries the threshold that routed it (:class:`Routed`); the ingress hands it to
the audit replica with the batch, and the ledger records it per input (the ``threshold`` column).
The certificate does not depend on it: the records' sampling probabilities come from what
happened to each input (deferred: the fallback ran; accepted: a shadow call with probability
``audit_rate``), so inputs routed at an older threshold during the ``sync_interval_s`` after a
change are weighted right.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["ThresholdSync", "Routed", "routed", "threshold_sync", "SYNC_INTERVAL_S"]

logger = logging.getLogger("confroute.serve")

#: Default seconds between two reads of the ledger's deployed threshold by a stage replica.
SYNC_INTERVAL_S = 1.0


class Routed(tuple[Any, Any]):
    """A stage replica's answer ``(state, defer)`` with the ``threshold`` that decided it
    (``None``: the stage does not decide, or follows no ledger)."""

    threshold: float | None = None


def routed(state: Any, defer: Any, threshold: float | None) -> tuple[Any, Any]:
    """``(state, defer)`` as a :class:`Routed` answer (a tuple).

    Examples
    --------
    >>> r = routed("state", "defer", 0.8)
    >>> tuple(r), r.threshold
    (('state', 'defer'), 0.8)
    """
    answer = Routed((state, defer))
    answer.threshold = threshold
    return answer


class ThresholdSync:
    """What a deciding stage replica needs to follow the ledger's deployed threshold.

    Parameters
    ----------
    ledger : str or Ledger
        The audit ledger (a SQLite file, a ``postgresql://`` URL, or a ledger object: its location
        is shipped, not its connection), opened in the replica on the first read.
    interval_s : float
        At most one read of the record per ``interval_s`` seconds per replica.

    Examples
    --------
    >>> sync = ThresholdSync("audit.sqlite", 1.0)
    >>> sync.due(), sync.version
    (True, -1)
    """

    def __init__(self, ledger: Any, interval_s: float = SYNC_INTERVAL_S, postgres: bool | None = None) -> None:
        self.ledger_location = str(getattr(ledger, "location", ledger))
        self.postgres = bool(hasattr(ledger, "dsn") if postgres is None else postgres)  # a PostgresLedger's DSN
        self.interval_s = float(interval_s)
        self.version = -1  # the newest record version adopted
        self.reads = 0
        self._ledger: Any = None
        self._last = -math.inf
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:  # shipped to the replicas without a connection
        return {"ledger_location": self.ledger_location, "interval_s": self.interval_s, "postgres": self.postgres}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["ledger_location"], state["interval_s"], state["postgres"])  # type: ignore[misc]

    def due(self) -> bool:
        """Whether ``interval_s`` has passed since the last read."""
        return time.monotonic() - self._last >= self.interval_s

    def read(self) -> dict[str, Any] | None:
        """The ledger's deployment record (``None`` while the audit replica has written none)."""
        from ..monitoring.ledger import DEPLOYMENT_KEY, PostgresLedger, open_ledger

        with self._lock:
            self._last = time.monotonic()
            if self._ledger is None:
                loc = self.ledger_location
                self._ledger = PostgresLedger(loc) if self.postgres else open_ledger(loc)
            self.reads += 1
            state = self._ledger.get_meta(DEPLOYMENT_KEY)
        return state if isinstance(state, dict) and "version" in state else None

    async def follow(self, router: Any, s: int = 0) -> float:
        """Adopt the ledger's threshold for stage ``s`` of ``router`` when due and newer; returns
        the threshold the stage decides with now. A failed read is logged; the replica goes on
        at the threshold it has."""
        from ..monitoring.deploy import threshold_of

        if self.due():
            try:
                state = await asyncio.to_thread(self.read)
            except Exception as exc:  # noqa: BLE001 - routing goes on at the threshold it has
                logger.warning("stage %d: reading the deployed threshold from %s failed (%s: %s)", s,
                               self.ledger_location, type(exc).__name__, exc)
                state = None
            if state is not None and int(state["version"]) > self.version:
                self.version = int(state["version"])
                thresholds = list(router.thresholds)
                thresholds[s] = threshold_of(state)
                router.thresholds = thresholds
        return float(router.thresholds[s])


def threshold_sync(audit: Mapping[str, Any] | None, n_stages: int) -> ThresholdSync | None:
    """The :class:`ThresholdSync` of the deciding stages of an application with ``audit``
    (``None`` without one, and for an in-memory SQLite ledger, which no other process can read:
    the stages keep their threshold). ``audit``: :func:`~confroute.integrations.serve.build_app`'s
    mapping.

    Examples
    --------
    >>> threshold_sync({"target_agreement": 0.99, "ledger": "a.sqlite", "sync_interval_s": 0.5}, 2).interval_s
    0.5
    >>> threshold_sync(None, 2) is None
    True
    """
    from .serve_audit import check_audit

    if audit is None:
        return None
    opts, _ = check_audit(audit, n_stages)
    sync = ThresholdSync(opts["ledger"], float(opts.get("sync_interval_s", SYNC_INTERVAL_S)))
    return None if sync.ledger_location == ":memory:" else sync
