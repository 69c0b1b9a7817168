"""Serve a router online: a Ray Serve application with one deployment per stage.

:func:`build_app` turns a :class:`~confroute.Cascade` (or a zero-argument function that builds
one, so that models load where they run) into a Ray Serve application:

* **one deployment per stage**, each with its own replicas, resources (``num_cpus``,
  ``num_gpus``) and dynamic batching (``serve.batch``: concurrent requests are merged into one
  model call of up to ``max_batch_size`` inputs). A stage replica runs
  :func:`confroute.routing.stagewise.advance`: the stage is called through its
  :class:`~confroute.Fallback` (retries, timeout, circuit breaker, ``on_error``) and accepts or
  defers with the router's own rule;
* an **ingress** deployment that receives the requests, sends every input to stage 0 and only the
  deferred inputs on to the next stage, and answers in input order, over HTTP:

  ``POST /route``
      JSON ``{"inputs": [...]}`` in; ``{"results": [row, ...]}`` out, one row per input with
      the columns of the one routing output schema (:mod:`confroute.core.schema`, the same as
      ``RoutingResult.to_dict()["rows"]``): ``label`` (the class value, ``null`` where no
      stage answered), ``label_index``, ``confidence``, ``stage`` (the answering stage's
      *index*, ``-1`` where none), ``stage_name`` (its name), ``degraded``, ``error``, ``cost``
      (with a cost model) and each stage's ``<name>_label`` / ``<name>_label_index`` /
      ``<name>_score``.
  ``POST /v2/models/{name}/infer``, ``GET /v2/models/{name}``, ``GET /v2/health/ready`` ...
      The Open Inference Protocol (KServe v2) for the routed system itself: one ``BYTES`` input
      (the texts) or a numeric ``[n, d]`` one; one output per per-input column of the schema
      (``label`` ``INT64`` or ``BYTES`` after the classes, ``label_index`` and ``stage``
      ``INT64``, ``confidence`` ``FP64``, ``stage_name`` and ``error`` ``BYTES``, ``degraded``
      ``BOOL``, ``cost`` ``FP64`` with a cost model; ``null`` where missing). JSON, or the binary
      tensor data extension both ways (:mod:`confroute.core._oip_wire`: the
      ``Inference-Header-Content-Length`` header, raw tensor bytes after the JSON, binary outputs
      when the request asks), so that ``tritonclient.http`` and KServe's client work with their
      default settings; a malformed body gets HTTP 400 with a message.

With ``audit=``, ``POST /labels`` and ``GET /certificate`` too (:mod:`.serve_audit`). Metrics go
through Ray's metrics API (:mod:`ray.util.metrics`), which every Ray node exports for Prometheus
(``ray start --metrics-export-port``; names carry Ray's ``ray_`` prefix): see ``docs/serving.md``.
The routed answers are those of ``router.route`` on the same inputs (the test-suite checks this
against a real MLServer fallback). Requires ``pip install 'confroute[serve]'``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..core import _oip_wire as wire
from ..core import schema
from ..core._version import __version__
from ..core.batch import take_rows
from ..core.types import RoutingResult
from ..routing.cascade import Cascade
from ..routing.stage_loop import RowState, plan_stagewise, result_from_state
from ..routing.stagewise import advance
from .ray import RouterInfo, ShippedRouter, describe_router
from .serve_metrics import BREAKER_STATES, METRICS, RayMetrics
from .serve_audit import AUDIT_PATHS, audit_response, bind_audit, observe_later
from .serve_policy import ThresholdSync, routed, threshold_sync
from .serve_checks import (
    BadRequest,
    clip,
    finite_number,
    kind_of,
    short_error,
    stage_failed,
    stage_gone_errors,
    validate_inputs,
)

__all__ = ["build_app", "validate_inputs", "BadRequest", "cpu_demand", "METRICS", "DEPLOYMENT_OPTIONS",
           "BATCH_OPTIONS", "STAGE_NUM_CPUS", "INGRESS_NUM_CPUS"]

_BadRequest = BadRequest  # the name the tests of 0.2 import

logger = logging.getLogger("confroute.serve")

#: Options of a stage or the ingress that go to ``serve.deployment`` (Ray Serve's own names).
DEPLOYMENT_OPTIONS = (
    "num_replicas", "ray_actor_options", "max_ongoing_requests", "max_queued_requests",
    "autoscaling_config", "health_check_period_s", "health_check_timeout_s",
    "graceful_shutdown_timeout_s", "graceful_shutdown_wait_loop_s", "placement_group_bundles",
    "placement_group_strategy", "max_replicas_per_node", "user_config", "logging_config",
)
#: Options of a stage that configure its dynamic batching (``serve.batch``).
BATCH_OPTIONS = ("max_batch_size", "batch_wait_timeout_s", "max_concurrent_batches")
#: Default CPUs reserved by one replica of a stage: two stages and the ingress fit on 2 cores.
STAGE_NUM_CPUS = 0.5
#: Default CPUs reserved by one replica of the ingress.
INGRESS_NUM_CPUS = 0.1

def _import_serve() -> Any:
    try:
        from ray import serve
    except ImportError:
        raise ImportError("confroute.integrations.serve needs Ray Serve: pip install 'confroute[serve]'") from None
    return serve


class StageServer:
    """A replica of one stage: builds the router once, runs :func:`advance` on merged batches."""

    def __init__(self, source: ShippedRouter, s: int, app: str, max_batch_size: int = 32,
                 batch_wait_timeout_s: float = 0.005, metrics: bool = True, max_concurrent_batches: int = 1,
                 sync: ThresholdSync | None = None) -> None:
        serve = _import_serve()
        self.router = source.build()
        self.s, self.sync = s, sync  # sync: follow the audit ledger's deployed threshold (serve_policy)
        self.stage_name = self.router.names[s]
        self.metrics = RayMetrics(app, metrics)
        # One batch queue per replica: concurrent requests merge into one model call (up to
        # max_concurrent_batches merged calls at once: more for a remote stage).
        self._batched = serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s,
                                    max_concurrent_batches=max_concurrent_batches)(self._run_batch)
        self._report_breaker()

    async def __call__(self, inputs: Sequence[Any], state: RowState) -> tuple[RowState, np.ndarray]:
        result: tuple[RowState, np.ndarray] = await self._batched((inputs, state))
        return result

    async def _run_batch(self, requests: list[tuple[Sequence[Any], RowState]]) -> list[tuple[RowState, np.ndarray]]:
        inputs = [x for batch, _ in requests for x in batch]
        state = RowState.concat([st for _, st in requests])
        self.metrics.observe("confroute_stage_batch_size", len(inputs), stage=self.stage_name)
        threshold = None if self.sync is None else await self.sync.follow(self.router, self.s)
        try:
            new, defer = await asyncio.to_thread(advance, self.router, self.s, inputs, state)
        finally:
            self._report_breaker()
        out, lo = [], 0
        for batch, _ in requests:
            rows = np.arange(lo, lo + len(batch))
            out.append(routed(new.take(rows), defer[rows], threshold))
            lo += len(batch)
        return out

    def _report_breaker(self) -> None:
        breaker = self.router.stages[self.s].circuit_breaker
        if breaker is not None:
            self.metrics.set("confroute_breaker_state", BREAKER_STATES[breaker.state], stage=self.stage_name)

    async def predict(self, inputs: Sequence[Any]) -> Any:
        """The stage's model on ``inputs`` (no routing, no batching): the audit loop's shadow calls."""
        return await asyncio.to_thread(self.router.stages[self.s].predictor.predict, inputs)

    def breaker_state(self) -> str | None:
        """``"closed"``, ``"half_open"``, ``"open"``, or ``None`` without a breaker."""
        breaker = self.router.stages[self.s].circuit_breaker
        return None if breaker is None else breaker.state

    def info(self) -> RouterInfo:
        return describe_router(self.router)


class Ingress:
    """The HTTP entry point: routes each request through the stage deployments."""

    def __init__(self, info: RouterInfo, model_name: str, stages: list[Any], drift: Any = None,
                 drift_every: int = 100, metrics: bool | Any = True, audit: Any = None) -> None:
        self.info = info
        self.audit, self._audit_tasks = audit, set[Any]()  # the audit deployment's handle (one replica)
        self.model_name = model_name
        self.stages = list(stages)
        # metrics: True/False (Ray's metrics API), or a sink of serve_metrics (the local engine's)
        self.metrics = RayMetrics(model_name, metrics) if isinstance(metrics, bool) else metrics
        self.drift = drift
        self.drift_every = max(int(drift_every), 1)
        self._since_check = 0
        self._drift_scores: list[np.ndarray] = []
        self._drift_labels: list[np.ndarray] = []
        self.last_drift_report: Any = None
        self._n_inputs = 0
        self._n_routed = 0

    # -- routing ---------------------------------------------------------------------------------

    async def route(self, inputs: Sequence[Any]) -> RoutingResult:
        """Route ``inputs`` through the stages (deferred inputs only), in input order.

        Driven by :func:`~confroute.routing.stage_loop.plan_stagewise`; each stage replica runs
        :func:`~confroute.routing.stagewise.advance`, the one stage loop.
        """
        plan, routed_at = plan_stagewise(len(inputs), self.info.n_stages), None
        try:
            s, rows, state = next(plan)
            while True:
                t0 = time.perf_counter()
                try:
                    answer = await self.stages[s].remote(take_rows(inputs, rows), state)
                    routed_at = getattr(answer, "threshold", None) if s == 0 else routed_at
                except self.gone_errors() as exc:  # the replica died: a stage failure under on_error
                    logger.warning("stage %r: replica lost (%s); on_error applies", self.info.names[s],
                                   type(exc).__name__)
                    answer = stage_failed(state, s, f"{type(exc).__name__}: the replica of stage "
                                          f"{self.info.names[s]!r} died or is unreachable", self.info)
                self.metrics.observe("confroute_stage_latency_seconds", time.perf_counter() - t0,
                                     stage=self.info.names[s])
                s, rows, state = plan.send(answer)
        except StopIteration as done:
            final: RowState = done.value
        result = self.result(final)
        self._record(result)
        if self.audit is not None:  # recorded off the request path: the answer does not wait
            observe_later(self.audit, inputs, result, self._audit_tasks, self.model_name, routed_at)
        return result

    def gone_errors(self) -> tuple[type[BaseException], ...]:
        """What a stage call raises when the stage is gone (Ray: its replica died)."""
        return stage_gone_errors()

    def result(self, final: RowState) -> RoutingResult:
        """The routing result of final row states, with the served router's names, classes and cost."""
        answered = final.n_classes[final.n_classes >= 0]
        return result_from_state(final, self.info.names, self.info.classes,
                                 int(answered[0]) if answered.size else None, self.info.cost_model is not None)

    def _record(self, r: RoutingResult) -> None:
        m, names = self.metrics, self.info.names
        n = len(r)
        m.inc("confroute_inputs", n)
        for s, name in enumerate(names):
            m.inc("confroute_reached", int(r.reached[s].sum()), stage=name)
            m.inc("confroute_answered", int((r.stage == s).sum()), stage=name)
        abstained = int((r.stage < 0).sum())
        m.inc("confroute_answered", abstained, stage="abstained")
        m.inc("confroute_abstained", abstained)
        routed = int(r.reached[1:].any(axis=0).sum()) if len(names) > 1 else 0
        m.inc("confroute_routed", routed)
        if r.degraded.any():
            failed_stage = r.failed_stage
            for i in np.flatnonzero(r.degraded):
                failed_at = names[int(failed_stage[i])]
                m.inc("confroute_degraded", 1, stage=failed_at)
                m.inc("confroute_errors", 1, stage=failed_at, kind=_error_kind(r.errors[i]))
        if r.cost is not None and n:
            m.inc("confroute_cost", float(np.nansum(r.cost)))
        self._n_inputs += n
        self._n_routed += routed
        if self._n_inputs:
            m.set("confroute_routed_fraction", self._n_routed / self._n_inputs)
        self._watch_drift(r)

    def _watch_drift(self, r: RoutingResult) -> None:
        if self.drift is None or not len(r):
            return
        index = np.asarray(r.stage_label_index)
        ok = index[0] >= 0
        self._drift_scores.append(r.stage_scores[0][ok])
        self._drift_labels.append(index[0][ok])
        self._since_check += int(ok.sum())
        if self._since_check < self.drift_every:
            return
        scores, labels = np.concatenate(self._drift_scores), np.concatenate(self._drift_labels)
        self._drift_scores, self._drift_labels, self._since_check = [], [], 0
        report = self.drift.update(scores, labels)  # adds them to the window, checks the window
        m = self.metrics
        m.set("confroute_drift_psi", report.psi)
        m.set("confroute_drift_ks_statistic", report.ks_statistic)
        m.set("confroute_drift_ks_pvalue", report.ks_pvalue)
        if report.routed_fraction is not None:
            m.set("confroute_drift_routed_fraction", report.routed_fraction)
        for flag in ("psi_flag", "ks_flag", "rate_flag", "recalibration_due"):
            m.set("confroute_drift_alarm", float(getattr(report, flag)), flag=flag.removesuffix("_flag"))
        self.last_drift_report = report

    # -- HTTP --------------------------------------------------------------------------------------

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        # Under serve.run(..., route_prefix="/x") the path still starts with the prefix (root_path).
        path, root, method = request.url.path, request.scope.get("root_path", ""), request.method
        path = (path[len(root):] if root and path.startswith(root) else path).rstrip("/") or "/"
        t0 = time.perf_counter()
        endpoint = "other"
        try:
            if path == "/route" and method == "POST":
                endpoint = "route"
                body = await _json_body(request)
                inputs = validate_inputs(body.get("inputs") if isinstance(body, dict) else None, self.info.input_kind)
                response = JSONResponse(_route_json(await self.route(inputs), self.info))
            elif path == f"/v2/models/{self.model_name}/infer" and method == "POST":
                endpoint = "infer"
                body = await _oip_body(request)
                inputs = validate_inputs(_oip_inputs(body), self.info.input_kind, oip=True)
                _oip_wanted(body, _oip_output_names(self.info))
                response = _oip_response(_oip_answer(await self.route(inputs), self.model_name, body), body)
            elif path in AUDIT_PATHS:
                endpoint = path.strip("/")
                response = await audit_response(self.audit, path, method, request)
            else:
                response = self._get(path, method)
        except BadRequest as exc:
            response = JSONResponse({"error": str(exc)}, 400)
        except Exception as exc:  # noqa: BLE001 - a failing stage under on_error="raise"
            # The traceback goes to the server's log; the client gets one short line (no paths,
            # pids, node addresses or actor ids).
            logger.exception("%s %s failed", method, path)
            self.metrics.inc("confroute_errors", 1, stage="request", kind=type(exc).__name__)
            response = JSONResponse({"error": short_error(exc)}, 500)
        status = "ok" if response.status_code < 400 else "error"
        self.metrics.inc("confroute_requests", 1, endpoint=endpoint, status=status)
        if endpoint != "other":
            self.metrics.observe("confroute_request_latency_seconds", time.perf_counter() - t0, endpoint=endpoint)
        return response

    def _get(self, path: str, method: str) -> Any:
        """The answers that need no routing: health, metadata, 404."""
        from starlette.responses import JSONResponse

        if path in ("/v2/health/ready", "/v2/health/live", f"/v2/models/{self.model_name}/ready"):
            return JSONResponse({"ready": True}) if "ready" in path else JSONResponse({"live": True})
        if path == f"/v2/models/{self.model_name}":
            return JSONResponse(_oip_metadata(self.model_name, self.info))
        if path == "/v2":
            return JSONResponse({"name": "confroute", "version": __version__, "extensions": ["binary_tensor_data"]})
        if path.startswith("/v2/models/"):
            return JSONResponse({"error": f"unknown model; this server serves {self.model_name!r}"}, 404)
        return JSONResponse({"error": f"no endpoint {method} {path}; see docs/serving.md"}, 404)


