"""Routing one stage at a time, for engines that run each stage as its own step (Ray Data, Ray Serve).

:meth:`Cascade.route` keeps every input of a batch in one process and walks the stages with
:meth:`Cascade._plan`. A distributed engine instead runs stage ``s`` on a stream of row batches,
keeps only the rows it deferred and hands them to stage ``s + 1`` in *other* batches, possibly
on another machine. What a row needs to carry between stages is its per-row routing state,
:class:`~confroute.routing.stage_loop.RowState`; :func:`advance` moves it through one stage.

Nothing of the routing itself is re-implemented here: :func:`advance` calls the stage through
its :class:`~confroute.Fallback`, decides with :meth:`Cascade.decide` and advances the rows with
:func:`confroute.routing.stage_loop.step`, exactly as ``Cascade._plan`` does. The test-suite
checks that routing stage by stage gives what ``router.route`` gives.

Class alignment needs to know the cascade's class names before a stage's batch arrives. In
``_plan`` they are whatever the earlier stages *returned*; a worker running stage ``s`` only
sees its own stage, so here they are what the earlier stages *declare* (``predictor.classes``).
The two agree unless a stage names classes in its predictions without declaring them and no
earlier stage declared any; that case is refused with an error saying to declare them. The
number of classes, when no stage names them, travels with each row (``RowState.n_classes``)
so that a width mismatch is still an error, never a silent mislabel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.batch import n_rows, take_rows
from ..core.types import PredictionError, RoutingResult
from .cascade import Cascade
from .stage_loop import RowState, plan_stagewise, result_from_state, step

__all__ = [
    "RowState",
    "advance",
    "declared_classes",
    "check_declared",
    "route_stagewise",
    "to_routing_result",
]


def declared_classes(router: Cascade, upto: int) -> tuple[Any, ...] | None:
    """The class names declared by the first of stages ``0 .. upto`` that declares any."""
    for stage in router.stages[: upto + 1]:
        if stage.classes is not None:
            return tuple(stage.classes)
    return None


def check_declared(
    router: Cascade, s: int, returned: tuple[Any, ...] | None, ref: tuple[Any, ...] | None
) -> None:
    """Refuse class names that would become the cascade's reference without being declared."""
    if returned is not None and ref is None and router.stages[s].classes is None:
        raise PredictionError(
            f"stage {router.names[s]!r} names its classes {list(returned)} only in the predictions it "
            "returns; declare them on the predictor (classes=...) so that every worker aligns the "
            "stages by name"
        )


def advance(router: Cascade, s: int, inputs: Sequence[Any], state: RowState) -> tuple[RowState, np.ndarray]:
    """Run stage ``s`` on rows that reached it and update (a copy of) their state.

    Calls the stage through its :class:`~confroute.Fallback` (so retries, splitting and the
    ``on_error`` policy apply), decides with :meth:`Cascade.decide`, advances with
    :func:`~confroute.routing.stage_loop.step`, and returns the new state and a mask of the
    rows deferred to stage ``s + 1``. Rows not deferred are final: their cost is filled in.
    """
    m = n_rows(inputs)
    state = state.copy()
    if m == 0:
        return state, np.zeros(0, dtype=bool)
    outcome = router.stages[s].call(inputs)
    ref = declared_classes(router, s - 1) if s > 0 else None
    decision = router.decide(s, inputs, outcome, ref, len(ref) if ref is not None else None)
    if decision.ok.any():
        returned = outcome.predictions.classes if outcome.predictions is not None else None
        check_declared(router, s, returned, ref)
    defer = step(state, np.arange(m), s, decision, router.stages[s].on_error, router.cost_model, router.names[s],
                 usage=router.stage_usage(s, inputs))
    return state, defer


def to_routing_result(router: Cascade, state: RowState) -> RoutingResult:
    """A :class:`RoutingResult` from final row states (rows in the order given)."""
    answered_classes = state.n_classes[state.n_classes >= 0]
    return result_from_state(
        state,
        router.names,
        declared_classes(router, router.n_stages - 1),
        int(answered_classes[0]) if answered_classes.size else None,
        router.cost_model is not None,
    )


def route_stagewise(router: Cascade, inputs: Sequence[Any], batch_size: int | None = None) -> RowState:
    """Route ``inputs`` the way a distributed engine does: stage by stage, deferred rows only,
    in batches of ``batch_size`` per stage. Returns the final row states in input order.

    The reference for the Ray paths that runs without Ray (tests compare it with ``route``).
    """
    plan = plan_stagewise(n_rows(inputs), router.n_stages, batch_size)
    try:
        s, rows, state = next(plan)
        while True:
            s, rows, state = plan.send(advance(router, s, take_rows(inputs, rows), state))
    except StopIteration as done:
        final: RowState = done.value
        return final
