"""The deployed threshold and the alarm's e-process: ONE state per ledger, shared by every
monitor (serving replica) that writes to it.

The state lives in the ledger (meta key :data:`~confroute.monitoring.ledger.DEPLOYMENT_KEY`):
``{"version", "threshold", "start_ev", "process", "watermark", ...}``. Every change of it (a
check that updates the e-process, an alarm's ``tighten`` / ``fallback_all``, a ``loosen``, a
manual :meth:`Deployment.set_threshold`, a :meth:`Deployment.revert`) is a compare-and-set on
``version`` (:meth:`~confroute.monitoring.ledger.Ledger.update_deployment`), committed in one
transaction with the certificate and the logged change it comes with. Two replicas that check at
once read the same version; the first commits, the second finds the version moved, reads the new
state and computes again from it: no update is lost and no change is logged twice. A replica
adopts the state's threshold at every check, after every batch it writes, and on :meth:`sync`.

The e-process is a function of the ledger's rows after ``start_ev`` (in event order, every
replica's rows), so the replica that happens to check computes the same value as any other.
"""

from __future__ import annotations

import threading
from typing import Any

from ..routing.cascade import Cascade
from .ledger import DEPLOYMENT_KEY, Ledger, deployment_version
from .replay import OBJECTIVES, certify_ledger, stream_records
from .sequential import ThresholdEProcess, policy_action

__all__ = ["Deployment", "MAX_ATTEMPTS"]

#: Compare-and-set attempts of one check before it gives up (each attempt recomputes).
MAX_ATTEMPTS = 20


