"""The stage loop, written once: what one stage's answer does to the rows that reached it.

Every way of routing walks the same loop. Stage ``s`` is called on the rows that reached it;
its :class:`StageDecision` (which rows it answered, their column index and score, which it
accepts) comes from :meth:`Cascade.decide <confroute.Cascade.decide>`; then :func:`step`
updates those rows' :class:`RowState`:

* rows the stage accepts are answered by it (final);
* rows it answered but does not accept go on to stage ``s + 1``;
* rows it failed on (after the :class:`~confroute.Fallback`'s retries) follow its ``on_error``
  policy: ``"keep_previous"`` keeps the previous stage's answer (that stage only deferred them;
  on the first stage there is none, so the row is abstained on), ``"abstain"`` leaves the row
  without an answer (``label_index`` ``-1``); both flag the row ``degraded`` and record the
  error. The stage that failed is the last stage the row reached (:attr:`RowState.failed_stage`);
* a row that is final pays every stage it reached, priced by
  :meth:`CostModel.per_input <confroute.CostModel.per_input>`.

:meth:`Cascade.route` and :meth:`Cascade.aroute` (through ``Cascade._plan``), the stage-wise
driver of :mod:`confroute.routing.stagewise`, the Ray Serve ingress and Ray Data's
``route_dataset`` all call :func:`step`; :func:`result_from_state` turns the final row states
into a :class:`~confroute.RoutingResult`. :func:`plan_stagewise` is the driver of engines that
run each stage as its own step (in batches, possibly elsewhere): it asks for stage ``s`` on some
rows and puts the final rows back in input order.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..core._deprecation import renamed_attribute
from ..core.classes import Classes
from ..core.cost import CostModel
from ..core.types import PredictionError, RoutingResult

__all__ = ["StageDecision", "RowState", "step", "result_from_state", "plan_stagewise"]


@dataclass(frozen=True)
class StageDecision:
    """What one stage decided for a batch of ``m`` inputs.

    ``ok``: the stage answered the input (False where it failed under a non-raising policy);
    ``label_index`` / ``scores``: its own answer (column index) and (calibrated) score, ``-1`` /
    NaN where it failed; ``accept``: answered and confident enough (every answered input on the
    last stage); ``errors``: message per failed input; ``classes`` / ``n_classes``: the
    cascade's classes so far.
    """

    ok: np.ndarray
    label_index: np.ndarray
    scores: np.ndarray
    accept: np.ndarray
    errors: np.ndarray
    classes: Classes | None
    n_classes: int | None

    @property
    def defer(self) -> np.ndarray:
        """Inputs that go on to the next stage."""
        return self.ok & ~self.accept

    labels = renamed_attribute("label_index")  # deprecated name (goes in 0.3)


@dataclass
class RowState:
    """Per-row routing state that travels with a row from stage to stage (arrays of length m).

    ``stage_label_index`` and ``stage_scores`` have shape ``(n_stages, m)``: each stage's own
    column index and score (``-1`` / NaN where it did not answer). ``label_index``,
    ``confidence`` and ``stage`` are the final answer (``-1`` / NaN / ``-1`` until there is
    one). ``reached_stage`` is the last stage the row was sent to (``-1`` before any);
    ``n_classes`` the class count of the last stage that answered the row (``-1`` before any).
    ``cost`` is set once a row is final. ``stage_prices`` (``(n_stages, m)``) holds what the row
    paid at each stage priced by tokens (from the usage its predictor measured; NaN elsewhere).
    """

    stage_label_index: np.ndarray
    stage_scores: np.ndarray
    label_index: np.ndarray
    confidence: np.ndarray
    stage: np.ndarray
    degraded: np.ndarray
    errors: np.ndarray
    cost: np.ndarray
    n_classes: np.ndarray
    reached_stage: np.ndarray
    stage_prices: np.ndarray

    @classmethod
    def initial(cls, n_stages: int, m: int) -> RowState:
        return cls(
            stage_label_index=np.full((n_stages, m), -1, dtype=np.int64),
            stage_scores=np.full((n_stages, m), np.nan),
            label_index=np.full(m, -1, dtype=np.int64),
            confidence=np.full(m, np.nan),
            stage=np.full(m, -1, dtype=np.int64),
            degraded=np.zeros(m, dtype=bool),
            errors=np.full(m, None, dtype=object),
            cost=np.full(m, np.nan),
            n_classes=np.full(m, -1, dtype=np.int64),
            reached_stage=np.full(m, -1, dtype=np.int64),
            stage_prices=np.full((n_stages, m), np.nan),
        )

    def __len__(self) -> int:
        return int(self.label_index.shape[0])

    def take(self, index: np.ndarray) -> RowState:
        """The rows at ``index``, in that order (a copy)."""
        return RowState(**{f.name: _rows(getattr(self, f.name), index) for f in fields(self)})

    def copy(self) -> RowState:
        return RowState(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    @staticmethod
    def concat(parts: Sequence[RowState]) -> RowState:
        return RowState(**{
            f.name: np.concatenate([getattr(p, f.name) for p in parts], axis=1 if f.name.startswith("stage_") else 0)
            for f in fields(RowState)
        })

    @property
    def failed_stage(self) -> np.ndarray:
        """The stage that failed on each row (the last it reached), ``-1`` where none failed."""
        return np.where(self.degraded, self.reached_stage, -1)

    def reached(self, n_stages: int) -> np.ndarray:
        """``(n_stages, m)`` mask of the stages each row was sent to (what it pays for)."""
        return _reached(self.reached_stage, n_stages)

    labels = renamed_attribute("label_index")  # deprecated name (goes in 0.3)

    stage_labels = renamed_attribute("stage_label_index")  # deprecated name (goes in 0.3)


def _reached(reached_stage: np.ndarray, n_stages: int) -> np.ndarray:
    return np.arange(n_stages)[:, None] <= reached_stage[None, :]


def _rows(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    return values[:, index] if values.ndim == 2 else values[index]


def step(
    state: RowState,
    rows: np.ndarray,
    s: int,
    decision: StageDecision,
    on_error: str,
    cost_model: CostModel | None = None,
    where: str | None = None,
    usage: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Advance ``rows`` (positions in ``state``) through stage ``s`` with its decision, in place.

    Returns the mask (over ``rows``) of the rows deferred to stage ``s + 1``; every other row
    is final: answered by this stage, kept at the previous stage's answer, or abstained on
    (see the module docstring), and its cost is filled in when there is a cost model. ``usage``
    is stage ``s``'s measured token usage of ``rows`` when the cost model prices it by tokens.

    Examples
    --------
    >>> st = RowState.initial(2, 3)
    >>> d = StageDecision(np.array([True, True, False]), np.array([1, 0, -1]), np.array([0.9, 0.6, np.nan]),
    ...                   np.array([True, False, False]), np.array([None, None, "E: x"], dtype=object), None, 2)
    >>> step(st, np.arange(3), 0, d, "abstain").tolist()
    [False, True, False]
    >>> st.stage.tolist(), st.label_index.tolist(), st.degraded.tolist(), st.failed_stage.tolist()
    ([0, -1, -1], [1, -1, -1], [False, False, True], [-1, -1, 0])
    """
    rows = np.asarray(rows, dtype=np.int64)
    n_stages = state.stage_label_index.shape[0]
    ok = decision.ok
    if ok.shape != rows.shape:
        raise PredictionError(f"stage {where or s!r} decided {ok.size} rows for {rows.size} inputs")
    state.reached_stage[rows] = s
    if usage is not None and cost_model is not None:
        state.stage_prices[s, rows] = cost_model.stage_prices(s, usage)
    answered = rows[ok]
    if answered.size:
        earlier = state.n_classes[answered]
        bad = (earlier >= 0) & (earlier != decision.n_classes)
        if bad.any():
            raise PredictionError(
                f"stage {where or s!r} returns {decision.n_classes} classes but earlier stages return "
                f"{int(earlier[bad][0])}"
            )
        state.n_classes[answered] = -1 if decision.n_classes is None else decision.n_classes
    state.stage_label_index[s, rows] = np.where(ok, decision.label_index, -1)
    state.stage_scores[s, rows] = np.where(ok, decision.scores, np.nan)
    failed = rows[~ok]
    if failed.size:
        if on_error == "raise":  # a Fallback raises itself; a hand-made outcome may not
            raise PredictionError(str(decision.errors[~ok][0]))
        state.degraded[failed] = True
        state.errors[failed] = decision.errors[~ok]
        if on_error == "keep_previous" and s > 0:
            # The previous stage answered these rows (it only deferred them).
            state.label_index[failed] = state.stage_label_index[s - 1, failed]
            state.confidence[failed] = state.stage_scores[s - 1, failed]
            state.stage[failed] = s - 1
    done = rows[decision.accept]
    state.label_index[done] = decision.label_index[decision.accept]
    state.confidence[done] = decision.scores[decision.accept]
    state.stage[done] = s
    defer = decision.defer
    final = rows[~defer]
    if cost_model is not None and final.size:
        reached = _reached(state.reached_stage[final], n_stages)
        state.cost[final] = (cost_model.per_input(reached, prices=state.stage_prices[:, final])
                             if cost_model.token_stages else cost_model.per_input(reached))
    return defer