async def _json_body(request: Any) -> Any:
    try:
        return json.loads(await request.body())
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON ({exc})") from None


def _error_kind(message: Any) -> str:
    """``"StageTimeoutError"`` from ``"StageTimeoutError: ..."`` (how Fallback records errors)."""
    head = str(message or "").split(":", 1)[0]
    return head if head.isidentifier() else "error"


def _route_json(r: RoutingResult, info: RouterInfo) -> dict[str, Any]:
    """The ``/route`` answer: one row per input, the columns of the one output schema."""
    return {"results": schema.json_rows(r.columns())}


async def _oip_body(request: Any) -> dict[str, Any]:
    """An OIP request body, JSON or with binary tensors (the binary tensor data extension)."""
    body = await request.body()
    encoding = (request.headers.get("content-encoding") or "identity").lower()
    try:  # tritonclient's request_compression_algorithm="gzip" | "deflate"
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding != "identity":
            raise BadRequest(f"Content-Encoding {encoding!r} is not supported (gzip, deflate or none)")
    except (OSError, EOFError, zlib.error) as exc:
        raise BadRequest(f"the body is not valid {encoding} ({exc})") from None
    try:
        return wire.decode(body, request.headers.get(wire.HEADER), "inputs")
    except wire.WireError as exc:
        raise BadRequest(str(exc)) from None


