"""The monitor around a deployed two-stage router: shadow audits off the hot path, label
requests only where the stages disagree, a certificate at any time, alarms and threshold changes.

:class:`CertificateMonitor` answers exactly as its router does (the router routes; the monitor
only watches) and gives every answer an id. Off the hot path, on its own threads:

* a random ``audit_rate`` share of the inputs the first stage accepted is sent to the fallback
  (a *shadow* call, with its own concurrency bound; never through the router's own call slots);
  the inputs the first stage deferred need no shadow call, since the fallback answered them;
* an input whose two answers disagree is sent to the ``label_sink`` for a label (and, where the
  statistics ask for it, a random share of the agreements: see :func:`~.sequential.label_probability`);
* every record, shadow outcome, label request, label, certificate and threshold change goes to
  the :mod:`ledger <confroute.monitoring.ledger>` (SQLite by default), one transaction per batch.

The statistics (what is certified, the alarm's e-process, what each policy does) live in
:mod:`confroute.monitoring.sequential`; this module feeds them the ledger's records.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ..core._json import json_value
from ..core.batch import as_batch, take_rows
from ..core.classes import class_labels
from ..core.types import RoutingResult
from ..routing.cascade import Cascade
from ..routing.fallback import Fallback
from .deploy import Deployment, deployed_threshold as _threshold_value
from .sequential import label_probability, PolicyAction
from .ledger import Ledger, open_ledger
from .plan import plan_records, uniform_draws
from .replay import add_labels, certify_ledger, import_labels
from .sinks import LabelSink, as_label_sink

__all__ = ["CertificateMonitor", "MonitoredResult"]

TARGETS = ("target_relative_accuracy", "max_accuracy_drop", "target_accuracy", "target_agreement")
ALARM_POLICIES = ("alert", "tighten", "fallback_all")
LOOSER_POLICIES = ("recommend", "loosen")


@dataclass(frozen=True)
class MonitoredResult(RoutingResult):
    """The router's :class:`~confroute.RoutingResult`, unchanged, plus one id per input
    (``ids``): the id under which the monitor records the input and asks for its label."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))

    @classmethod
    def wrap(cls, result: RoutingResult, ids: np.ndarray) -> MonitoredResult:
        return cls(**{f.name: getattr(result, f.name) for f in fields(RoutingResult)}, ids=ids)


