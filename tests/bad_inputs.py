"""Catalogue of bad inputs and the error each produces.

Used twice: ``tests/test_bad_inputs.py`` checks every case, and
``tools/gen_bad_inputs_table.py`` renders the table in ``docs/reliability.md`` from the same
cases, so the documentation shows the messages users actually see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from confroute import (
    CallablePredictor,
    Cascade,
    CircuitBreaker,
    CostModel,
    Fallback,
    Predictions,
    ThresholdRouter,
)
from confroute.predictors._text import check_texts

NEG_POS = ["neg", "pos"]


def _router(primary_rows: Callable[[Any], Any], fallback_rows: Callable[[Any], Any] | None = None, **kw: Any):
    primary = CallablePredictor(primary_rows, classes=kw.pop("primary_classes", NEG_POS), name="primary")
    fb = fallback_rows or (lambda xs: np.tile([0.5, 0.5], (len(xs), 1)))
    fallback = CallablePredictor(fb, classes=kw.pop("fallback_classes", NEG_POS), name="fallback")
    return ThresholdRouter(primary, fallback, threshold=kw.pop("threshold", 0.9), **kw)


def _rows(row: list[float]) -> Callable[[Any], Any]:
    return lambda xs: np.tile(row, (len(xs), 1))


def _evaluate_unknown_label() -> Any:
    from confroute import evaluate

    preds = Predictions.from_probs([[0.9, 0.1], [0.2, 0.8]], NEG_POS)
    return evaluate(labels=np.array(["neg", "maybe"]), primary=preds, fallback=preds)


def _choose_with_nan_budget() -> Any:
    from confroute import choose_thresholds, evaluate

    rng = np.random.default_rng(0)
    preds = Predictions.from_probs(rng.dirichlet([1, 1], 50))
    res = evaluate(labels=rng.integers(0, 2, 50), primary=preds, fallback=preds, cost_model=[1.0, 5.0])
    return choose_thresholds(res, max_cost_per_input=float("nan"))


def _load_file(name: str, content: str) -> Any:
    """``load_texts("NAME")`` on a file written in a scratch folder (relative path, as typed)."""
    import os
    import tempfile

    from confroute import load_texts

    here = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)
        try:
            with open(name, "w", encoding="utf-8") as fh:
                fh.write(content)
            return load_texts(name)
        finally:
            os.chdir(here)


def _cli(*argv: str) -> Any:
    """What ``confroute evaluate ARGV`` reports (the CLIError it prints as one line), run in a
    scratch folder that holds a valid ``dev.tsv``."""
    import os
    import tempfile

    from confroute.cli._main import build_parser
    from confroute.cli.evaluate import run

    args = build_parser().parse_args(["evaluate", *argv])
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)
        try:
            with open("dev.tsv", "w", encoding="utf-8") as fh:
                fh.write("sentence\tlabel\nfine\t1\n")
            return run(args, lambda line: None)
        finally:
            os.chdir(here)


@dataclass(frozen=True)
class Case:
    what: str
    call: Callable[[], Any]
    error: type[BaseException] | None  # None: no error, a documented non-error outcome
    expect: str  # a fragment of the message (or of the outcome)


CASES: list[Case] = [
    Case("empty batch", lambda: len(_router(_rows([0.5, 0.5])).route([])), None, "0"),
    Case("a single string instead of a batch", lambda: _router(_rows([0.5, 0.5])).route("great film"),
         TypeError, "not a single string"),
    Case("a non-sequence batch (a generator)", lambda: _router(_rows([0.5, 0.5])).route(x for x in "ab"),
         TypeError, "sized, indexable batch"),
    Case("`None` among text inputs", lambda: check_texts(["good", None, "bad"], "deepsparse:minilm-sst2-pruned80"),
         TypeError, "input 1 is None"),
    Case("a number among text inputs", lambda: check_texts(["good", 3.5], "onnx:minilm-sst2-pruned80"),
         TypeError, "input 1 is"),
    Case("probabilities with NaN", lambda: _router(_rows([np.nan, 1.0])).route(["a"]),
         ValueError, "non-finite probabilities"),
    Case("probabilities with inf", lambda: _router(_rows([np.inf, 0.0])).route(["a"]),
         ValueError, "non-finite probabilities"),
    Case("rows that do not sum to 1", lambda: _router(_rows([0.5, 0.7])).route(["a"]),
         ValueError, "do not sum to 1"),
    Case("logits passed as probabilities", lambda: _router(_rows([2.3, -1.2])).route(["a"]),
         ValueError, "declare output='logits'"),
    Case("1-D output instead of (n, k)", lambda: _router(lambda xs: np.full(len(xs), 0.5)).route(["a"]),
         ValueError, "expected (n_inputs, n_classes)"),
    Case("wrong number of rows from the primary", lambda: _router(lambda xs: np.array([[0.5, 0.5]])).route(["a", "b"]),
         ValueError, "returned 1 predictions for 2 inputs"),
    Case("wrong number of rows from the fallback", lambda: _router(_rows([0.5, 0.5]), lambda xs: np.zeros((0, 2))).route(["a"]),
         ValueError, "returned 0 predictions for 1 inputs"),
    Case("class count differs between stages",
         lambda: _router(_rows([0.5, 0.5]), _rows([0.2, 0.3, 0.5]), fallback_classes=None).route(["a"]),
         ValueError, "returns 3 classes but earlier stages return 2"),
    Case("class names differ between stages",
         lambda: _router(_rows([0.5, 0.5]), _rows([0.5, 0.5]), fallback_classes=["negative", "positive"]).route(["a"]),
         ValueError, "cannot be matched by name"),
    Case("same class names in another order", lambda: _router(
        _rows([0.5, 0.5]), _rows([0.9, 0.1]), fallback_classes=["pos", "neg"]).route(["a"]).labels[0],
         None, "pos"),
    Case("threshold above the score's range", lambda: _router(_rows([0.5, 0.5]), threshold=1.2),
         ValueError, "must lie in the score's range [0.0, 1.0] (or be inf), got 1.2"),
    Case("threshold NaN", lambda: _router(_rows([0.5, 0.5]), threshold=float("nan")),
         ValueError, "got nan"),
    Case("per-class thresholds for the wrong number of classes",
         lambda: _router(_rows([0.5, 0.5]), threshold=[0.5, 0.6, 0.7]).route(["a"]),
         ValueError, "3 per-class thresholds for 2 classes"),
    Case("per-class thresholds naming an unknown class",
         lambda: _router(_rows([0.5, 0.5]), threshold={"neg": 0.5, "maybe": 0.6}).route(["a"]),
         ValueError, "unknown classes ['maybe']"),
    Case("thresholds count does not match stages", lambda: Cascade([_rows([0.5, 0.5])] * 3, thresholds=[0.5]),
         ValueError, "3 stages need 2 threshold(s)"),
    Case("cost model with the wrong number of stages",
         lambda: _router(_rows([0.5, 0.5]), cost_model=CostModel.per_sample([1, 2, 3])),
         ValueError, "cost model has 3 stages but the router has 2"),
    Case("unknown score name", lambda: _router(_rows([0.5, 0.5]), score="confidence"),
         ValueError, "unknown score 'confidence'"),
    Case("unknown failure policy", lambda: Fallback(_rows([0.5, 0.5]), on_error="ignore"),
         ValueError, "on_error must be one of"),
    Case("label outside the known classes in evaluate()", _evaluate_unknown_label,
         ValueError, "not among"),
    # -- issue 12 ------------------------------------------------------------------------------
    Case("a single string to `route_stream`", lambda: next(_router(_rows([0.5, 0.5])).route_stream("great film")),
         TypeError, "not a single string"),
    Case("NaN retry backoff", lambda: Fallback(_rows([0.5, 0.5]), backoff=float("nan")),
         ValueError, "backoff must be a finite number >= 0, got nan"),
    Case("fractional retry count", lambda: Fallback(_rows([0.5, 0.5]), retries=1.5),
         TypeError, "retries must be an integer >= 0, got 1.5"),
    Case("fractional batch size", lambda: Fallback(_rows([0.5, 0.5]), batch_size=2.5),
         TypeError, "batch_size must be an integer >= 1, got 2.5"),
    Case("zero concurrency", lambda: Fallback(_rows([0.5, 0.5]), max_concurrency=0),
         ValueError, "max_concurrency must be an integer >= 1, got 0"),
    Case("NaN timeout", lambda: Fallback(_rows([0.5, 0.5]), timeout=float("nan")),
         ValueError, "timeout must be a finite number > 0, got nan"),
    Case("`KeyboardInterrupt` in `retry_on`", lambda: Fallback(_rows([0.5, 0.5]), retry_on=(KeyboardInterrupt,)),
         TypeError, "retry_on must be a tuple of exception classes"),
    Case("circuit breaker that never half-opens (`reset_after=nan`)",
         lambda: CircuitBreaker(reset_after=float("nan")), ValueError, "reset_after must be a finite number >= 0"),
    Case("fewer stage names than prices", lambda: CostModel.per_sample([0.001, 0.005], names=["cheap"]),
         ValueError, "2 prices but 1 name"),
    Case("one price instead of one per stage", lambda: CostModel.per_sample(0.001),
         TypeError, "give one price per stage"),
    Case("NaN cost budget", _choose_with_nan_budget, ValueError, "max_cost_per_input must be a finite number, got nan"),
    Case("empty text cell in a data file", lambda: _load_file("dev.tsv", "sentence\tlabel\nfine\t1\n\t0\n"),
         ValueError, "dev.tsv, row 1: column 'sentence' is empty"),
    Case("integer label beyond 64 bits", lambda: _load_file("dev.tsv", f"sentence\tlabel\nfine\t{10**20}\n"),
         ValueError, "beyond the 64-bit range"),
    Case("CLI: a pickled model without `--allow-pickle`", lambda: _cli("sklearn:cheap.pkl", "hf:dense", "dev.tsv"),
         Exception, "--allow-pickle"),
    Case("CLI: `hf:` path that does not exist", lambda: _cli("hf:models/dense", "hf:models/dense", "dev.tsv"),
         Exception, "no such file or directory: models/dense (for a model on the Hugging Face Hub, write hf:hub:"),
]


# -- bad request bodies of the Ray Serve service (issue 24) ------------------------------------------
# Each body is tried against both endpoints of the service serving the toy text router of
# tests/_serve_toy.py: ``POST /route`` and ``POST /v2/models/toy/infer`` (None: that endpoint has
# no such body). ``served_answer`` asks the service's own ingress in this process (no Ray: every
# body here is refused before any stage is called); tests/test_serve_bad_bodies.py sends the
# same bodies to a real Ray Serve application and checks it answers exactly the same.


@dataclass(frozen=True)
class BadBody:
    what: str
    route: bytes | None
    infer: bytes | None


def _j(obj: Any) -> bytes:
    import json

    return json.dumps(obj).encode()


def _route(inputs: Any) -> bytes:
    return _j({"inputs": inputs})


def _tensor(data: Any, shape: Any, datatype: str = "BYTES", **extra: Any) -> bytes:
    return _j({"inputs": [{"name": "input", "datatype": datatype, "shape": shape, "data": data}], **extra})


_DEEP = b"[" * 100_000 + b"]" * 100_000

BAD_BODIES: list[BadBody] = [
    BadBody("an empty body", b"", b""),
    BadBody("not JSON", b"{inputs: [", b"{inputs: ["),
    BadBody("not UTF-8", b'{"inputs": ["\xff\xfe"]}', b'{"inputs": ["\xff\xfe"]}'),
    BadBody("JSON nested 100,000 deep", b'{"inputs": ' + _DEEP + b"}", b'{"inputs": ' + _DEEP + b"}"),
    BadBody("a JSON list instead of an object", b'["good film"]', b'["good film"]'),
    BadBody("no `inputs`", b"{}", b"{}"),
    BadBody("`inputs` is a string", _route("good film"), _j({"inputs": "good film"})),
    BadBody("`inputs` is an object", _route({"text": "good film"}), _j({"inputs": {"data": ["good film"]}})),
    BadBody("a number among the texts", _route(["good", 3]), _tensor(["good", 3], [2])),
    BadBody("`null` among the texts", _route(["good", None]), _tensor(["good", None], [2])),
    BadBody("a boolean among the texts", _route(["good", True]), _tensor(["good", True], [2])),
    BadBody("an object among the texts", _route(["good", {"text": "bad"}]), _tensor(["good", {"text": "bad"}], [2])),
    BadBody("nested lists of texts", _route([["good"], ["bad"]]), _tensor([[["good"]]], [1])),
    BadBody("numbers sent to a text model", _route([0.5, 0.7]), _tensor([0.5, 0.7], [2, 1], "FP64")),
    BadBody("feature rows sent to a text model", _route([[0.1, 0.2]]), _tensor([0.1, 0.2], [1, 2], "FP64")),
    BadBody("texts and numbers mixed", _route([[0.1, 0.2], "good"]), None),
    BadBody("feature rows of different lengths", _route([[0.1, 0.2], [0.3]]), _tensor([0.1, 0.2, 0.3], [2, 2], "FP64")),
    BadBody("`1e400` (overflows to inf)", b'{"inputs": [[1e400, 0.5]]}',
            b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [1e400, 0.5]}]}'),
    BadBody("`NaN`", b'{"inputs": [[NaN, 0.5]]}',
            b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [NaN, 0.5]}]}'),
    BadBody('OIP `shape` of `["a"]`', None, _tensor(["good"], ["a"])),
    BadBody("OIP `shape` of `[null]`", None, _tensor(["good"], [None])),
    BadBody("OIP `shape` of `[-1]`", None, _tensor(["good"], [-1])),
    BadBody("OIP `shape` that does not match the data", None, _tensor(["good", "bad"], [3])),
    BadBody("OIP texts of shape `[1, 2]`", None, _tensor(["good", "bad"], [1, 2])),
    BadBody("OIP tensor without `data`", None, _j({"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1]}]})),
    BadBody("OIP: two input tensors", None, _j({"inputs": [{"name": "a", "datatype": "BYTES", "shape": [1], "data": ["x"]}] * 2})),
    BadBody("OIP: an unknown output asked for", None, _tensor(["good"], [1], outputs=[{"name": "probs"}])),
]


def served_router_info() -> Any:
    """What the ingress knows of the toy text router (tests/_serve_toy.py)."""
    import _serve_toy

    from confroute.integrations.ray import describe_router

    return describe_router(_serve_toy.text_router())


def served_answer(endpoint: str, body: bytes) -> tuple[int, str]:
    """``(status, error message)`` of the service's ingress for ``body`` on ``endpoint``
    (``"route"`` or ``"infer"``), asked in this process through its HTTP handler."""
    import asyncio
    import json

    from starlette.requests import Request

    import _serve_toy
    from confroute.integrations.serve import Ingress

    ingress = Ingress(served_router_info(), _serve_toy.NAME, [], metrics=False)
    path = "/route" if endpoint == "route" else f"/v2/models/{_serve_toy.NAME}/infer"
    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"content-type", b"application/json")], "root_path": "", "scheme": "http",
             "server": ("127.0.0.1", 8000)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    response = asyncio.run(ingress(Request(scope, receive)))
    return response.status_code, json.loads(response.body).get("error", "")