def _oip_inputs(body: Any) -> list[Any]:
    """The inputs of an OIP ``infer`` body (one tensor); :class:`BadRequest` when malformed."""
    tensors = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(tensors, list) or len(tensors) != 1 or not isinstance(tensors[0], dict):
        raise BadRequest("send one input tensor: BYTES texts of shape [n], or numeric rows of shape [n, d]")
    t = tensors[0]
    data, shape = t.get("data"), t.get("shape")
    if data is None or not isinstance(shape, list) or not shape:
        raise BadRequest("the input tensor needs 'shape' and 'data' (or binary data)")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BadRequest(f"shape must be a list of integers >= 0, got {clip(json.dumps(shape))}")
    if not isinstance(data, list):  # binary tensor data, already decoded by the codec
        return _oip_binary_inputs(t, shape)
    if t.get("datatype") == "BYTES":
        if len(shape) != 1 and not (len(shape) == 2 and shape[1] == 1):
            raise BadRequest(f"BYTES input must have shape [n] (one text per row), got {shape}")
        flat = [x for row in data for x in row] if all(isinstance(x, list) for x in data) and data else data
        for i, x in enumerate(flat):
            if not isinstance(x, str):
                raise BadRequest(f"BYTES data element {i} is {kind_of(x)}; send one string per text")
        if len(flat) != shape[0]:
            raise BadRequest(f"shape {shape} does not match {len(flat)} data elements")
        return list(flat)
    flat = [x for row in data for x in row] if all(isinstance(x, list) for x in data) and data else data
    for i, x in enumerate(flat):
        if not finite_number(x):
            what = kind_of(x) if not isinstance(x, float) else f"{x} (not a finite number)"
            raise BadRequest(f"numeric data element {i} is {what}; send finite numbers")
    if len(shape) != 2:
        raise BadRequest(f"numeric input must have shape [n, d], got {shape}")
    if len(flat) != shape[0] * shape[1]:
        raise BadRequest(f"shape {shape} does not match {len(flat)} data elements")
    return list(np.asarray(flat, dtype=np.float64).reshape(shape))