class CertificateMonitor:
    """Watch a deployed two-stage router and certify its threshold from production traffic.

    Parameters
    ----------
    router : ThresholdRouter or two-stage Cascade
        The deployed router; :meth:`route` / :meth:`aroute` answer exactly as it does.
    target_relative_accuracy, max_accuracy_drop, target_accuracy, target_agreement : float
        The objective; give exactly one. ``target_agreement`` needs no labels at all.
    delta : float, default 0.05
        Error level of the certificate and the alarm.
    audit_rate : float, default 0.1
        Share of the inputs the first stage accepted that get a shadow call to the fallback.
    ledger : Ledger, str or None
        Where records go: a :class:`~confroute.monitoring.ledger.Ledger`, a SQLite file path, or
        a ``postgresql://`` URL. Default: a throw-away in-memory SQLite ledger. A monitor opened on
        an existing ledger resumes it (positions, pending shadow calls, alarm state).
    label_sink : callable, str or None
        Where label requests go: a callable taking a list of request dicts ``{"id", "input",
        "predictions", "reason"}``, a JSONL file path (appended to), or an ``http(s)://`` URL
        (POSTed as a JSON list). Default: none (read them with :meth:`label_requests`).
    policy : {"alert", "tighten", "fallback_all"}, default "alert"
        What an alarm does: log it; move to the certified (or else the most conservative)
        threshold; send every input to the fallback.
    looser : {"recommend", "loosen"}, default "recommend"
        When a looser threshold than the deployed one is certified: report it, or apply it.
    shadow_concurrency : int, default 2
        Shadow calls in flight at once (their own threads; the router's call slots are untouched).
    shadow_fallback : Fallback, optional
        How shadow calls reach the fallback (default: a :class:`~confroute.Fallback` around the
        router's last-stage predictor with its timeout and retries, failures recorded, not raised).
    stream : str, default "default"
        Name of this replica's stream; ids are ``"<stream>:<position>"``. Replicas sharing one
        ledger need distinct names: a stream is claimed by one live monitor at a time (a
        restarted replica takes its own stream over; see ``claim_timeout``). The deployed
        threshold and the alarm are shared by every replica (:mod:`~confroute.monitoring.deploy`).
    random_state : int, optional
        Seed of the audit and label sampling. Draws depend on the input's position only, so a
        restarted stream makes the same draws.
    ladder : sequence of float, optional
        The candidate thresholds (see :func:`~confroute.monitoring.sequential.stream_ladder`),
        fixed for the ledger's life. Default: the statistics' own (from the first scores).
    reference : float, optional
        A lower confidence bound on the fallback's accuracy from an offline certificate (relative
        targets); with it no agreement labels are needed.
    agreement_rate : float, optional
        Share of agreements sent for a label. Default: 0 for ``target_agreement`` or with a
        ``reference``; else 0.01 (the relative and absolute targets need the fallback's accuracy,
        estimated from a random sample of agreements: disagreements alone say how often the
        stages differ, not how often the fallback is right).
    deferred_disagreement_rate : float, default 1.0
        Share of the *deferred* inputs' disagreements sent for a label.
    auto_check : bool, default True
        Run :meth:`check` (certificate, alarm, policy) after every :meth:`add_labels`.
    shadow_nice : int, default 19
        On Linux, the scheduling niceness of the shadow and ledger threads (0: as the serving
        threads), so that a fallback running in this process takes CPU time from the user's
        requests only when they leave some. Ignored where threads cannot be reniced.
    max_shadow_backlog : int, default 10000
        Most inputs waiting for or in a shadow call at once. Beyond it, newly sampled inputs stay
        pending in the ledger (counted in ``shadow_postponed``) and :meth:`flush` or :meth:`resume`
        starts them later: memory stays bounded when the fallback is slow, and no draw is lost.
    claim_timeout : float, default 5.0
        Seconds to wait for another live monitor to let go of ``stream`` (a replica restarted
        right after a crash may find its old connection still closing) before refusing with a
        ValueError.

    Examples
    --------
    >>> import numpy as np
    >>> from confroute import ThresholdRouter
    >>> primary = lambda xs: np.array([[1 - x, x] for x in xs])
    >>> fallback = lambda xs: np.array([[0.0, 1.0] for x in xs])
    >>> router = ThresholdRouter(primary, fallback, threshold=0.8)
    >>> monitor = CertificateMonitor(router, target_agreement=0.9, audit_rate=0.5, random_state=0)
    >>> answer = monitor.route([0.95, 0.1, 0.5])
    >>> answer.labels.tolist() == router.route([0.95, 0.1, 0.5]).labels.tolist(), answer.ids.tolist()
    (True, ['default:0', 'default:1', 'default:2'])
    >>> monitor.flush(); monitor.evidence()["seen"]
    3
    >>> monitor.close()
    """

    def __init__(
        self,
        router: Cascade,
        *,
        target_relative_accuracy: float | None = None,
        max_accuracy_drop: float | None = None,
        target_accuracy: float | None = None,
        target_agreement: float | None = None,
        delta: float = 0.05,
        audit_rate: float = 0.1,
        ledger: Ledger | str | None = None,
        label_sink: LabelSink | str | Callable[[list[dict[str, Any]]], Any] | None = None,
        policy: str = "alert",
        looser: str = "recommend",
        shadow_concurrency: int = 2,
        shadow_fallback: Fallback | None = None,
        stream: str = "default",
        random_state: int | None = None,
        ladder: Sequence[float] | None = None,
        reference: float | None = None,
        agreement_rate: float | None = None,
        deferred_disagreement_rate: float = 1.0,
        auto_check: bool = True,
        shadow_nice: int = 19,
        max_shadow_backlog: int = 10_000,
        claim_timeout: float = 5.0,
    ) -> None:
        given = _check_arguments(router, (target_relative_accuracy, max_accuracy_drop, target_accuracy,
                                          target_agreement), delta, audit_rate, policy, looser, shadow_concurrency)
        self.router = router
        (self.objective, self.target), = given.items()
        self.ladder = None if ladder is None else [float(t) for t in ladder]
        self.reference = None if reference is None else float(reference)
        if agreement_rate is None:
            agreement_rate = 0.0 if self.objective == "target_agreement" or reference is not None else 0.01
        self.agreement_rate = float(agreement_rate)
        self.deferred_disagreement_rate = float(deferred_disagreement_rate)
        self.auto_check = bool(auto_check)
        self.recommendation: PolicyAction | None = None
        self.delta = float(delta)
        self.audit_rate = float(audit_rate)
        self.policy = policy
        self.looser = looser
        self.stream = str(stream)
        self.ledger = open_ledger(":memory:" if ledger is None else ledger)
        self.label_sink = as_label_sink(label_sink)
        self.shadow_fallback = shadow_fallback or _shadow_of(router.stages[-1])
        self._seed = int(random_state) if random_state is not None else secrets.randbits(62)
        self._classes = router.stages[0].classes
        self._lock = threading.Lock()
        self._check_lock = threading.RLock()
        self._n_classes: int | None = len(self._classes) if self._classes else None
        self._config = self._load_config()
        if not self.ledger.claim_stream(self.stream, claim_timeout):
            if not isinstance(ledger, Ledger):
                self.ledger.close()  # opened here: nobody else will
            raise ValueError(f"stream {self.stream!r} of {self.ledger.location!r} is already served by another live "
                             "monitor: give each replica its own stream= name")
        self._next = self.ledger.next_pos(self.stream)
        self.shadow_nice = int(shadow_nice)
        self._pool = ThreadPoolExecutor(int(shadow_concurrency), thread_name_prefix="confroute-shadow",
                                        initializer=_lower_priority, initargs=(self.shadow_nice,))
        self._shadow_futures: set[Future[Any]] = set()
        self._in_flight: set[str] = set()  # ids handed to a shadow call, outcome not yet stored
        self.max_shadow_backlog = int(max_shadow_backlog)
        self.shadow_postponed = 0
        self._jobs: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, daemon=True, name="confroute-ledger")
        self._writer.start()
        self.write_errors: list[BaseException] = []
        self.sink_failures = 0
        self.deployment = Deployment(self.ledger, router, self.objective, self.target, self.delta,
                                     self._config["min_probability"])
        self.deployment.sync()  # the ledger's deployed threshold (shared by every replica) and its e-process
        self.resume()

    # -- configuration kept in the ledger -------------------------------------------------------

    def _load_config(self) -> dict[str, Any]:
        config = {
            "objective": self.objective, "target": float(self.target), "delta": self.delta,
            "audit_rate": self.audit_rate, "agreement_rate": self.agreement_rate,
            "deferred_disagreement_rate": self.deferred_disagreement_rate, "ladder": self.ladder,
            "ladder_floor": -np.inf if not self.ladder else min(self.ladder), "reference": self.reference,
            "min_probability": min(self.audit_rate, self.deferred_disagreement_rate),
            "classes": None if self._classes is None else [json_value(c) for c in self._classes],
            "n_classes": self._n_classes,
        }
        stored = self.ledger.get_meta("config")
        if stored is None:
            self.ledger.set_meta("config", config)
            return config
        for key in ("objective", "target", "delta", "classes", "ladder", "reference"):
            if stored.get(key) != config[key]:
                raise ValueError(
                    f"the ledger {self.ledger.location!r} was written for {key}={stored.get(key)!r}, not "
                    f"{config[key]!r}: open a new ledger for another objective"
                )
        if stored.get("n_classes") is not None:
            self._n_classes = stored["n_classes"]
        config["n_classes"] = self._n_classes
        if config != stored:  # rates may change between runs: each record keeps its own
            self.ledger.set_meta("config", config)
        return config

    def _design(self) -> dict[str, float] | None:
        """Keyword arguments of :func:`~.sequential.label_probability`; None: no labels at all
        (``target_agreement`` is certified from the stages' answers alone)."""
        c = self._config
        if self.objective == "target_agreement":
            return None
        return {"ladder_floor": c["ladder_floor"], "agreement_rate": c["agreement_rate"],
                "deferred_disagreement_rate": c["deferred_disagreement_rate"]}

    @property
    def position(self) -> int:
        """The position the next routed input gets in this monitor's stream (inputs routed so
        far, counting those a previous process committed to the same ledger and stream)."""
        return self._next

    # -- routing (the hot path) -------------------------------------------------------------------

    def route(self, inputs: Sequence[Any]) -> MonitoredResult:
        """Route like the router (same answers), record the batch and schedule its audits."""
        batch = as_batch(inputs)
        return self.observe(batch, self.router.route(batch))

    async def aroute(self, inputs: Sequence[Any]) -> MonitoredResult:
        """Async :meth:`route`."""
        batch = as_batch(inputs)
        return self.observe(batch, await self.router.aroute(batch))

    def observe(self, batch: Sequence[Any], result: RoutingResult, threshold: float | None = None) -> MonitoredResult:
        """Record a batch the router answered elsewhere (a stage-wise engine, a serving ingress
        that calls the stages itself) exactly as :meth:`route` would: ``result`` must be the
        router's answer to ``batch``; ``threshold``: the one that routed it, recorded per input
        (default: this monitor's router's; a serving replica may lag a change by its sync
        interval). Returns it with ids; the shadow calls and the ledger writes happen on the
        monitor's threads."""
        n = len(result)
        with self._lock:
            pos0 = self._next
            self._next += n
        if self._n_classes is None and result.n_classes is not None:
            self._n_classes = result.n_classes
            self._config["n_classes"] = result.n_classes
            self._jobs.put(("config", dict(self._config)))
        ids = np.array([f"{self.stream}:{p}" for p in range(pos0, pos0 + n)], dtype=object)
        routed_at = _threshold_value(self.router) if threshold is None else float(threshold)
        self._jobs.put(("records", (batch, result, ids, pos0, routed_at)))
        return MonitoredResult.wrap(result, ids)

    # -- the writer thread ------------------------------------------------------------------------

    def _write_loop(self) -> None:
        _lower_priority(self.shadow_nice)
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                kind, payload = job
                if kind == "records":
                    self._write_records(*payload)
                    self.deployment.sync()  # adopt a change another replica made
                elif kind == "audits":
                    self._write_audits(*payload)
                elif kind == "config":
                    self.ledger.set_meta("config", payload)
            except BaseException as exc:  # noqa: BLE001 - kept for flush() to raise; routing goes on
                self.write_errors.append(exc)
            finally:
                self._jobs.task_done()

    def _write_records(self, batch: Sequence[Any], result: RoutingResult, ids: np.ndarray, pos0: int,
                       threshold: float) -> None:
        plan = plan_records(result, pos0, self._seed, self.audit_rate, self._design())
        now = time.time()
        stored_input = plan["sampled"] | plan["requested"]
        inputs = [_input_json(batch, i) if stored_input[i] else None for i in range(len(ids))]
        rows = [
            (ids[i], self.stream, pos0 + i, _nan_none(plan["score"][i]), int(plan["primary"][i]),
             int(plan["fallback"][i]), int(result.stage[i]), float(plan["p_fallback"][i]), int(plan["sampled"][i]),
             _nan_none(plan["p_label"][i]), None if result.cost is None else _nan_none(result.cost[i]), _nan_none(threshold), inputs[i], now)
            for i in range(len(ids))
        ]
        requests = [
            self._request(ids[i], inputs[i], plan["primary"][i], plan["fallback"][i], plan["p_label"][i])
            for i in np.flatnonzero(plan["requested"])
        ]
        todo = np.flatnonzero(plan["sampled"])
        claimed = list(ids[todo])
        with self._lock:  # claimed before the commit, so that resume() cannot start them too
            full = len(self._in_flight) + todo.size > self.max_shadow_backlog
            if not full:
                self._in_flight.update(claimed)
        try:
            self.ledger.add_records(rows, requests)
        except BaseException:
            with self._lock:
                self._in_flight.difference_update(claimed)
            raise
        self._send(requests)
        if full:
            self.shadow_postponed += int(todo.size)  # pending in the ledger; resume() starts them
        elif todo.size:
            self._submit_shadow(claimed, take_rows(batch, todo), plan["primary"][todo], plan["score"][todo],
                                inputs, todo)

    def _request(self, id_: str, input_json: str | None, primary: int, fallback: int, p_label: float
                 ) -> tuple[str, float, str, str]:
        reason = "disagreement" if primary != fallback else "agreement_sample"
        payload = {
            "id": id_, "input": None if input_json is None else json.loads(input_json),
            "predictions": {"primary": self._label(primary), "fallback": self._label(fallback)}, "reason": reason,
        }
        return (id_, float(p_label), reason, json.dumps(payload))

    def _label(self, index: int) -> Any:
        return json_value(class_labels(np.array([index]), self._classes)[0])

    def _send(self, requests: Sequence[tuple[str, float, str, str]]) -> None:
        if not requests or self.label_sink is None:
            return
        try:
            self.label_sink([json.loads(r[3]) for r in requests])
        except Exception:  # noqa: BLE001 - the request stays unsent in the ledger; resend_requests()
            self.sink_failures += 1
            return
        self.ledger.mark_sent([r[0] for r in requests])

    def resend_requests(self) -> int:
        """Send the label requests the sink has not taken yet; returns how many were sent."""
        pending = self.ledger.requests(pending_only=True, unsent_only=True)
        self._send([(r["id"], r["p_label"], r["reason"], json.dumps(r["payload"])) for r in pending])
        return len(pending)

    # -- shadow calls -----------------------------------------------------------------------------

    def _submit_shadow(self, ids: list[str], batch: Sequence[Any], primary: np.ndarray, score: np.ndarray,
                       inputs: list[Any], rows: np.ndarray) -> None:
        payload = [inputs[i] for i in rows]
        with self._lock:
            self._in_flight.update(ids)
            future = self._pool.submit(self._shadow, ids, batch, primary, score, payload)
            self._shadow_futures.add(future)
        future.add_done_callback(self._shadow_done)

    def _shadow_done(self, future: Future[Any]) -> None:
        with self._lock:
            self._shadow_futures.discard(future)

    def _shadow(self, ids: list[str], batch: Sequence[Any], primary: np.ndarray, score: np.ndarray,
                inputs: list[str | None]) -> None:
        """One shadow call (on a shadow thread): the fallback's answers go to the writer. A call
        that raises is recorded as failed for every input of the batch."""
        try:
            outcome = self.shadow_fallback.call(batch)
            decided = self.router.decide(1, batch, outcome, self._classes, self._n_classes)
            ok, fallback, errors = decided.ok, np.where(decided.ok, decided.label_index, -1), decided.errors
        except Exception as exc:  # noqa: BLE001 - a failed shadow call is recorded, never raised
            ok = np.zeros(len(ids), dtype=bool)
            fallback = np.full(len(ids), -1, dtype=np.int64)
            errors = np.full(len(ids), f"{type(exc).__name__}: {exc}", dtype=object)
        cost = self._shadow_cost(len(ids))
        self._jobs.put(("audits", (ids, primary, score, fallback, ok, errors, cost, inputs)))

    def _shadow_cost(self, m: int) -> np.ndarray:
        model = self.router.cost_model
        if model is None:
            return np.full(m, np.nan)
        reached = np.zeros((2, m), dtype=bool)
        reached[1] = True
        return model.per_input(reached)

    def _write_audits(self, ids: list[str], primary: np.ndarray, score: np.ndarray, fallback: np.ndarray,
                      ok: np.ndarray, errors: np.ndarray, cost: np.ndarray, inputs: list[str | None]) -> None:
        design = self._design()
        p = np.zeros(len(ids)) if design is None else np.asarray(label_probability(
            score, primary, fallback, np.ones(len(ids), dtype=bool), **design), dtype=float)
        p = np.where(ok, p, np.nan)
        rows = [(ids[i], int(fallback[i]), int(ok[i]), None if ok[i] else str(errors[i]), _nan_none(cost[i]),
                 _nan_none(p[i])) for i in range(len(ids))]
        u = uniform_draws(self._seed, np.array([_pos(i) for i in ids], dtype=np.uint64), 2)
        ask = ok & (u < np.nan_to_num(p))
        requests = [
            self._request(ids[i], inputs[i], int(primary[i]), int(fallback[i]), float(p[i]))
            for i in np.flatnonzero(ask)
        ]
        try:
            self.ledger.add_audits(rows, requests)
        finally:
            with self._lock:
                self._in_flight.difference_update(ids)
        self._send(requests)

    def resume(self) -> int:
        """Start the shadow calls of sampled records that have no stored outcome (after a restart,
        or after :meth:`flush` found some left); returns how many were started."""
        with self._lock:
            busy = set(self._in_flight)
        pending = [p for p in self.ledger.pending_audits(self.stream) if p[0] not in busy][: self.max_shadow_backlog]
        if not pending:
            return 0
        stored = self.ledger.stream_rows()
        where = {i: k for k, i in enumerate(stored["id"].tolist())}
        ids = [p[0] for p in pending]
        inputs = [p[1] for p in pending]
        batch = as_batch([json.loads(s) if s is not None else None for s in inputs])
        at = np.array([where[i] for i in ids], dtype=np.int64)
        primary, score = stored["primary"][at], stored["score"][at]
        for lo in range(0, len(ids), 256):
            sl = np.arange(lo, min(lo + 256, len(ids)))
            self._submit_shadow(ids[lo:lo + 256], take_rows(batch, sl), primary[sl], score[sl], inputs, sl)
        return len(ids)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every scheduled record, shadow call and label request is in the ledger.

        Raises the first error the writer met (the answers were not affected)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._jobs.join()
            with self._lock:
                futures = list(self._shadow_futures)
            if not futures:
                self._jobs.join()
                with self._lock:
                    idle = not self._shadow_futures and self._jobs.unfinished_tasks == 0
                if idle and not (self.shadow_postponed and self.resume()):
                    break
                continue
            for f in futures:
                f.result(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if self.write_errors:
            raise self.write_errors[0]

    def close(self) -> None:
        """Flush, then stop the monitor's threads and close the ledger."""
        try:
            self.flush()
        finally:
            self._jobs.put(None)
            self._writer.join()
            self._pool.shutdown(wait=True)
            self.ledger.close()

    def __enter__(self) -> CertificateMonitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- labels -----------------------------------------------------------------------------------

    def add_labels(self, ids: Sequence[str], labels: Sequence[Any], source: str = "add_labels") -> int:
        """Take labels for requested ids (class values, as the router's classes name them), at
        any time; then :meth:`check` runs (with ``auto_check``).

        All or nothing: unknown ids, ids never sent for labelling, duplicates and labels outside
        the classes raise :class:`~confroute.monitoring.ledger.LabelError` and store nothing.
        Returns how many labels were stored."""
        count = add_labels(self.ledger, ids, labels, source)
        if self.auto_check and count:
            self.check()
        return count

    def import_labels(self, path: str) -> int:
        """Import a labels file (JSONL lines ``{"id": ..., "label": ...}`` or a CSV with columns
        ``id,label``) in one call; all or nothing like :meth:`add_labels`."""
        count = import_labels(self.ledger, path)
        if self.auto_check and count:
            self.check()
        return count

    def label_requests(self, pending_only: bool = True) -> list[dict[str, Any]]:
        """The label requests (by default those still without a label), oldest first."""
        return self.ledger.requests(pending_only=pending_only)

    # -- evidence, certificate, alarms ------------------------------------------------------------

    def evidence(self) -> dict[str, Any]:
        """Counts from the ledger: seen, sampled, audited, shadow failures, disagreements, labels
        requested / received / pending, label-sink failures."""
        out: dict[str, Any] = dict(self.ledger.counts())
        out["sink_failures"] = self.sink_failures
        return out

    def metrics(self) -> dict[str, float]:
        """Gauges for a metrics endpoint, from the ledger: ``audited``, ``shadow_failures``,
        ``disagreements``, ``labels_pending``, ``labels_received``, the last stored certificate's
        ``certified_lower_bound`` and ``certified_threshold`` (NaN when none or not feasible;
        ``inf``: everything to the fallback), ``alarm`` (1.0 / 0.0) and the ``deployed_threshold``."""
        counts = self.ledger.counts()
        stored = self.ledger.certificates()
        last = stored[-1]["body"] if stored else {}
        feasible = bool(last.get("feasible"))
        return {
            **{k: float(counts[k]) for k in ("seen", "audited", "shadow_failures", "disagreements",
                                             "labels_pending", "labels_received")},
            "certified_lower_bound": _float_or_nan(last.get("guaranteed")) if feasible else float("nan"),
            "certified_threshold": _float_or_nan(last.get("threshold")) if feasible else float("nan"),
            "alarm": float(self.alarm),
            "deployed_threshold": _threshold_value(self.router),
        }

    def certificate(self, store: bool = True) -> Any:
        """The certificate from every record in the ledger now (see
        :func:`~confroute.monitoring.sequential.certify_stream`); stored in the ledger with the
        event it was computed up to, so that ``confroute audit replay`` can recompute it."""
        cert, watermark = certify_ledger(self.ledger)
        if store:
            self.ledger.add_certificate(cert.to_dict(), watermark)
        return cert

    def check(self) -> dict[str, Any]:
        """Certify (from every replica's records), update the alarm's e-process, and apply the
        policy, as one compare-and-set of the shared deployment state (see
        :meth:`Deployment.check <confroute.monitoring.deploy.Deployment.check>`); returns what
        happened: ``certificate``, ``e_value``, ``alarm``, ``action`` (a
        :class:`~confroute.monitoring.sequential.PolicyAction`) and ``threshold`` (deployed)."""
        with self._check_lock:
            out = self.deployment.check(self.policy, self.looser)
            action = out["action"]
            self.recommendation = action if action.action == "recommend" else None
            return out

    def sync(self) -> dict[str, Any]:
        """Adopt the shared deployed threshold now (a change another replica made; the monitor
        also does so after every batch it writes and at every check); returns the shared state
        (``version``, ``threshold``, the e-process)."""
        return self.deployment.sync()

    @property
    def alarm(self) -> bool:
        """Whether the (shared) e-process of the deployed threshold has crossed ``1 / delta``."""
        return self.deployment.alarm

    # -- threshold changes ------------------------------------------------------------------------

    def set_threshold(self, threshold: float, reason: str = "manual", evidence: dict[str, Any] | None = None,
                      reverts: int | None = None) -> int:
        """Deploy another threshold for every replica of the ledger, logged with its evidence (the
        alarm's e-process starts again for the new threshold). Returns the change's event number."""
        with self._check_lock:
            return self.deployment.set_threshold(threshold, reason, evidence, reverts)

    def revert(self) -> int:
        """Undo the last threshold change not yet undone (logged as a change of its own).

        Raises
        ------
        ValueError
            When there is no change left to undo."""
        with self._check_lock:
            return self.deployment.revert()

    def changes(self) -> list[dict[str, Any]]:
        """Every logged threshold change (old, new, reason, evidence, reverts), oldest first."""
        return self.ledger.changes()


def _pos(id_: str) -> int:
    return int(id_.rsplit(":", 1)[1])


def _nan_none(x: Any) -> float | None:
    x = float(x)
    return None if x != x else x


def _input_json(batch: Sequence[Any], i: int) -> str:
    row = batch[i]
    return json.dumps(row.tolist() if isinstance(row, np.ndarray) else json_value(row))


def _lower_priority(nice: int) -> None:
    """Renice the calling thread (Linux: a thread is a schedulable task of its own)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:  # not permitted here: run at the normal priority
        pass


def _check_arguments(router: Any, targets: tuple[float | None, ...], delta: float, audit_rate: float, policy: str,
                     looser: str, shadow_concurrency: int) -> dict[str, float]:
    """The monitor's arguments checked; returns ``{objective parameter: target}``."""
    if not isinstance(router, Cascade) or router.n_stages != 2:
        raise ValueError("CertificateMonitor watches a two-stage router (ThresholdRouter or a 2-stage Cascade)")
    given = {k: float(v) for k, v in zip(TARGETS, targets) if v is not None}
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(TARGETS)}; got {sorted(given) or 'none'}")
    if not 0.0 < float(audit_rate) <= 1.0:
        raise ValueError(f"audit_rate must lie in (0, 1], got {audit_rate!r}")
    if not 0.0 < float(delta) < 1.0:
        raise ValueError(f"delta must lie in (0, 1), got {delta!r}")
    if policy not in ALARM_POLICIES:
        raise ValueError(f"policy must be one of {ALARM_POLICIES}, got {policy!r}")
    if looser not in LOOSER_POLICIES:
        raise ValueError(f"looser must be one of {LOOSER_POLICIES}, got {looser!r}")
    if int(shadow_concurrency) < 1:
        raise ValueError(f"shadow_concurrency must be >= 1, got {shadow_concurrency!r}")
    return given


def _float_or_nan(x: Any) -> float:
    if x is None:
        return float("nan")
    return float("inf") if x in ("inf", "Infinity") else float(x)


def _shadow_of(stage: Fallback) -> Fallback:
    return Fallback(stage.predictor, on_error="abstain", retries=stage.retries, backoff=stage.backoff,
                    timeout=stage.timeout, batch_size=stage.batch_size, name=f"{stage.name}-shadow")
