"""The audit loop of the Ray Serve application: one :class:`~confroute.monitoring.CertificateMonitor`
for the whole service, shadow calls through the fallback stage's deployment.

:func:`confroute.integrations.serve.build_app` with ``audit=`` adds one deployment,
:class:`AuditServer`, with **exactly one replica**: the ledger has one writer and the stream one
sequence of positions, however many ingress replicas there are (each ingress replica hands its
routed batches to the same audit replica, so nothing is counted twice). After answering a
request, the ingress sends ``(inputs, result)`` to it without waiting (:func:`observe_later`):
the user's answer is neither delayed nor changed, whatever the audit replica does.

The audit replica builds the router once (for its classes, score, calibration, cost and
threshold: the one accept rule) but never calls its models: a shadow call goes through a
:class:`HandlePredictor`, which calls the fallback stage's deployment (:meth:`StageServer.predict
<confroute.integrations.serve.StageServer.predict>`), under the monitor's own
:class:`~confroute.Fallback` (the fallback stage's timeout and retries, failures recorded, never
raised) and its own concurrency bound (``shadow_concurrency`` threads). A failed shadow call is
stored as a failed audit and counted (``shadow_failures``).

HTTP endpoints (the ingress forwards them): ``POST /labels`` (``{"ids": [...], "labels": [...]}``;
HTTP 400 with ``{"error": ...}`` for unknown ids, duplicates or labels outside the classes: the
monitor's :class:`~confroute.monitoring.ledger.LabelError`; nothing is stored then) and ``GET
/certificate`` (certify now; the certificate, the evidence and the metrics as JSON).

The deployed threshold is the ledger's deployment record: the monitor's ``policy`` / ``looser``
and :meth:`AuditServer.set_threshold` / :meth:`AuditServer.revert` change it, and the replicas of
the first stage follow it within ``sync_interval_s`` (:mod:`.serve_policy`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..core._json import json_tree
from ..core.types import Predictions, RoutingResult
from ..predictors.base import Predictor

__all__ = ["AuditServer", "HandlePredictor", "AUDIT_METRICS", "AUDIT_PATHS", "MONITOR_OPTIONS", "AUDIT_NUM_CPUS",
           "SERVING_POLICIES", "SERVING_LOOSER", "audit_response", "observe_later", "bind_audit", "audit_cpu_demand", "check_audit"]

logger = logging.getLogger("confroute.serve")

#: The monitor's arguments an ``audit`` mapping may give (those of ``CertificateMonitor``).
MONITOR_OPTIONS = (
    "target_relative_accuracy", "max_accuracy_drop", "target_accuracy", "target_agreement", "delta",
    "audit_rate", "ledger", "label_sink", "policy", "looser", "shadow_concurrency", "stream", "random_state",
    "ladder", "reference", "agreement_rate", "deferred_disagreement_rate", "max_shadow_backlog",
)
#: Default CPUs reserved by the audit replica.
AUDIT_NUM_CPUS = 0.1
#: Alarm policies a served audit loop takes. A policy that moves the threshold (``tighten``,
#: ``fallback_all``, ``looser="loosen"``) changes the ledger's deployment record; the deciding
#: stage replicas follow it within ``sync_interval_s`` (:mod:`.serve_policy`).
SERVING_POLICIES = ("alert", "tighten", "fallback_all")
#: ``looser`` values a served audit loop takes.
SERVING_LOOSER = ("recommend", "loosen")
#: The endpoints the audit loop adds to the ingress.
AUDIT_PATHS = ("/labels", "/certificate")

#: Gauges of the audit loop: ``(metric, key of CertificateMonitor.metrics(), description)``.
#: Set from the ledger by the audit replica (after every routed batch, at most once a second, and
#: after every label import or certificate).
AUDIT_METRICS: tuple[tuple[str, str, str], ...] = (
    ("confroute_audit_seen", "seen", "Inputs recorded in the audit ledger"),
    ("confroute_audit_audited", "audited", "Shadow calls to the fallback that answered"),
    ("confroute_audit_shadow_failures", "shadow_failures", "Shadow calls to the fallback that failed"),
    ("confroute_audit_disagreements", "disagreements", "Inputs whose two stages' answers are known to differ"),
    ("confroute_audit_labels_pending", "labels_pending", "Label requests without a label yet"),
    ("confroute_audit_labels_received", "labels_received", "Labels received"),
    ("confroute_audit_certified_lower_bound", "certified_lower_bound",
     "Lower confidence bound of the last stored certificate (NaN: none feasible)"),
    ("confroute_audit_certified_threshold", "certified_threshold",
     "Loosest certified threshold of the last stored certificate (NaN: none; inf: all to the fallback)"),
    ("confroute_audit_alarm", "alarm", "1 while the alarm of the deployed threshold is raised"),
)


class HandlePredictor(Predictor):
    """A predictor that calls a stage's Ray Serve deployment (its ``predict`` method) and waits
    for the answer: the fallback of the audit loop's shadow calls. Call it from a thread, not
    from an event loop (``DeploymentResponse.result`` blocks)."""

    def __init__(self, handle: Any, classes: Sequence[Any] | None, name: str = "fallback",
                 timeout_s: float | None = None, batch_size: int | None = None) -> None:
        self.handle = handle
        self.classes = None if classes is None else tuple(classes)
        self.name = name
        self.timeout_s = timeout_s
        self.batch_size = batch_size

    def _predict_batch(self, inputs: Sequence[Any]) -> Predictions:
        out = self.handle.predict.remote(list(inputs)).result(timeout_s=self.timeout_s)
        if not isinstance(out, Predictions):
            raise TypeError(f"{self.name}: the stage deployment answered {type(out).__name__}, not Predictions")
        return out


class AuditServer:
    """The audit replica (one for the application): a ``CertificateMonitor`` around the router,
    with shadow calls through the fallback stage's deployment handle."""

    def __init__(self, source: Any, app: str, options: Mapping[str, Any], fallback: Any,
                 metrics: bool = True, check_every: int = 10_000) -> None:
        from ..monitoring.monitor import CertificateMonitor
        from ..routing.fallback import Fallback

        router = source.build()
        last = router.stages[-1]
        shadow = Fallback(
            HandlePredictor(fallback, last.classes, name=f"{router.names[-1]}-shadow",
                            batch_size=last.batch_size),
            on_error="abstain", retries=last.retries, backoff=last.backoff, timeout=last.timeout,
            name=f"{router.names[-1]}-shadow")
        self.monitor = CertificateMonitor(router, shadow_fallback=shadow, **dict(options))
        self.app = app
        self._gauges: dict[str, Any] = {}
        if metrics:
            from ray.util import metrics as ray_metrics

            for name, _, doc in AUDIT_METRICS:
                self._gauges[name] = ray_metrics.Gauge(name, description=doc, tag_keys=("app",))
        self._reported = 0.0
        self.check_every = int(check_every)
        self._since_check = 0
        self._checking: asyncio.Future[Any] | None = None
        self._pending: set[asyncio.Future[Any]] = set()  # references to the background tasks

    async def observe(self, inputs: Sequence[Any], result: RoutingResult, threshold: float | None = None) -> int:
        """Record a batch the ingress routed (``threshold``: the one the first stage decided with,
        recorded per input; default the monitor's); returns its first position in the stream."""
        first = self.monitor.position
        self.monitor.observe(inputs, result, threshold=threshold)
        self._since_check += len(result)
        if self.check_every and self._since_check >= self.check_every and (
                self._checking is None or self._checking.done()):
            # Certificate and alarm every check_every inputs, off this call (the label-free
            # objective gets no POST /labels to trigger them).
            self._since_check = 0
            self._checking = asyncio.ensure_future(asyncio.to_thread(self._periodic_check))
            self._pending.add(self._checking)
            self._checking.add_done_callback(self._pending.discard)
        if time.monotonic() - self._reported >= 1.0:  # the gauges, from the ledger, off this call
            self._reported = time.monotonic()
            self._pending.add(task := asyncio.ensure_future(asyncio.to_thread(self._report_quietly)))
            task.add_done_callback(self._pending.discard)
        return first

    def __del__(self) -> None:
        """Graceful shutdown (Ray Serve calls it): commit what is queued, within 10 s. Sampled
        inputs whose shadow call did not finish stay pending in the ledger; the next audit
        replica on the same ledger starts them again."""
        monitor = getattr(self, "monitor", None)
        if monitor is not None:
            closer = threading.Thread(target=monitor.close, daemon=True, name="confroute-audit-close")
            closer.start()
            closer.join(10.0)

    def _report_quietly(self) -> None:
        try:
            self.report()
        except Exception:  # noqa: BLE001 - logged; the next batch tries again
            logger.exception("audit: setting the gauges failed")

    def _periodic_check(self) -> None:
        try:
            self.monitor.check()
            self.report()
        except Exception:  # noqa: BLE001 - logged; the next check tries again
            logger.exception("audit: the periodic check failed")

    async def add_labels(self, ids: Any, labels: Any) -> dict[str, Any]:
        """Take labels (all or nothing): ``{"stored": n}`` or ``{"error": message}``."""
        return await asyncio.to_thread(self._add_labels, ids, labels)

    async def certificate(self, flush: bool = False) -> dict[str, Any]:
        """Certify now (stored in the ledger); the certificate, the evidence and the metrics
        (``flush``: first wait for every record and shadow call scheduled so far)."""
        return await asyncio.to_thread(self._certificate, flush)

    async def flush(self) -> dict[str, float]:
        """Wait until every record and shadow call of the batches seen so far is in the ledger;
        returns the metrics then."""
        await asyncio.to_thread(self.monitor.flush)
        return self.report()

    def _add_labels(self, ids: Any, labels: Any) -> dict[str, Any]:
        """Take labels (all or nothing): ``{"stored": n}`` or ``{"error": message}``."""
        from ..monitoring.ledger import LabelError

        if not isinstance(ids, list) or not isinstance(labels, list):
            return {"error": 'send a JSON object {"ids": [...], "labels": [...]} (two lists of one length)'}
        if len(ids) != len(labels):
            return {"error": f"ids and labels differ in length ({len(ids)} ids, {len(labels)} labels)"}
        try:
            stored = self.monitor.add_labels([str(i) for i in ids], labels, source="POST /labels")
        except LabelError as exc:
            return {"error": str(exc)}
        self.report()
        return {"stored": stored}

    def _certificate(self, flush: bool) -> dict[str, Any]:
        if flush:
            self.monitor.flush()
        checked = self.monitor.check()
        self.report()
        action = checked["action"]
        recommendation = self.monitor.recommendation
        return {
            "certificate": checked["certificate"].to_dict(),
            "evidence": self.monitor.evidence(),
            "metrics": self.monitor.metrics(),
            "alarm": bool(checked["alarm"]),
            "e_value": checked["e_value"],
            "deployed_threshold": checked["threshold"],
            "action": getattr(action, "action", None),
            "recommendation": None if recommendation is None else recommendation.threshold,
        }

    async def set_threshold(self, threshold: float, reason: str = "manual") -> dict[str, Any]:
        """Deploy ``threshold`` (logged in the ledger; every deciding stage replica adopts it
        within ``sync_interval_s``): ``{"change": event, "state": the deployment record}``."""
        ev = await asyncio.to_thread(self.monitor.set_threshold, float(threshold), reason)
        return {"change": ev, "state": await asyncio.to_thread(self.monitor.sync)}

    async def revert(self) -> dict[str, Any]:
        """Undo the last threshold change not yet undone (logged); as :meth:`set_threshold`."""
        ev = await asyncio.to_thread(self.monitor.revert)
        return {"change": ev, "state": await asyncio.to_thread(self.monitor.sync)}

    async def deployment(self) -> dict[str, Any]:
        """The ledger's deployment record (``version``, ``threshold``, the alarm's e-process)."""
        return await asyncio.to_thread(self.monitor.sync)

    async def metrics(self) -> dict[str, float]:
        """:meth:`CertificateMonitor.metrics` (read from the ledger)."""
        return self.monitor.metrics()

    def report(self) -> dict[str, float]:
        """Set the gauges from the ledger; returns the values set."""
        values = self.monitor.metrics()
        for name, key, _ in AUDIT_METRICS:
            if name in self._gauges:
                self._gauges[name].set(float(values[key]), tags={"app": self.app})
        self._reported = time.monotonic()
        return values