def _oip_binary_inputs(t: dict[str, Any], shape: list[int]) -> list[Any]:
    """The inputs of a tensor sent with the binary tensor data extension."""
    try:
        array = wire.tensor_array(t, "the input tensor")
    except wire.WireError as exc:
        raise BadRequest(str(exc)) from None
    if t.get("datatype") == "BYTES":
        if len(shape) != 1 and not (len(shape) == 2 and shape[1] == 1):
            raise BadRequest(f"BYTES input must have shape [n] (one text per row), got {shape}")
        try:
            return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in array.ravel().tolist()]
        except UnicodeDecodeError as exc:
            raise BadRequest(f"a BYTES element is not UTF-8 text ({exc})") from None
    rows = array.astype(np.float64)
    if rows.ndim != 2:
        raise BadRequest(f"numeric input must have shape [n, d], got {shape}")
    if not np.isfinite(rows).all():
        raise BadRequest("numeric data holds a value that is not a finite number; send finite numbers")
    return list(rows)


def _oip_outputs(r: RoutingResult, binary: Callable[[str], bool]) -> list[dict[str, Any]]:
    """One OIP output per per-input column of the schema (the per-stage columns are left out).

    A binary output has no null: a missing ``INT64`` label is ``-1``, a missing ``BYTES`` value
    empty, a missing ``FP64`` NaN.
    """
    cols = r.columns()
    per_input = [name for name, _ in schema.BASE_COLUMNS] + (["cost"] if "cost" in cols else [])
    outputs = []
    for name in per_input:
        datatype = schema.oip_datatype(name, cols[name], r.classes)
        data: Any
        if not binary(name):
            data = [row[name] for row in schema.json_rows({name: cols[name]})]
        elif datatype == "INT64" and cols[name].dtype == object:
            data = np.array([-1 if v is None else v for v in cols[name].tolist()], dtype=np.int64)
        else:
            data = cols[name]
        outputs.append({"name": name, "datatype": datatype, "shape": [len(r)], "data": data})
    return outputs


