"""Request checks and error answers of the Ray Serve ingress (:mod:`confroute.integrations.serve`).

One function, :func:`validate_inputs`, checks the inputs of both endpoints (``POST /route`` and
the OIP ``infer``) before any stage replica sees them: a bad body is a :class:`BadRequest`
(HTTP 400 with a one-line message). :func:`short_error` is the one line of an HTTP 500 (the
traceback goes to the log). :func:`stage_failed` turns the death of a stage replica into a
failure of that stage under its ``on_error`` policy. The table in ``docs/reliability.md`` lists
every bad body tried and its answer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..routing.stage_loop import RowState, StageDecision, step

if TYPE_CHECKING:
    from .ray import RouterInfo

__all__ = ["BadRequest", "validate_inputs", "short_error", "stage_failed", "stage_gone_errors", "kind_of",
           "finite_number", "clip", "MAX_ERROR_CHARS"]


class BadRequest(ValueError):
    """A request the service answers with HTTP 400 (its message is the answer's ``error``)."""


#: Longest ``error`` message of an HTTP 500 answer (the full traceback goes to the log).
MAX_ERROR_CHARS = 300


def short_error(exc: BaseException) -> str:
    """One line for a client: the error's type and the first line of its message, without the
    traceback Ray wraps around errors raised in a replica (``RayTaskError``)."""
    cause = getattr(exc, "cause", None)
    err = cause if isinstance(cause, BaseException) else exc
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def stage_gone_errors() -> tuple[type[BaseException], ...]:
    """What a stage call raises when its replica died or cannot be reached."""
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

    return RayActorError, ReplicaUnavailableError, DeploymentUnavailableError


def stage_failed(state: RowState, s: int, message: str, info: RouterInfo) -> tuple[RowState, np.ndarray]:
    """Stage ``s`` failed on every row of ``state`` (its replica died): the stage's ``on_error``
    policy applies, as for any stage failure (:func:`~confroute.routing.stage_loop.step`).

    Examples
    --------
    >>> from confroute.integrations.ray import RouterInfo
    >>> info = RouterInfo(("small", "big"), None, ("neg", "pos"), "max_prob", False, ("raise", "keep_previous"))
    >>> st = RowState.initial(2, 1)
    >>> st.stage_label_index[0], st.stage_scores[0], st.reached_stage[:] = [1], [0.6], 0
    >>> new, defer = stage_failed(st, 1, "ActorDiedError: gone", info)
    >>> new.stage.tolist(), new.label_index.tolist(), new.degraded.tolist(), defer.tolist()
    ([0], [1], [True], [False])
    """
    m = len(state)
    decision = StageDecision(
        ok=np.zeros(m, dtype=bool), label_index=np.full(m, -1, dtype=np.int64), scores=np.full(m, np.nan),
        accept=np.zeros(m, dtype=bool), errors=np.full(m, message, dtype=object), classes=None, n_classes=None,
    )
    state = state.copy()
    on_error = info.on_error[s] if s < len(info.on_error) else "raise"
    defer = step(state, np.arange(m), s, decision, on_error, info.cost_model, info.names[s])
    return state, defer


def kind_of(x: Any) -> str:
    """What a JSON value is, in the words of the error messages."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, (int, float)):
        return "a number"
    if isinstance(x, str):
        return "a text"
    if isinstance(x, (list, tuple, np.ndarray)):
        return "a list"
    return "an object" if isinstance(x, dict) else type(x).__name__


def finite_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)


def validate_inputs(inputs: Any, input_kind: str | None = None, oip: bool = False) -> list[Any]:
    """The inputs of a request, checked before any stage sees them; :class:`BadRequest` (HTTP 400)
    otherwise. Used by both endpoints (``/route`` and the OIP ``infer``).

    Inputs are texts (strings), or finite numbers, or feature rows (lists of finite numbers, all
    of one length), not mixed; a router whose stages take texts (``input_kind="text"``) takes
    texts only.

    Examples
    --------
    >>> validate_inputs(["a", "b"], "text")
    ['a', 'b']
    >>> validate_inputs([[1, 2.5], [3, 4]])
    [[1, 2.5], [3, 4]]
    >>> validate_inputs(["a", None])
    Traceback (most recent call last):
    ...
    confroute.integrations.serve_checks.BadRequest: input 1 is null; send texts or feature rows (lists of numbers)
    """
    if not isinstance(inputs, list):
        raise BadRequest('send a JSON object {"inputs": [...]} (a list of texts or feature rows)')
    width = None
    for i, x in enumerate(inputs):
        if isinstance(x, str):
            continue
        if isinstance(x, (list, np.ndarray)):
            for j, v in enumerate(x):
                if not finite_number(v):
                    what = kind_of(v) if not isinstance(v, float) else f"{v} (not a finite number)"
                    raise BadRequest(f"input {i}: a feature row holds finite numbers, element {j} is {what}")
            if width is not None and len(x) != width:
                raise BadRequest(f"input {i} has {len(x)} feature(s) but input 0 has {width}")
            width = len(x)
        elif not finite_number(x):
            what = kind_of(x) if not isinstance(x, float) else f"{x} (not a finite number)"
            raise BadRequest(f"input {i} is {what}; send texts or feature rows (lists of numbers)")
    texts = [isinstance(x, str) for x in inputs]
    if any(texts) and not all(texts):
        first = texts.index(not texts[0])
        raise BadRequest(f"inputs mix texts and numbers (input 0 is {kind_of(inputs[0])}, input {first} is "
                         f"{kind_of(inputs[first])}); send one kind")
    if input_kind == "text" and inputs and not texts[0]:
        what = "BYTES" if oip else "texts (strings)"
        given = "a number" if finite_number(inputs[0]) else "a feature row"
        raise BadRequest(f"this model takes texts: send {what}, not numbers (input 0 is {given})")
    return inputs


def clip(text: str, most: int = 80) -> str:
    return text if len(text) <= most else text[: most - 3] + "..."
