"""A stage that runs on a model server, over the Open Inference Protocol (KServe v2, REST).

The Open Inference Protocol is the REST/gRPC protocol spoken by Triton, KServe, MLServer,
TorchServe (KServe mode) and others (specification:
https://github.com/kserve/open-inference-protocol). :class:`OIPPredictor` speaks its REST
flavour: ``GET /v2/models/{name}`` for the model metadata (input and output tensors, and here the
class names), ``POST /v2/models/{name}/infer`` with one input tensor (``BYTES`` texts, or
``FP32``/``FP64`` feature rows), reading back probabilities or logits, and
``GET /v2/health/ready``.

HTTP goes through confroute's one remote transport (:mod:`confroute.predictors._http`): one
pooled ``httpx`` client per predictor, on a private event loop that every caller (threads, any
event loop) shares, so at most ``max_connections`` sockets are open; ``timeout`` is a deadline for
a whole request (connect, send, the whole answer). :meth:`OIPPredictor.close` (or ``with``)
releases the sockets. Failures become confroute errors so that a :class:`~confroute.Fallback`
applies its policies (retries, circuit breaker, ``keep_previous``):

* no answer (connection refused or reset, connect timeout), HTTP 429 and 5xx:
  :class:`~confroute.exceptions.RemoteUnavailableError` (worth retrying);
* the deadline passed: :class:`~confroute.exceptions.StageTimeoutError`;
* any other HTTP error (404 unknown model, 400 bad input):
  :class:`~confroute.exceptions.RemoteStageError` (a retry gets the same answer);
* a 200 answer that is not a valid batch of scores: :class:`~confroute.exceptions.PredictionError`.

Requires ``httpx`` (``pip install 'confroute[serve]'``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ..core import _oip_wire as wire
from ..core.types import PredictionError, Predictions
from ..exceptions import RemoteStageError, RemoteUnavailableError, StageTimeoutError
from ._http import Transport, import_httpx, short, status_error
from .base import Predictor

__all__ = ["OIPPredictor"]

_OUTPUT_NAMES = {"probs": ("probs", "probabilities", "probas", "predict_proba"), "logits": ("logits",)}


class OIPPredictor(Predictor):
    """A classifier behind an Open Inference Protocol (KServe v2) REST endpoint.

    Parameters
    ----------
    url : str
        Server base URL, e.g. ``"http://127.0.0.1:8080"``.
    model : str
        Model name on the server.
    version : str, optional
        Model version (``/v2/models/{model}/versions/{version}``).
    classes : sequence of str, optional
        Class names in column order. Default: the ``classes`` parameter of the output tensor
        (or of the model) in the server's model metadata; when the metadata has none, the
        predictions are unnamed.
    output : {"probs", "logits"}, optional
        What the output tensor holds. Default: ``"logits"`` if the metadata names an output
        ``logits``, else ``"probs"``.
    input_name, output_name : str, optional
        Tensor names. Default: the metadata's first input; the output named after ``output``
        (``logits``, or ``probs``/``probabilities``), else the metadata's only output.
    batch_size : int, default 64
        Inputs per request.
    timeout : float, default 30.0
        Deadline in seconds for one whole request: connect, send, and every byte of the answer
        (a server that trickles its answer still fails at ``timeout``).
    connect_timeout : float, default 2.0
        Seconds to wait for a connection; short, so that a dead server fails fast.
    max_connections : int, default 16
        Requests in flight (and sockets open) at most, across every thread and event loop.
    headers : mapping, optional
        Sent with every request (an API key, say).
    binary : bool or "auto", default "auto"
        Send the input tensor and read the output tensor as raw bytes after a JSON header (the
        binary tensor data extension of KServe v2 / Triton) instead of JSON numbers and strings.
        ``"auto"``: binary when the server lists ``binary_tensor_data`` among its extensions
        (``GET /v2``; Triton and confroute's own service do, MLServer 1.7 does not), else JSON.
        The default is measured: see ``docs/serving.md`` (binary is faster on large batches).
    name : str, optional

    Notes
    -----
    The metadata is read once, when the predictor is built, unless ``classes``, ``output``,
    ``input_name`` and ``output_name`` are all given (then the server may be down at that time).
    Texts are sent as a ``BYTES`` tensor of shape ``[n]``; anything else as a numeric tensor of
    shape ``[n, d]`` (``FP64``, or ``datatype``). The predictor pickles without its HTTP client
    (a new one opens on first use), so it can be shipped to Ray workers. Error messages name the
    predictor and the request path, not the server's host and port.

    Examples
    --------
    >>> p = OIPPredictor("http://127.0.0.1:8080", "mpnet")  # doctest: +SKIP
    >>> p.classes  # doctest: +SKIP
    ('NEGATIVE', 'POSITIVE')
    >>> router = ThresholdRouter(local_model, Fallback(p, on_error="keep_previous", retries=1,
    ...                          circuit_breaker=CircuitBreaker(3, reset_after=10)))  # doctest: +SKIP
    """

    cancellable = True  # a Fallback cancels a sync call at its timeout (the request is dropped)

    def __init__(
        self,
        url: str,
        model: str,
        *,
        version: str | None = None,
        classes: Sequence[str] | None = None,
        output: Literal["probs", "logits"] | None = None,
        input_name: str | None = None,
        output_name: str | None = None,
        datatype: str = "FP64",
        batch_size: int = 64,
        timeout: float = 30.0,
        connect_timeout: float = 2.0,
        max_connections: int = 16,
        headers: Mapping[str, str] | None = None,
        binary: bool | Literal["auto"] = "auto",
        name: str | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        if output not in (None, "probs", "logits"):
            raise ValueError(f"output must be 'probs' or 'logits', got {output!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not timeout > 0 or not connect_timeout > 0:
            raise ValueError(f"timeouts must be > 0 seconds, got timeout={timeout}, connect_timeout={connect_timeout}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if binary not in (True, False, "auto"):
            raise ValueError(f"binary must be True, False or 'auto', got {binary!r}")
        if datatype not in ("FP32", "FP64"):
            raise ValueError(f"datatype (of numeric inputs) must be 'FP32' or 'FP64', got {datatype!r}")
        import_httpx("OIPPredictor", "serve")
        self.url = url.rstrip("/")
        self.model = model
        self.version = version
        self.datatype = datatype
        self.batch_size = int(batch_size)
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_connections = int(max_connections)
        self.headers = dict(headers or {})
        self.name = name or f"oip:{model}"
        self.binary = binary
        self._binary_server: bool | None = None
        self._http = Transport(self.url, name=self.name, timeout=self.timeout, connect_timeout=self.connect_timeout,
                               max_connections=self.max_connections, headers=self.headers)
        self.metadata_: dict[str, Any] | None = None
        if classes is None or output is None or input_name is None or output_name is None:
            self.metadata_ = self.metadata()
            self._use_binary()  # "auto": ask the server now, with the metadata
        self.output, self.input_name, self.output_name = self._resolve_tensors(output, input_name, output_name)
        if classes is None:
            classes = self._metadata_classes()
        self.classes = None if classes is None else tuple(str(c) for c in classes)

    # -- endpoints -----------------------------------------------------------------------------------

    @property
    def model_path(self) -> str:
        path = f"/v2/models/{self.model}"
        return path + (f"/versions/{self.version}" if self.version else "")

    def metadata(self) -> dict[str, Any]:
        """The model metadata (``GET /v2/models/{model}``)."""
        return self._checked_json(self._request("GET", self.model_path), "model metadata")

    def ready(self) -> bool:
        """Whether the server answers ``GET /v2/health/ready`` and the model its readiness check."""
        try:
            return (self._request("GET", "/v2/health/ready").status_code == 200
                    and self._request("GET", self.model_path + "/ready").status_code == 200)
        except RemoteStageError:
            return False
        except StageTimeoutError:
            return False

    def _resolve_tensors(
        self, output: str | None, input_name: str | None, output_name: str | None
    ) -> tuple[str, str, str]:
        meta = self.metadata_ or {}
        outputs = [o.get("name") for o in meta.get("outputs") or []]
        if output is None:
            output = "logits" if (output_name or "") in _OUTPUT_NAMES["logits"] or (
                output_name is None and "logits" in outputs) else "probs"
        if output_name is None:
            named = [o for o in outputs if o in _OUTPUT_NAMES[output]]
            if named:
                output_name = named[0]
            elif len(outputs) == 1:
                output_name = outputs[0]
            elif not outputs:
                output_name = output
            else:
                raise ValueError(
                    f"{self.name}: the model has outputs {outputs}; say which holds the {output} with output_name="
                )
        if input_name is None:
            inputs = [i.get("name") for i in meta.get("inputs") or []]
            input_name = inputs[0] if inputs else "input"
        return output, input_name, output_name

    def _metadata_classes(self) -> tuple[str, ...] | None:
        meta = self.metadata_ or {}
        for tensor in meta.get("outputs") or []:
            if tensor.get("name") == self.output_name:
                found = _classes_parameter(tensor.get("parameters"))
                if found is not None:
                    return found
        return _classes_parameter(meta.get("parameters"))

    # -- prediction ------------------------------------------------------------------------------------

    def _use_binary(self) -> bool:
        """Whether to speak binary tensors: ``binary``, or for ``"auto"`` the server's extensions
        (``GET /v2``, asked once: with the metadata, else before the first request; an error
        answer means JSON, no answer raises the transport error and asks again next time)."""
        if self.binary != "auto":
            return bool(self.binary)
        if self._binary_server is None:
            # no answer: the error goes to the Fallback, not cached
            self._binary_server = _speaks_binary(self._request("GET", "/v2"))
        return bool(self._binary_server)

    async def _ause_binary(self) -> None:
        """Async :meth:`_use_binary`'s question, so the async path never blocks its event loop."""
        if self.binary == "auto" and self._binary_server is None:
            self._binary_server = _speaks_binary(await self._arequest("GET", "/v2"))

    def _payload(self, inputs: Sequence[Any]) -> tuple[bytes, dict[str, str]]:
        """The request body and its extra headers (JSON, or binary tensors after a JSON header)."""
        n = len(inputs)
        if all(isinstance(x, str) for x in inputs):
            tensor: dict[str, Any] = {"name": self.input_name, "shape": [n], "datatype": "BYTES", "data": list(inputs)}
        else:
            try:
                rows = np.asarray(inputs, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(
                    f"{self.name}: inputs must be texts (str) or numeric feature rows, got "
                    f"{type(inputs[0]).__name__}"
                ) from None
            if rows.ndim != 2:
                raise ValueError(f"{self.name}: feature rows must form a 2-D array, got shape {rows.shape}")
            if not np.isfinite(rows).all():
                raise ValueError(f"{self.name}: feature rows must be finite (JSON has no NaN or inf)")
            tensor = {"name": self.input_name, "shape": list(rows.shape), "datatype": self.datatype, "data": rows}
        binary = self._use_binary()
        output: dict[str, Any] = {"name": self.output_name}
        if binary:
            output["parameters"] = {"binary_data": True}
        body, header = wire.encode({"inputs": [tensor], "outputs": [output]}, "inputs", binary)
        if header is None:
            return body, {}
        return body, {"Content-Type": wire.CONTENT_TYPE, wire.HEADER: str(header)}

    def _parse(self, response: Any, n: int) -> Predictions:
        header = response.headers.get(wire.HEADER) if response.status_code == 200 else None
        if header is None:
            body = self._checked_json(response, "inference")
        else:
            try:
                body = wire.decode(response.content, header, "outputs")
            except wire.WireError as exc:
                raise PredictionError(f"{self.name}: the binary inference answer is malformed: {exc}") from None
        outputs = body.get("outputs")
        if not isinstance(outputs, list):
            raise PredictionError(f"{self.name}: the answer has no 'outputs' list: {short(body)}")
        match = [o for o in outputs if isinstance(o, dict) and o.get("name") == self.output_name]
        if not match:
            names = [o.get("name") for o in outputs if isinstance(o, dict)]
            raise PredictionError(f"{self.name}: the answer has outputs {names}, not {self.output_name!r}")
        tensor = match[0]
        try:
            values = np.asarray(tensor["data"], dtype=np.float64)
            shape = [int(d) for d in tensor["shape"]]
            values = values.reshape(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictionError(f"{self.name}: output {self.output_name!r} is not a numeric tensor ({exc})") from None
        if values.ndim != 2 or values.shape[0] != n:
            raise PredictionError(
                f"{self.name}: output {self.output_name!r} has shape {list(values.shape)}; expected [{n}, classes]"
            )
        if self.output == "logits":
            return Predictions.from_logits(values, self.classes, source=self.name)
        return Predictions.from_probs(values, self.classes, source=self.name)

    def _predict_batch(self, inputs: Sequence[Any]) -> Predictions:
        payload, headers = self._payload(inputs)
        response = self._request("POST", self.model_path + "/infer", content=payload, headers=headers)
        return self._parse(response, len(inputs))

    async def _apredict_batch(self, inputs: Sequence[Any]) -> Predictions:
        await self._ause_binary()
        payload, headers = self._payload(inputs)
        response = await self._arequest("POST", self.model_path + "/infer", content=payload, headers=headers)
        return self._parse(response, len(inputs))

    # -- HTTP ------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._http.request(method, path, **kwargs)

    async def _arequest(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self._http.arequest(method, path, **kwargs)

    def _checked_json(self, response: Any, what: str) -> dict[str, Any]:
        if int(response.status_code) != 200:
            raise status_error(response, f"{self.name}: {what} request ({response.request.method} "
                                         f"{response.request.url.path})")
        try:
            body = response.json()
        except ValueError:
            raise PredictionError(f"{self.name}: the {what} answer is not JSON: {short(response.text)}") from None
        if not isinstance(body, dict):
            raise PredictionError(f"{self.name}: the {what} answer is not a JSON object: {short(body)}")
        return body

    def close(self) -> None:
        """Close the HTTP client (its sockets) and its loop thread; the next call reopens them."""
        self._http.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await self._http.aclose()

    def __enter__(self) -> OIPPredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> OIPPredictor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"OIPPredictor(url={self.url!r}, model={self.model!r}, output={self.output!r}, batch_size={self.batch_size})"


def _speaks_binary(response: Any) -> bool:
    """Whether a ``GET /v2`` answer lists the binary tensor extension (an error answer: no)."""
    try:
        extensions = response.json().get("extensions") if response.status_code == 200 else None
    except (ValueError, AttributeError):
        extensions = None
    return isinstance(extensions, list) and "binary_tensor_data" in extensions


def _classes_parameter(parameters: Any) -> tuple[str, ...] | None:
    """``classes`` from an OIP ``parameters`` object: a list, or a JSON list / comma-separated string."""
    if not isinstance(parameters, dict) or parameters.get("classes") is None:
        return None
    value = parameters["classes"]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list) or not value:
        raise PredictionError(f"the model metadata's 'classes' parameter is not a list of names: {value!r}")
    return tuple(str(v) for v in value)