def _oip_output_names(info: RouterInfo) -> list[str]:
    """The outputs the OIP endpoint returns for a router."""
    return [name for name, _ in schema.BASE_COLUMNS] + (["cost"] if info.cost_model is not None else [])


def _oip_wanted(body: dict[str, Any], names: list[str]) -> set[str] | None:
    """The output names a request asks for (``None``: all); :class:`BadRequest` for unknown ones."""
    wanted = body.get("outputs")
    if not isinstance(wanted, list) or not wanted:
        return None
    keep = {str(o.get("name")) for o in wanted if isinstance(o, dict)}
    unknown = keep - set(names)
    if unknown:
        raise BadRequest(f"unknown outputs {sorted(unknown)}; this model returns {names}")
    return keep


def _oip_answer(r: RoutingResult, model: str, body: dict[str, Any]) -> dict[str, Any]:
    outputs = _oip_outputs(r, wire.binary_outputs(body))
    keep = _oip_wanted(body, [o["name"] for o in outputs])
    if keep is not None:
        outputs = [o for o in outputs if o["name"] in keep]
    answer: dict[str, Any] = {"model_name": model, "outputs": outputs}
    if body.get("id") is not None:
        answer["id"] = body["id"]
    return answer


def _oip_response(answer: dict[str, Any], body: dict[str, Any]) -> Any:
    """The HTTP answer: JSON, or JSON then the binary outputs (with the header giving its length)."""
    from starlette.responses import Response

    content, header = wire.encode(answer, "outputs", wire.binary_outputs(body))
    if header is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type=wire.CONTENT_TYPE, headers={wire.HEADER: str(header)})