_UNRECORDED: list[Any] = []


def _unrecorded(app: str, n: int) -> None:
    """Count inputs the audit replica never received (``confroute_audit_unrecorded``)."""
    try:
        if not _UNRECORDED:
            from ray.util import metrics as ray_metrics

            _UNRECORDED.append(ray_metrics.Counter(
                "confroute_audit_unrecorded", description="Routed inputs the audit replica could not record",
                tag_keys=("app",)))
        _UNRECORDED[0].inc(float(n), tags={"app": app})
    except Exception:  # noqa: BLE001 - outside Ray (tests): logged only
        pass


def observe_later(audit: Any, inputs: Sequence[Any], result: RoutingResult, pending: set[Any],
                  app: str = "confroute", threshold: float | None = None) -> None:
    """Hand a routed batch (and the ``threshold`` its first stage decided with) to the audit
    replica without waiting for it (the caller answers at once). A batch the audit replica could not take (it died or is unreachable) is logged and
    counted in ``confroute_audit_unrecorded``."""

    async def send() -> None:
        try:
            await audit.observe.remote(list(inputs), result, threshold)
        except Exception as exc:  # noqa: BLE001 - the user's answer is already out
            logger.warning("audit: a routed batch of %d inputs was not recorded (%s: %s)", len(inputs),
                           type(exc).__name__, exc)
            _unrecorded(app, len(inputs))

    task = asyncio.ensure_future(send())
    pending.add(task)  # keep a reference until it is done
    task.add_done_callback(pending.discard)


