"""Routers: the N-stage :class:`Cascade` and its two-stage case, :class:`ThresholdRouter`.

Every stage is called once per batch, on exactly the inputs that reached it: the first stage
sees every input, stage ``s + 1`` sees only what stage ``s`` deferred. An input is *accepted* by
a stage when ``score >= threshold``; the last stage answers everything that reaches it.

The routing logic lives in one generator, :meth:`Cascade._plan`, that yields "run stage ``s`` on
these inputs" and receives the stage's outcome; it decides with :meth:`Cascade.decide` and
advances the rows with :func:`confroute.routing.stage_loop.step`, the one stage loop (which the
stage-wise, Ray Serve and Ray Data paths use too). :meth:`Cascade.route` and
:meth:`Cascade.aroute` are thin drivers around it, so the sync and async paths cannot drift.

Thread safety: a router keeps no per-call state. ``route`` may be called from many threads at
once provided the wrapped predictors allow it (scikit-learn, ONNX Runtime and PyTorch inference
do; a predictor that mutates itself per call does not). A shared :class:`CircuitBreaker` is
lock-protected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, cast

import numpy as np

from ..core._params import check_int
from ..core.batch import as_batch, n_rows, refuse_single_string, take_rows
from ..core.classes import Classes, align
from ..core.cost import CostModel
from ..core import _html, decision
from ..core.choice import stage_thresholds
from ..core.decision import ThresholdSpec, check_threshold, resolve_threshold
from ..core.scores import checked_scores, resolve_score, score_range
from ..core.types import PredictionError, Predictions, RoutingResult
from ..exceptions import ClassMismatchError
from ..predictors.base import Predictor
from ..predictors.callable import CallablePredictor
from .fallback import Fallback, StageOutcome
from .stage_loop import RowState, StageDecision, result_from_state, step

__all__ = ["Cascade", "ThresholdRouter"]


_StageRequest = tuple[int, Sequence[Any]]


class Cascade:
    """Route inputs through stages of increasing cost; each answers what it is confident on.

    Parameters
    ----------
    stages : sequence of Predictor, Fallback or callable
        In cascade order, cheapest first. A bare predictor is called with ``on_error="raise"``;
        wrap it in :class:`~confroute.Fallback` for retries, timeouts and failure policies.
        A plain callable must return probabilities (wrap it in
        :class:`~confroute.CallablePredictor` to declare logits).
    thresholds : sequence
        One per stage but the last. Each is a float (global threshold), an array of one
        threshold per class (indexed by the stage's predicted class), or a mapping from class
        name to threshold.
    score : str, callable or PredictionScore, or a list of them (one per stage)
        Confidence score: ``"max_prob"`` (default), ``"margin"``, ``"neg_entropy"``, a function
        ``probs -> scores``, or an object with ``score_predictions(predictions, inputs)``.
    calibrators : sequence, optional
        One per stage (``None`` for none): fitted calibrators with ``transform(log_scores) -> probs``,
        applied to the stage's logits (or log-probabilities) before scoring.
    cost_model : CostModel, optional
        When given, results carry per-input costs.
    names : sequence of str, optional
        Stage names for results and tables (default: the predictors' names).

    Examples
    --------
    >>> import numpy as np
    >>> cheap = CallablePredictor(lambda xs: np.array([[x, 1 - x] for x in xs]), classes=["a", "b"])
    >>> mid = CallablePredictor(lambda xs: np.tile([0.6, 0.4], (len(xs), 1)), classes=["a", "b"])
    >>> big = CallablePredictor(lambda xs: np.tile([0.0, 1.0], (len(xs), 1)), classes=["a", "b"])
    >>> r = Cascade([cheap, mid, big], thresholds=[0.9, 0.55]).route([0.95, 0.5, 0.3])
    >>> r.stage.tolist(), r.labels.tolist()
    ([0, 1, 1], ['a', 'a', 'a'])
    >>> Cascade([cheap, mid, big], thresholds=[0.9, 0.7]).route([0.95, 0.5]).stage.tolist()
    [0, 2]
    """

    def __init__(
        self,
        stages: Sequence[Predictor | Fallback | Callable[..., Any]],
        thresholds: Sequence[ThresholdSpec] | Any,
        *,
        score: Any = "max_prob",
        calibrators: Sequence[Any] | None = None,
        cost_model: CostModel | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        if len(stages) < 1:
            raise ValueError("a cascade needs at least one stage")
        self.stages = [_as_fallback(s) for s in stages]
        scores = list(score) if isinstance(score, (list, tuple)) else [score] * len(self.stages)
        if len(scores) != len(self.stages):
            raise ValueError(f"give one score per stage ({len(self.stages)}), got {len(scores)}")
        self.score = scores
        self._score_fns = [resolve_score(s) for s in scores]
        self.thresholds = thresholds  # validated by the property setter
        calibrators = list(calibrators) if calibrators is not None else [None] * len(self.stages)
        if len(calibrators) != len(self.stages):
            raise ValueError(f"give one calibrator (or None) per stage ({len(self.stages)}), got {len(calibrators)}")
        self.calibrators = calibrators
        if cost_model is not None and cost_model.n_stages != len(self.stages):
            raise ValueError(f"cost model has {cost_model.n_stages} stages but the router has {len(self.stages)}")
        if getattr(cost_model, "input_prices", None) is not None:
            raise ValueError(
                "a router prices each input as it routes it: give one price per stage "
                "(CostModel.per_sample or .hourly) or, for a stage whose price depends on the input, its "
                "TokenPrice (CostModel([0.00001, TokenPrice(0.15, 0.60)])), not prices of the inputs of an evaluation"
            )
        for s in () if cost_model is None else cost_model.token_stages:
            if not callable(getattr(self.stages[s].predictor, "usage", None)):
                raise ValueError(
                    f"stage {s} is priced by tokens (TokenPrice) but its predictor "
                    f"{type(self.stages[s].predictor).__name__} records no token usage (a usage(inputs) method)"
                )
        self.cost_model = cost_model
        names = list(names) if names is not None else _default_names(self.stages)
        if len(names) != len(self.stages) or len(set(names)) != len(names):
            raise ValueError(f"give {len(self.stages)} distinct stage names, got {names}")
        self.names = tuple(names)

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    @property
    def thresholds(self) -> list[float | np.ndarray | dict[Any, float]]:
        """One threshold per stage but the last (a copy; assign a new list to change them).

        Assigning validates like the constructor: ``router.thresholds = [0.7]``, or a threshold
        choice (from :func:`~confroute.choose_thresholds`; read through
        :func:`confroute.core.choice.stage_thresholds`, so an evaluation table raises ``TypeError``).
        """
        return list(self._thresholds)

    @thresholds.setter
    def thresholds(self, value: Sequence[ThresholdSpec] | Any) -> None:
        value = stage_thresholds(value, "thresholds")  # a choice gives its thresholds; a table is refused
        if isinstance(value, (str, bytes)) or np.ndim(cast(Any, value)) == 0 and not isinstance(value, Mapping):
            raise TypeError(
                f"thresholds must be a sequence with one threshold per stage but the last, got {value!r}"
            )
        if isinstance(value, Mapping):
            raise TypeError("thresholds must be a sequence (one per stage but the last), not a mapping")
        values = list(value)
        if len(values) != len(self.stages) - 1:
            raise ValueError(
                f"{len(self.stages)} stages need {len(self.stages) - 1} threshold(s), got {len(values)}"
            )
        self._thresholds = [
            check_threshold(t, score_range(self.score[i]), f"threshold of stage {i}") for i, t in enumerate(values)
        ]

    def with_thresholds(self, thresholds: Sequence[ThresholdSpec] | Any) -> Cascade:
        """A copy of this router with other thresholds (a list, or a threshold choice)."""
        import copy

        other = copy.copy(self)
        other.thresholds = thresholds
        return other

    def __repr__(self) -> str:
        thr = ", ".join(_fmt_threshold(t) for t in self.thresholds)
        return f"{type(self).__name__}(stages={list(self.names)}, thresholds=[{thr}])"

    def _repr_html_(self) -> str:
        """The stages as a table in Jupyter: name, model, score, threshold, calibrator, price."""
        return _html.router_html(self)

    # -- routing -----------------------------------------------------------------------------------

    def route(self, inputs: Sequence[Any]) -> RoutingResult:
        """Route a batch; one result per input, in input order.

        Returns
        -------
        RoutingResult
        """
        plan = self._plan(as_batch(inputs))
        try:
            stage, batch = next(plan)
            while True:
                stage, batch = plan.send(self.stages[stage].call(batch))
        except StopIteration as done:
            return done.value

    async def aroute(self, inputs: Sequence[Any]) -> RoutingResult:
        """Async :meth:`route`; sync predictors run in worker threads, async ones are awaited."""
        plan = self._plan(as_batch(inputs))
        try:
            stage, batch = next(plan)
            while True:
                stage, batch = plan.send(await self.stages[stage].acall(batch))
        except StopIteration as done:
            return done.value

    def route_stream(self, inputs: Iterable[Any], chunk_size: int = 1024) -> Iterator[RoutingResult]:
        """Route an iterable of any length in chunks, yielding one result per chunk, in order.

        Memory is bounded by ``chunk_size``; join the chunks with
        :meth:`RoutingResult.concat` when they fit in memory.
        """
        chunk_size = check_int(chunk_size, "chunk_size", 1)
        refuse_single_string(inputs)
        iterator = iter(inputs)
        while chunk := list(islice(iterator, chunk_size)):
            yield self.route(chunk)

    async def aroute_stream(
        self, inputs: Iterable[Any] | AsyncIterator[Any], chunk_size: int = 1024
    ) -> AsyncIterator[RoutingResult]:
        """Async :meth:`route_stream`; accepts a sync or an async iterable."""
        chunk_size = check_int(chunk_size, "chunk_size", 1)
        refuse_single_string(inputs)
        chunk: list[Any] = []
        if hasattr(inputs, "__aiter__"):
            async for item in inputs:  # type: ignore[union-attr]
                chunk.append(item)
                if len(chunk) == chunk_size:
                    yield await self.aroute(chunk)
                    chunk = []
        else:
            for item in inputs:  # type: ignore[union-attr]
                chunk.append(item)
                if len(chunk) == chunk_size:
                    yield await self.aroute(chunk)
                    chunk = []
        if chunk:
            yield await self.aroute(chunk)

    def _plan(self, inputs: Sequence[Any]) -> Generator[_StageRequest, StageOutcome, RoutingResult]:
        """The routing core, shared by every driver: the one stage loop over all rows."""
        n = n_rows(inputs)
        state = RowState.initial(self.n_stages, n)
        classes = self.stages[0].classes
        n_classes: int | None = len(classes) if classes else None
        pending = np.arange(n)
        for s in range(self.n_stages):
            if pending.size == 0:
                break
            batch = take_rows(inputs, pending)
            outcome = yield s, batch
            stage_decision = self.decide(s, batch, outcome, classes, n_classes)
            classes, n_classes = stage_decision.classes, stage_decision.n_classes
            defer = step(state, pending, s, stage_decision, self.stages[s].on_error, self.cost_model, self.names[s],
                         usage=self.stage_usage(s, batch))
            pending = pending[defer]
        return result_from_state(state, self.names, classes, n_classes, self.cost_model is not None)

    def stage_usage(self, s: int, inputs: Sequence[Any], *, always: bool = False) -> dict[str, np.ndarray] | None:
        """Token usage stage ``s``'s predictor measured on ``inputs`` (``predictor.usage(inputs)``),
        when the cost model prices that stage by tokens (``always``: whenever it records usage);
        ``None`` otherwise."""
        priced = self.cost_model is not None and s in self.cost_model.token_stages
        usage = getattr(self.stages[s].predictor, "usage", None)
        if not (priced or always) or not callable(usage):
            return None
        return dict(usage(list(inputs)))

    def decide(
        self,
        s: int,
        batch: Sequence[Any],
        outcome: StageOutcome,
        classes: Classes | None,
        n_classes: int | None,
    ) -> StageDecision:
        """Stage ``s``'s decision on ``batch`` from what it returned: align the columns to the
        cascade's classes, calibrate, score, compare with the threshold through
        :func:`confroute.core.decision.accepts` (the last stage accepts everything it answered).
        Shared by every driver, the stage-wise (Ray) ones included."""
        m, name = n_rows(batch), self.names[s]
        if outcome.ok.shape != (m,):
            raise PredictionError(f"stage {name!r} returned {outcome.ok.size} results for {m} inputs")
        label_index = np.full(m, -1, dtype=np.int64)
        scores = np.full(m, np.nan)
        accept = np.zeros(m, dtype=bool)
        errors = np.full(m, None, dtype=object)
        failed = ~outcome.ok
        if failed.any():
            errors[failed] = np.asarray(outcome.errors, dtype=object)[failed]
        ok = np.flatnonzero(outcome.ok)
        if ok.size:
            assert outcome.predictions is not None
            try:
                preds, classes = align(outcome.predictions, classes, n_classes, name)
            except ClassMismatchError as exc:  # the stage's answer is unusable: a stage failure
                if self.stages[s].on_error == "raise":
                    raise
                errors[ok] = f"{type(exc).__name__}: {exc}"
                return StageDecision(np.zeros(m, dtype=bool), label_index, scores, accept, errors, classes, n_classes)
            n_classes = preds.n_classes
            preds = self.calibrated(s, preds)
            label_index[ok] = predicted = preds.label_index
            scores[ok] = stage_scores = checked_scores(
                self._score_fns[s](preds, take_rows(batch, ok)), ok.size, name
            )
            if s == self.n_stages - 1:
                accept[ok] = True
            else:
                threshold = resolve_threshold(self._thresholds[s], classes, n_classes, f"stage {name!r}")
                accept[ok] = decision.accepts(stage_scores, predicted, threshold)
        return StageDecision(outcome.ok.copy(), label_index, scores, accept, errors, classes, n_classes)

    # -- pieces shared with evaluation ---------------------------------------------------------

    def calibrated(self, s: int, preds: Predictions) -> Predictions:
        """Stage ``s``'s predictions through its calibrator (unchanged without one)."""
        calibrator = self.calibrators[s]
        if calibrator is None:
            return preds
        probs = calibrator.transform(preds.log_scores())
        return Predictions.from_probs(probs, preds.classes, source=f"calibrator of stage {self.names[s]!r}")


    def stage_predictions(self, inputs: Sequence[Any], calibrated: bool = True) -> list[Predictions]:
        """Run every stage once on *all* inputs (classes aligned); for evaluation.

        With ``calibrated=False`` the raw predictions come back (to measure calibration error
        before and after). Failures raise: evaluation needs every stage's answer on every input.
        """
        inputs = as_batch(inputs)
        out: list[Predictions] = []
        classes = self.stages[0].classes
        n_classes: int | None = len(classes) if classes else None
        for s, stage in enumerate(self.stages):
            preds, classes = align(stage.predictor.predict(inputs), classes, n_classes, self.names[s])
            n_classes = preds.n_classes
            out.append(self.calibrated(s, preds) if calibrated else preds)
        return out

    def stage_score(self, s: int, predictions: Predictions, inputs: Sequence[Any]) -> np.ndarray:
        """Stage ``s``'s confidence score on (already calibrated) ``predictions``."""
        return checked_scores(self._score_fns[s](predictions, inputs), len(predictions), self.names[s])


class ThresholdRouter(Cascade):
    """The two-stage router: accept the primary's answer when confident, else ask the fallback.

    Parameters
    ----------
    primary : Predictor or callable
        The cheap model; sees every input once.
    fallback : Fallback, Predictor or callable
        The expensive model; sees only the deferred inputs, in one batched call.
    threshold : float, array or mapping, default 0.8
        Accept when ``score >= threshold``.
    score : str or callable, default "max_prob"
        The primary's confidence score.
    calibrator : fitted calibrator, optional
        Applied to the primary's logits (or log-probabilities) before scoring.
    cost_model : CostModel, optional
    names : (str, str), optional
        Stage names for results and tables. Default: each predictor's ``name`` (as
        ``SklearnPredictor(model, name="cheap")`` sets it); a stage without a name of its own (a
        lambda, or both stages with the same name) is called ``"primary"`` or ``"fallback"``.

    Examples
    --------
    >>> import numpy as np
    >>> primary = CallablePredictor(lambda xs: np.array([[1 - x, x] for x in xs]), classes=["neg", "pos"])
    >>> fallback = CallablePredictor(lambda xs: np.tile([0.1, 0.9], (len(xs), 1)), classes=["neg", "pos"])
    >>> router = ThresholdRouter(primary, fallback, threshold=0.8,
    ...                          cost_model=CostModel.per_sample([0.001, 0.005]))
    >>> result = router.route([0.95, 0.6, 0.1])
    >>> result.stage.tolist(), result.labels.tolist()
    ([0, 1, 0], ['pos', 'pos', 'neg'])
    >>> round(result.total_cost, 6)  # 3 x 0.001 + 1 x 0.005
    0.008
    """

    def __init__(
        self,
        primary: Predictor | Callable[..., Any],
        fallback: Fallback | Predictor | Callable[..., Any],
        threshold: ThresholdSpec | Any = 0.8,
        *,
        score: Any = "max_prob",
        calibrator: Any = None,
        cost_model: CostModel | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        if names is None:
            names = _two_stage_names(primary, fallback)
        super().__init__(
            [primary, fallback],
            _one_threshold(threshold),
            score=[score, "max_prob"],
            calibrators=[calibrator, None],
            cost_model=cost_model,
            names=names,
        )
        self.primary = self.stages[0].predictor
        self.fallback = self.stages[1]
        self.calibrator = calibrator

    @property
    def threshold(self) -> float | np.ndarray | dict[Any, float]:
        """The primary's threshold; assigning validates it and changes routing."""
        return self._thresholds[0]

    @threshold.setter
    def threshold(self, value: ThresholdSpec) -> None:
        self.thresholds = [value]


# -- helpers ---------------------------------------------------------------------------------------


def _as_fallback(stage: Any) -> Fallback:
    if isinstance(stage, Fallback):
        return stage
    if isinstance(stage, Predictor):
        return Fallback(stage)
    if callable(stage):
        return Fallback(CallablePredictor(stage))
    raise TypeError(f"a stage must be a Predictor, a Fallback or a callable, got {type(stage).__name__}")


def _one_threshold(threshold: Any) -> list[Any]:
    """The primary's threshold as a one-element list; a choice gives its thresholds."""
    value = stage_thresholds(threshold, "threshold")
    return list(value) if value is not threshold else [threshold]


def _default_names(stages: list[Fallback]) -> list[str]:
    names = [s.name for s in stages]
    if len(set(names)) == len(names):
        return names
    return [f"stage{i}" for i in range(len(stages))]


#: Names a predictor gets when it is not given one: a stage named so is called "primary" or
#: "fallback" by a ThresholdRouter.
_UNNAMED = frozenset({"", "<lambda>", "predictor", "callable"})


def _two_stage_names(primary: Any, fallback: Any) -> list[str]:
    """The predictors' own names, "primary"/"fallback" for a stage without one (or both if the
    two names are the same)."""
    names = [str(getattr(stage, "name", None) or getattr(stage, "__name__", None) or "") for stage in (primary, fallback)]
    out = [own if own not in _UNNAMED else default for own, default in zip(names, ("primary", "fallback"))]
    return out if out[0] != out[1] else ["primary", "fallback"]


def _fmt_threshold(t: float | np.ndarray | dict[Any, float]) -> str:
    if isinstance(t, float):
        return f"{t:g}"
    if isinstance(t, dict):
        return "{" + ", ".join(f"{k}: {v:g}" for k, v in t.items()) + "}"
    return "[" + ", ".join(f"{v:g}" for v in t) + "]"