def _oip_metadata(model: str, info: RouterInfo) -> dict[str, Any]:
    classes = None if info.classes is None else [str(c) for c in info.classes]
    outputs = []
    for name, kind in [*schema.BASE_COLUMNS, *([schema.COST_COLUMN] if info.cost_model is not None else [])]:
        values = np.zeros(0, dtype=object if kind in ("label", "str") else kind)
        output: dict[str, Any] = {"name": name, "datatype": schema.oip_datatype(name, values, info.classes),
                                  "shape": [-1]}
        if name == "label":
            output["parameters"] = {"classes": classes}
        elif name == "stage":
            output["parameters"] = {"stages": list(info.names)}
        outputs.append(output)
    return {
        "name": model,
        "versions": [],
        "platform": "confroute",
        "inputs": [{"name": "input", "datatype": "BYTES", "shape": [-1]}],
        "outputs": outputs,
    }


def options_per_stage(options: Any, n_stages: int) -> list[dict[str, Any]]:
    """``stage_options`` as one mapping per stage (``None``: empty; one mapping: for every stage);
    both engines read it (:func:`build_app`, the local engine)."""
    if options is None:
        return [{} for _ in range(n_stages)]
    if isinstance(options, Mapping):
        return [dict(options) for _ in range(n_stages)]
    options = list(options)
    if len(options) != n_stages:
        raise ValueError(f"stage_options: give one mapping or one per stage ({n_stages}), got {len(options)}")
    return [dict(o or {}) for o in options]