async def audit_response(audit: Any, path: str, method: str, request: Any) -> Any:
    """The answer of ``POST /labels`` or ``GET /certificate`` (``audit``: the audit deployment's
    handle, ``None`` when the application has no audit loop: HTTP 404)."""
    from starlette.responses import JSONResponse, Response

    if audit is None:
        return JSONResponse({"error": f"no endpoint {method} {path}: this service has no audit section"}, 404)
    if path == "/labels" and method == "POST":
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return JSONResponse({"error": f"the body is not JSON ({exc})"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": 'send a JSON object {"ids": [...], "labels": [...]}'}, 400)
        answer = await audit.add_labels.remote(body.get("ids"), body.get("labels"))
        return JSONResponse(answer, 400 if "error" in answer else 200)
    if path == "/certificate" and method == "GET":
        flush = request.query_params.get("flush", "") in ("1", "true")
        answer = await audit.certificate.remote(flush)
        return Response(json.dumps(json_tree(answer), allow_nan=False), media_type="application/json")
    allowed = "POST" if path == "/labels" else "GET"
    return JSONResponse({"error": f"{path} takes {allowed}, not {method}"}, 405)



def check_audit(audit: Mapping[str, Any], n_stages: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """An ``audit`` mapping of :func:`build_app` checked: ``(monitor arguments, deployment
    options)``; :class:`ValueError` naming the key at fault.

    Examples
    --------
    >>> check_audit({"target_agreement": 0.99, "ledger": "a.sqlite"}, 2)[1]
    {'ray_actor_options': {'num_cpus': 0.1}, 'max_ongoing_requests': 256}
    >>> check_audit({"target_agreement": 0.99, "ledger": "a.sqlite", "deployment": {"num_replicas": 2}}, 2)
    Traceback (most recent call last):
    ...
    ValueError: audit.deployment.num_replicas: the audit loop runs in exactly one replica (one ledger writer, one stream of positions; every ingress replica sends it its batches), got 2
    """
    opts = dict(audit)
    deployment = dict(opts.pop("deployment", None) or {})
    unknown = sorted(set(opts) - set(MONITOR_OPTIONS) - {"check_every", "sync_interval_s"})
    if unknown:
        raise ValueError(f"audit: unknown keys {unknown}; allowed: "
                         f"{sorted((*MONITOR_OPTIONS, 'check_every', 'sync_interval_s', 'deployment'))}")
    interval = opts.get("sync_interval_s", 1.0)
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < float("inf"):
        raise ValueError(f"audit.sync_interval_s: seconds between two reads of the deployed threshold, a number > 0, "
                         f"got {interval!r}")
    every = opts.get("check_every", 10_000)
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ValueError(f"audit.check_every: an integer >= 0 (0: no periodic check), got {every!r}")
    if n_stages != 2:
        raise ValueError(f"audit: the audit loop watches a two-stage router, this one has {n_stages} stages")
    if not opts.get("ledger"):
        raise ValueError("audit.ledger: give a SQLite file or a postgresql:// URL (the records must outlive the service)")
    for key, allowed in (("policy", SERVING_POLICIES), ("looser", SERVING_LOOSER)):
        if opts.get(key, allowed[0]) not in allowed:
            raise ValueError(f"audit.{key}: {opts[key]!r} is not a served policy (allowed: {list(allowed)})")
    n = deployment.get("num_replicas", 1)
    if n != 1 or "autoscaling_config" in deployment:
        what = "autoscaling_config" if "autoscaling_config" in deployment else "num_replicas"
        raise ValueError(f"audit.deployment.{what}: the audit loop runs in exactly one replica (one ledger writer, one "
                         f"stream of positions; every ingress replica sends it its batches), got "
                         f"{deployment.get(what)!r}")
    deployment.pop("num_replicas", None)
    deployment.setdefault("ray_actor_options", {"num_cpus": AUDIT_NUM_CPUS})
    deployment.setdefault("max_ongoing_requests", 256)
    return opts, deployment


def audit_cpu_demand(audit: Mapping[str, Any] | None) -> list[tuple[str, int, float]]:
    """CPUs the audit replica reserves (``[]`` without an audit loop), as
    :func:`~confroute.integrations.serve.cpu_demand` counts them.

    Examples
    --------
    >>> audit_cpu_demand({"deployment": {"ray_actor_options": {"num_cpus": 0.5}}})
    [('audit', 1, 0.5)]
    """
    if not audit:
        return []
    actor = dict(audit.get("deployment") or {}).get("ray_actor_options")
    return [("audit", 1, float(actor.get("num_cpus", 1)) if isinstance(actor, Mapping) else AUDIT_NUM_CPUS)]


def bind_audit(serve: Any, source: Any, app: str, audit: Mapping[str, Any] | None, stages: Sequence[Any],
               metrics: bool) -> Any:
    """The bound audit deployment (one replica) of :func:`~confroute.integrations.serve.build_app`,
    or ``None`` without ``audit``. ``stages``: the stages' bound deployments (shadow calls go to
    the last one's)."""
    if audit is None:
        return None
    opts, deployment = check_audit(audit, len(stages))
    every = opts.pop("check_every", 10_000)
    opts.pop("sync_interval_s", None)  # the stage replicas' (serve_policy.threshold_sync)
    dep = serve.deployment(AuditServer, name="audit", num_replicas=1, **deployment)
    return dep.bind(source, app, opts, stages[-1], metrics=metrics, check_every=every)
