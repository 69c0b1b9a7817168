"""Routing one stage at a time, for engines that run each stage as its own step (Ray Data).

:meth:`Cascade.route` keeps every input of a batch in one process and walks the stages with
:meth:`Cascade._plan`. A distributed engine instead runs stage ``s`` on a stream of row batches,
keeps only the rows it deferred and hands them to stage ``s + 1`` in *other* batches, possibly
on another machine. What a row needs to carry between stages is its per-row routing state; this
module defines that state (:class:`RowState`) and the step that advances it through one stage
(:func:`advance`).

The acceptance rule itself (class alignment, calibration, score, threshold) is not
re-implemented here: :func:`advance` calls the router's own per-stage decision,
``Cascade._decide``, which ``Cascade._plan`` uses too; what this module adds is only the
bookkeeping ``_plan`` keeps in local arrays (failure policies, final answers, costs). The
test-suite checks that routing stage by stage gives what ``router.route`` gives.

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.types import PredictionError, RoutingResult
from ..core.batch import n_rows, take_rows
from .cascade import Cascade

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


@dataclass
class RowState:
    """Per-row routing state that travels with a row from stage to stage (all arrays length m).

    ``stage_labels`` and ``stage_scores`` have shape ``(n_stages, m)``. ``n_classes`` is the
    class count of the last stage that answered the row (``-1`` before any). ``cost`` is set
    once a row is final.
    """

    stage_labels: np.ndarray
    stage_scores: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    stage: np.ndarray
    degraded: np.ndarray
    errors: np.ndarray
    cost: np.ndarray
    n_classes: np.ndarray

    @classmethod
    def initial(cls, n_stages: int, m: int) -> RowState:
        return cls(
            stage_labels=np.full((n_stages, m), -1, dtype=np.int64),
            stage_scores=np.full((n_stages, m), np.nan),
            labels=np.full(m, -1, dtype=np.int64),
            confidence=np.full(m, np.nan),
            stage=np.full(m, -1, dtype=np.int64),
            degraded=np.zeros(m, dtype=bool),
            errors=np.full(m, None, dtype=object),
            cost=np.full(m, np.nan),
            n_classes=np.full(m, -1, dtype=np.int64),
        )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: np.ndarray) -> RowState:
        return RowState(
            self.stage_labels[:, index], self.stage_scores[:, index], self.labels[index],
            self.confidence[index], self.stage[index], self.degraded[index], self.errors[index],
            self.cost[index], self.n_classes[index],
        )

    @staticmethod
    def concat(parts: Sequence[RowState]) -> RowState:
        return RowState(
            np.concatenate([p.stage_labels for p in parts], axis=1),
            np.concatenate([p.stage_scores for p in parts], axis=1),
            *(np.concatenate([getattr(p, f) for p in parts])
              for f in ("labels", "confidence", "stage", "degraded", "errors", "cost", "n_classes")),
        )


def advance(router: Cascade, s: int, inputs: Sequence[Any], state: RowState) -> tuple[RowState, np.ndarray]:
    """Run stage ``s`` on rows that reached it and update their state.

    Calls the stage through its :class:`~confroute.Fallback` (so retries, splitting and the
    ``on_error`` policy apply), decides with ``Cascade._decide``, and returns the new state
    and a mask of the rows deferred to stage ``s + 1``. Rows not deferred are final: their cost
    (stages ``0 .. s``) is filled in.
    """
    m = n_rows(inputs)
    name = router.names[s]
    state = RowState(**{k: v.copy() for k, v in vars(state).items()})
    if m == 0:
        return state, np.zeros(0, dtype=bool)
    outcome = router.stages[s].call(inputs)
    ref = declared_classes(router, s - 1) if s > 0 else None
    decision = router._decide(s, inputs, outcome, ref, len(ref) if ref is not None else None)
    ok = decision.ok
    if ok.any():
        returned = outcome.predictions.classes if outcome.predictions is not None else None
        check_declared(router, s, returned, ref)
        earlier = state.n_classes[ok]
        bad = (earlier >= 0) & (earlier != decision.n_classes)
        if s > 0 and bad.any():
            raise PredictionError(
                f"stage {name!r} returns {decision.n_classes} classes but earlier stages return "
                f"{int(earlier[bad][0])}"
            )
        state.n_classes[ok] = decision.n_classes
    state.stage_labels[s] = decision.labels
    state.stage_scores[s] = decision.scores
    failed = ~ok
    if failed.any():
        state.degraded[failed] = True
        state.errors[failed] = decision.errors[failed]
        if router.stages[s].on_error == "keep_primary" and s > 0:
            # The previous stage answered these rows (it only deferred them).
            state.labels[failed] = state.stage_labels[s - 1, failed]
            state.confidence[failed] = state.stage_scores[s - 1, failed]
            state.stage[failed] = s - 1
    acc = decision.accept
    state.labels[acc] = decision.labels[acc]
    state.confidence[acc] = decision.scores[acc]
    state.stage[acc] = s
    defer = decision.defer
    final = ~defer
    if router.cost_model is not None and final.any():
        reached = np.zeros((router.n_stages, int(final.sum())), dtype=bool)
        reached[: s + 1] = True
        state.cost[final] = router.cost_model.per_input(reached)
    return state, defer


def to_routing_result(router: Cascade, state: RowState) -> RoutingResult:
    """A :class:`RoutingResult` from final row states (rows in the order given)."""
    n_stages = router.n_stages
    answered = np.where(state.stage_labels >= 0, np.arange(n_stages)[:, None], -1)
    # A failure makes a row final at the stage that failed: one past the last stage that answered.
    last = answered.max(axis=0, initial=-1) + state.degraded.astype(np.int64)
    reached = np.arange(n_stages)[:, None] <= last[None, :]
    answered_classes = state.n_classes[state.n_classes >= 0]
    return RoutingResult(
        label_index=state.labels,
        classes=declared_classes(router, n_stages - 1),
        confidence=state.confidence,
        stage=state.stage,
        stage_names=router.names,
        stage_label_index=state.stage_labels,
        stage_scores=state.stage_scores,
        reached=reached,
        degraded=state.degraded,
        errors=state.errors,
        cost=None if router.cost_model is None else state.cost,
        n_classes=int(answered_classes[0]) if answered_classes.size else None,
    )


def route_stagewise(router: Cascade, inputs: Sequence[Any], batch_size: int | None = None) -> RowState:
    """Route ``inputs`` the way a distributed engine does: stage by stage, deferred rows only,
    in batches of ``batch_size`` per stage. Returns the final row states in input order.

    The reference for the Ray path that runs without Ray (tests compare it with ``route``).
    """
    n = n_rows(inputs)
    final_states: list[RowState] = []
    final_rows: list[np.ndarray] = []
    pending = np.arange(n)
    state = RowState.initial(router.n_stages, n)  # aligned with ``pending``
    for s in range(router.n_stages):
        if pending.size == 0:
            break
        size = batch_size or pending.size
        deferred_states: list[RowState] = []
        deferred_rows: list[np.ndarray] = []
        for lo in range(0, pending.size, size):
            rows = pending[lo : lo + size]
            new, defer = advance(router, s, take_rows(inputs, rows), state.take(np.arange(lo, lo + rows.size)))
            final_states.append(new.take(np.flatnonzero(~defer)))
            final_rows.append(rows[~defer])
            deferred_states.append(new.take(np.flatnonzero(defer)))
            deferred_rows.append(rows[defer])
        pending = np.concatenate(deferred_rows)
        state = RowState.concat(deferred_states)
    if not final_states:
        return RowState.initial(router.n_stages, 0)
    order = np.argsort(np.concatenate(final_rows), kind="stable")
    return RowState.concat(final_states).take(order)