class Deployment:
    """The shared deployment state of one ledger, seen from one monitor (and its router).

    Parameters
    ----------
    ledger : Ledger
    router : Cascade
        The replica's router: it is moved to the shared threshold whenever a newer state is seen.
    objective, target, delta, min_probability :
        The monitor's objective (parameter name, as :data:`~.replay.OBJECTIVES` keys it), for the
        alarm's :class:`~confroute.monitoring.sequential.ThresholdEProcess`.
    """

    def __init__(self, ledger: Ledger, router: Cascade, objective: str, target: float, delta: float,
                 min_probability: float) -> None:
        self.ledger = ledger
        self.router = router
        self.objective, self.target, self.delta = objective, float(target), float(delta)
        self.min_probability = min_probability
        self._adopted = -1  # the newest version adopted by this router
        self._lock = threading.RLock()

    # -- the state ---------------------------------------------------------------------------------

    def _fresh(self, threshold: float, start_ev: int | None) -> dict[str, Any]:
        process = ThresholdEProcess(threshold=threshold, objective=OBJECTIVES[self.objective], target=self.target,
                                    delta=self.delta, min_probability=self.min_probability)
        return {"threshold": json_threshold(threshold), "start_ev": start_ev, "process": process.to_dict(),
                "watermark": start_ev}

    def state(self) -> dict[str, Any]:
        """The stored state (created from the router's threshold, or from the last logged change
        of an older ledger, when the ledger has none yet)."""
        while True:
            state = self.ledger.get_meta(DEPLOYMENT_KEY)
            if state is not None and "version" in state:
                return dict(state)
            changes = self.ledger.changes()
            if state is not None:  # an older ledger: its state, versioned from now on
                fresh = dict(state, watermark=state.get("start_ev"))
            else:
                threshold = changes[-1]["new"] if changes else deployed_threshold(self.router)
                fresh = self._fresh(threshold, None)
            self.ledger.update_deployment(deployment_version(state), fresh)  # lost race: the other one's

    def adopt(self, state: dict[str, Any]) -> None:
        """Move the router to ``state``'s threshold unless a newer state was adopted already."""
        with self._lock:
            if int(state["version"]) <= self._adopted:
                return
            self._adopted = int(state["version"])
            threshold = threshold_of(state)
            if deployed_threshold(self.router) != threshold:
                self.router.thresholds = [threshold]

    def sync(self) -> dict[str, Any]:
        """Read the shared state and adopt its threshold; returns the state."""
        state = self.state()
        self.adopt(state)
        return state

    @property
    def alarm(self) -> bool:
        """Whether the shared e-process of the deployed threshold has crossed ``1 / delta``."""
        return self.state()["process"].get("alarm_at") is not None

    # -- changes (compare-and-set) -------------------------------------------------------------------

    def check(self, policy: str, looser: str, first_state: dict[str, Any] | None = None) -> dict[str, Any]:
        """Certify from every replica's records, update the shared e-process, apply ``policy``
        (and ``looser``), all committed by one compare-and-set; on a conflict start again from
        the newer state. Returns ``certificate``, ``e_value``, ``alarm``, ``action``,
        ``threshold`` (deployed after the check), ``state`` and ``attempts``.

        ``first_state``: the state the first attempt starts from (default: read it now)."""
        state = first_state
        for attempt in range(1, MAX_ATTEMPTS + 1):
            state = self.state() if state is None else state
            self.adopt(state)
            cert, watermark = certify_ledger(self.ledger)
            rows = self.ledger.stream_rows(upto=watermark)
            since = rows["ev"] > int(state["start_ev"])
            eproc = ThresholdEProcess.from_dict(state["process"])
            e_value = eproc.update(stream_records({k: v[since] for k, v in rows.items()}))
            deployed = threshold_of(state)
            action = policy_action(policy, alarm=eproc.alarm, deployed_threshold=deployed, certificate=cert,
                                   loosen=looser == "loosen", conservative_threshold=float("inf"))
            evidence = {"certificate": cert.to_dict(), "e_value": e_value, "alarm": eproc.alarm,
                        "alarm_at": eproc.alarm_at, "watermark": watermark, "reason": action.reason}
            new: dict[str, Any] = {**state, "process": eproc.to_dict(), "watermark": watermark}
            change = None
            if (action.action in ("tighten", "fallback_all", "loosen") and action.threshold is not None
                    and action.threshold != deployed):
                new = self._fresh(action.threshold, None)
                change = (deployed, float(action.threshold), action.action, evidence, None)
            stored = self.ledger.update_deployment(int(state["version"]), new, (cert.to_dict(), watermark), change)
            if stored is not None:
                self.adopt(stored)
                return {"certificate": cert, "e_value": e_value, "alarm": eproc.alarm, "action": action,
                        "threshold": threshold_of(stored), "state": stored, "attempts": attempt}
            state = None  # another replica committed first: start again from its state
        raise RuntimeError(f"the deployment state kept changing under {MAX_ATTEMPTS} attempts of one check")

    def set_threshold(self, threshold: float, reason: str = "manual", evidence: dict[str, Any] | None = None,
                      reverts: int | None = None) -> int:
        """Deploy ``threshold`` for every replica (logged with ``evidence``; a new e-process
        watches it). Returns the change's event number."""
        for _ in range(MAX_ATTEMPTS):
            state = self.state()
            change = (threshold_of(state), float(threshold), reason, evidence or {}, reverts)
            stored = self.ledger.update_deployment(int(state["version"]), self._fresh(float(threshold), None),
                                                   None, change)
            if stored is not None:
                self.adopt(stored)
                return int(stored["change_ev"])
        raise RuntimeError(f"the deployment state kept changing under {MAX_ATTEMPTS} attempts")

    def revert(self) -> int:
        """Undo the last change not yet undone (a change of its own, logged once even when two
        replicas revert at once: the second then undoes the one before)."""
        for _ in range(MAX_ATTEMPTS):
            state = self.state()
            target = _last_undone(self.ledger.changes())
            if target is None:
                raise ValueError("no threshold change to revert")
            change = (threshold_of(state), target["old"], "revert", {"reverted": target}, target["ev"])
            stored = self.ledger.update_deployment(int(state["version"]), self._fresh(target["old"], None), None,
                                                   change)
            if stored is not None:
                self.adopt(stored)
                return int(stored["change_ev"])
        raise RuntimeError(f"the deployment state kept changing under {MAX_ATTEMPTS} attempts")


def _last_undone(changes: list[dict[str, Any]]) -> dict[str, Any] | None:
    undone = {c["reverts"] for c in changes if c["reverts"] is not None}
    for change in reversed(changes):
        if change["reverts"] is None and change["ev"] not in undone:
            return change
    return None


def deployed_threshold(router: Cascade) -> float:
    """The router's one global threshold (ValueError for per-class thresholds)."""
    t = router.thresholds[0]
    if not isinstance(t, float):
        raise ValueError("CertificateMonitor certifies one global threshold; per-class thresholds are not supported")
    return t


def json_threshold(t: float) -> float | str:
    """A threshold for JSON (``inf``: everything to the fallback, as the string "inf")."""
    return "inf" if t == float("inf") else float(t)


def threshold_of(state: dict[str, Any]) -> float:
    """The deployed threshold of a stored state."""
    t = state["threshold"]
    return float("inf") if t in ("inf", "Infinity") else float(t)