def result_from_state(
    state: RowState,
    stage_names: Sequence[str],
    classes: Classes | None,
    n_classes: int | None,
    has_cost: bool,
) -> RoutingResult:
    """A :class:`~confroute.RoutingResult` from final row states (rows in the order given)."""
    return RoutingResult(
        label_index=state.label_index,
        classes=classes,
        confidence=state.confidence,
        stage=state.stage,
        stage_names=tuple(stage_names),
        stage_label_index=state.stage_label_index,
        stage_scores=state.stage_scores,
        reached=state.reached(len(stage_names)),
        degraded=state.degraded,
        errors=state.errors,
        cost=state.cost if has_cost else None,
        n_classes=n_classes,
    )


def plan_stagewise(
    n: int, n_stages: int, batch_size: int | None = None
) -> Generator[tuple[int, np.ndarray, RowState], tuple[RowState, np.ndarray], RowState]:
    """The stage-by-stage driver: yields ``(s, rows, state)`` (run stage ``s`` on the inputs at
    positions ``rows``, whose state is ``state``), receives ``(new_state, defer)`` and returns
    the final row states in input order.

    Stage ``s`` runs on the rows stage ``s - 1`` deferred, in batches of ``batch_size``
    (default: all at once).
    """
    final_states: list[RowState] = []
    final_rows: list[np.ndarray] = []
    pending = np.arange(n)
    state = RowState.initial(n_stages, n)  # aligned with ``pending``
    for s in range(n_stages):
        if pending.size == 0:
            break
        size = batch_size or pending.size
        deferred_states: list[RowState] = []
        deferred_rows: list[np.ndarray] = []
        for lo in range(0, pending.size, size):
            rows = pending[lo : lo + size]
            new, defer = yield s, rows, state.take(np.arange(lo, lo + rows.size))
            final_states.append(new.take(np.flatnonzero(~defer)))
            final_rows.append(rows[~defer])
            deferred_states.append(new.take(np.flatnonzero(defer)))
            deferred_rows.append(rows[defer])
        pending = np.concatenate(deferred_rows)
        state = RowState.concat(deferred_states)
    if not final_states:
        return RowState.initial(n_stages, 0)
    order = np.argsort(np.concatenate(final_rows), kind="stable")
    return RowState.concat(final_states).take(order)
