"""The served application's metrics, in one table, for both serving engines.

:data:`METRICS` lists every metric (name, kind, tags, description). Two sinks take the same
calls (``inc``, ``set``, ``observe``):

* :class:`RayMetrics` (``engine: ray``): Ray's metrics API (:mod:`ray.util.metrics`), which every
  Ray node exports for Prometheus; names carry Ray's ``ray_`` prefix.
* :class:`PrometheusMetrics` (``engine: local``): ``prometheus_client`` objects in a registry of
  the application's own, served at ``GET /metrics`` by the local engine (no prefix).

Counters get Prometheus' ``_total`` suffix, histograms ``_bucket``/``_sum``/``_count``. Every
metric also carries the tag ``app`` (the served model name). Either sink is a no-op when
``enabled`` is False.
"""

from __future__ import annotations

from typing import Any

__all__ = ["METRICS", "BREAKER_STATES", "RayMetrics", "PrometheusMetrics"]

#: The metrics the application exports (name, kind, tags, description).
METRICS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("confroute_requests", "counter", ("endpoint", "status"), "HTTP requests by endpoint and outcome (ok, error)"),
    ("confroute_inputs", "counter", (), "Inputs received"),
    ("confroute_reached", "counter", ("stage",), "Inputs that reached each stage"),
    ("confroute_answered", "counter", ("stage",), "Inputs answered by each stage (stage='abstained': none)"),
    ("confroute_routed", "counter", (), "Inputs the first stage deferred to a later stage"),
    ("confroute_degraded", "counter", ("stage",), "Inputs a failing stage could not answer (by that stage)"),
    ("confroute_abstained", "counter", (), "Inputs no stage answered (on_error='abstain')"),
    ("confroute_errors", "counter", ("stage", "kind"), "Failed inputs by stage and error type"),
    ("confroute_cost", "counter", (), "Summed cost of the answered inputs (cost model units)"),
    ("confroute_routed_fraction", "gauge", (), "Share of inputs routed past the first stage, since start"),
    ("confroute_request_latency_seconds", "histogram", ("endpoint",), "Request latency at the ingress"),
    ("confroute_stage_latency_seconds", "histogram", ("stage",), "Latency of one stage call, queueing and batching included"),
    ("confroute_stage_batch_size", "histogram", ("stage",), "Inputs per model call after dynamic batching"),
    ("confroute_breaker_state", "gauge", ("stage",), "Circuit breaker: 0 closed, 1 half-open, 2 open"),
    ("confroute_drift_psi", "gauge", (), "PSI of the first stage's live scores (window) vs calibration"),
    ("confroute_drift_ks_statistic", "gauge", (), "KS statistic of the live scores (window) vs calibration"),
    ("confroute_drift_ks_pvalue", "gauge", (), "KS p-value of the live scores (window)"),
    ("confroute_drift_routed_fraction", "gauge", (), "Routed fraction in the drift window"),
    ("confroute_drift_alarm", "gauge", ("flag",), "1 while a drift flag is raised (psi, ks, rate, recalibration_due)"),
)

#: The value of ``confroute_breaker_state`` for each circuit-breaker state.
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


def _buckets(name: str) -> list[float]:
    return [float(b) for b in (BATCH_BUCKETS if name.endswith("batch_size") else LATENCY_BUCKETS)]


class _Sink:
    """The calls both sinks take; ``self._m[name]`` is the metric object of ``name``."""

    def __init__(self, app: str, enabled: bool) -> None:
        self.app, self.enabled = app, enabled
        self._m: dict[str, Any] = {}

    def inc(self, name: str, value: float = 1.0, **tags: str) -> None:
        if self.enabled and value > 0:
            self._inc(self._m[name], float(value), {"app": self.app, **tags})

    def set(self, name: str, value: float, **tags: str) -> None:
        if self.enabled:
            self._set(self._m[name], float(value), {"app": self.app, **tags})

    def observe(self, name: str, value: float, **tags: str) -> None:
        if self.enabled:
            self._observe(self._m[name], float(value), {"app": self.app, **tags})

    def _inc(self, metric: Any, value: float, tags: dict[str, str]) -> None:
        metric.inc(value, tags=tags)

    def _set(self, metric: Any, value: float, tags: dict[str, str]) -> None:
        metric.set(value, tags=tags)

    def _observe(self, metric: Any, value: float, tags: dict[str, str]) -> None:
        metric.observe(value, tags=tags)


class RayMetrics(_Sink):
    """The metrics of :data:`METRICS` through Ray's metrics API (the Ray Serve engine)."""

    def __init__(self, app: str, enabled: bool = True) -> None:
        super().__init__(app, enabled)
        if not enabled:
            return
        from ray.util import metrics

        for name, kind, tags, doc in METRICS:
            keys = ("app", *tags)
            if kind == "counter":
                self._m[name] = metrics.Counter(name, description=doc, tag_keys=keys)
            elif kind == "gauge":
                self._m[name] = metrics.Gauge(name, description=doc, tag_keys=keys)
            else:
                self._m[name] = metrics.Histogram(name, description=doc, boundaries=_buckets(name), tag_keys=keys)


class PrometheusMetrics(_Sink):
    """The metrics of :data:`METRICS` as ``prometheus_client`` objects in a registry of their own
    (the local engine); :meth:`exposition` is the text ``GET /metrics`` returns.

    Examples
    --------
    >>> m = PrometheusMetrics("sst2")
    >>> m.inc("confroute_inputs", 3)
    >>> [line for line in m.exposition().decode().splitlines() if line.startswith("confroute_inputs_total")]
    ['confroute_inputs_total{app="sst2"} 3.0']
    """

    def __init__(self, app: str, enabled: bool = True) -> None:
        super().__init__(app, enabled)
        if not enabled:
            return
        try:
            import prometheus_client as prom
        except ImportError:
            raise ImportError("the local engine's metrics need prometheus-client: pip install 'confroute[serve]' "
                              "(or serve with metrics off)") from None
        self.registry = prom.CollectorRegistry()
        kinds = {"counter": prom.Counter, "gauge": prom.Gauge}
        for name, kind, tags, doc in METRICS:
            keys = ("app", *tags)
            if kind == "histogram":
                self._m[name] = prom.Histogram(name, doc, keys, registry=self.registry, buckets=_buckets(name))
            else:
                self._m[name] = kinds[kind](name, doc, keys, registry=self.registry)

    def _inc(self, metric: Any, value: float, tags: dict[str, str]) -> None:
        metric.labels(**tags).inc(value)

    def _set(self, metric: Any, value: float, tags: dict[str, str]) -> None:
        metric.labels(**tags).set(value)

    def _observe(self, metric: Any, value: float, tags: dict[str, str]) -> None:
        metric.labels(**tags).observe(value)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (empty when disabled)."""
        if not self.enabled:
            return b""
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))