def _split_options(opts: dict[str, Any], where: str, allow_batch: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    allowed = DEPLOYMENT_OPTIONS + (BATCH_OPTIONS if allow_batch else ())
    unknown = sorted(set(opts) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown options {unknown}; allowed: {list(allowed)}")
    batch = {k: opts[k] for k in BATCH_OPTIONS if k in opts}
    return {k: v for k, v in opts.items() if k not in BATCH_OPTIONS}, batch


def _replicas(opts: Mapping[str, Any]) -> int:
    """Replicas a deployment starts with (autoscaling: ``initial_replicas``, else ``min_replicas``)."""
    auto = opts.get("autoscaling_config")
    if isinstance(auto, Mapping):
        return int(auto.get("initial_replicas") or auto.get("min_replicas") or 1)
    n = opts.get("num_replicas", 1)
    return 1 if n in (None, "auto") else int(n)


def cpu_demand(
    n_stages: int,
    stage_options: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
    ingress_options: Mapping[str, Any] | None = None,
) -> list[tuple[str, int, float]]:
    """CPUs the application's actors reserve at start, per deployment, with :func:`build_app`'s
    defaults: ``(deployment, replicas, num_cpus per replica)`` for each stage (``"stage0"``,
    ...) and the ingress. Ray schedules a replica only where its ``num_cpus`` are free, so the
    sum of ``replicas * num_cpus`` must fit the cluster's CPUs or the application never starts.

    Examples
    --------
    >>> cpu_demand(2)
    [('stage0', 1, 0.5), ('stage1', 1, 0.5), ('ingress', 1, 0.1)]
    >>> cpu_demand(2, [{"num_replicas": 2, "ray_actor_options": {"num_cpus": 1}}, None])[0]
    ('stage0', 2, 1.0)
    """
    out = []
    named = [(f"stage{s}", opts, STAGE_NUM_CPUS) for s, opts in enumerate(options_per_stage(stage_options, n_stages))]
    for where, opts, default in [*named, ("ingress", dict(ingress_options or {}), INGRESS_NUM_CPUS)]:
        actor = opts.get("ray_actor_options")
        cpus = actor.get("num_cpus", 1) if isinstance(actor, Mapping) else default
        out.append((where, _replicas(opts), float(cpus)))
    return out


def build_app(
    router: Cascade | Callable[[], Cascade],
    *,
    name: str = "confroute",
    stage_options: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
    ingress_options: Mapping[str, Any] | None = None,
    drift: Any = None,
    drift_every: int = 100,
    metrics: bool = True,
    info: RouterInfo | None = None,
    audit: Mapping[str, Any] | None = None,
) -> Any:
    """A Ray Serve application that serves ``router``.

    Parameters
    ----------
    router : Cascade or callable
        The router, or a zero-argument function building it (called once in every stage replica,
        so models load where they run, and once in a short Ray task to learn the stage names).
    name : str, default "confroute"
        Model name on the Open Inference Protocol endpoint (``/v2/models/{name}``), and the
        ``app`` tag of the metrics.
    stage_options : mapping or list of mappings, optional
        Per stage (or one for all): Ray Serve deployment options (``num_replicas``,
        ``ray_actor_options={"num_cpus": 1, "num_gpus": 1}``, ``max_ongoing_requests``,
        ``autoscaling_config``, ...) plus ``max_batch_size`` (default 32) and
        ``batch_wait_timeout_s`` (default 0.005), ``max_concurrent_batches`` (default 1; more
        for a remote stage, whose calls wait on a server) of the stage's dynamic batching. Defaults:
        ``num_cpus=0.5`` (:data:`STAGE_NUM_CPUS`: two stages and the ingress fit on 2 cores),
        ``max_ongoing_requests`` twice ``max_batch_size`` (Ray's own default, 5, would cap the
        batches). :func:`cpu_demand` adds up what the actors reserve.
    ingress_options : mapping, optional
        Deployment options of the ingress (default: 1 replica, ``num_cpus=0.1``,
        ``max_ongoing_requests=128``).
    drift : DriftMonitor, optional
        A fitted :class:`~confroute.DriftMonitor` (on the first stage's calibration scores); the
        ingress feeds it the first stage's live scores and exports PSI, KS and routed-rate alarms
        over its window every ``drift_every`` inputs.
    metrics : bool, default True
        Export metrics through Ray's metrics API.
    info : RouterInfo, optional
        Skip learning the stage names from the router (advanced).
    audit : mapping, optional
        ``CertificateMonitor`` arguments (``ledger`` required) and ``deployment`` (its options, one
        replica): the audit loop, ``POST /labels``, ``GET /certificate`` (:mod:`.serve_audit`).

    Returns
    -------
    ray.serve.Application
        Pass it to ``serve.run(app, name=..., route_prefix="/")``.

    Examples
    --------
    >>> from ray import serve  # doctest: +SKIP
    >>> serve.run(build_app(make_router, name="sst2",
    ...                     stage_options=[{"max_batch_size": 64},
    ...                                    {"ray_actor_options": {"num_gpus": 1}}]))  # doctest: +SKIP
    """
    serve = _import_serve()
    import ray

    source = ShippedRouter(router)
    if info is None:
        if source.router is None and not ray.is_initialized():
            ray.init()
        info = source.info(ray)
    if drift is not None and not hasattr(drift, "reference_scores_"):
        raise ValueError("drift: pass a DriftMonitor fitted on the first stage's calibration scores")
    per_stage, sync = options_per_stage(stage_options, info.n_stages), threshold_sync(audit, info.n_stages)
    handles = []
    for s, opts in enumerate(per_stage):
        dep_opts, batch = _split_options(opts, f"stage_options[{s}]", allow_batch=True)
        dep_opts.setdefault("ray_actor_options", {"num_cpus": STAGE_NUM_CPUS})
        # Ray Serve's default (5 requests in flight per replica) would cap what serve.batch can merge.
        dep_opts.setdefault("max_ongoing_requests", 2 * int(batch.get("max_batch_size", 32)))
        deployment = serve.deployment(StageServer, name=f"stage{s}-{info.names[s]}", **dep_opts)
        follow = sync if s < info.n_stages - 1 else None  # the deciding stages follow the ledger
        handles.append(deployment.bind(source, s, name, metrics=metrics, sync=follow, **batch))
    ing_opts, _ = _split_options(dict(ingress_options or {}), "ingress_options", allow_batch=False)
    ing_opts.setdefault("ray_actor_options", {"num_cpus": INGRESS_NUM_CPUS})
    ing_opts.setdefault("max_ongoing_requests", 128)
    ingress = serve.deployment(Ingress, name="ingress", **ing_opts)
    auditor = bind_audit(serve, source, name, audit, handles, metrics)
    return ingress.bind(info, name, handles, drift=drift, drift_every=drift_every, metrics=metrics, audit=auditor)
