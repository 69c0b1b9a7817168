"""Routers: the N-stage :class:`Cascade` and its two-stage case, :class:`ThresholdRouter`.

Every stage is called once per batch, on exactly the inputs that reached it: the first stage
sees every input, stage ``s + 1`` sees only what stage ``s`` deferred. An input is *accepted* by
a stage when ``score >= threshold``; the last stage answers everything that reaches it.

The routing logic lives in one generator, :meth:`Cascade._plan`, that yields "run stage ``s`` on
these inputs" and receives the stage's outcome. :meth:`Cascade.route` and
:meth:`Cascade.aroute` are thin drivers around it, so the sync and async paths cannot drift.

Thread safety: a router keeps no per-call state. ``route`` may be called from many threads at
once provided the wrapped predictors allow it (scikit-learn, ONNX Runtime and PyTorch inference
do; a predictor that mutates itself per call does not). A shared :class:`CircuitBreaker` is
lock-protected.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np

from ..core.types import PredictionError, Predictions, RoutingResult
from ..core.cost import CostModel
from .fallback import Fallback, StageOutcome
from ..predictors.base import Predictor, as_sequence, refuse_single_string
from ..predictors.callable import CallablePredictor
from ..core.scores import checked_scores, resolve_score, score_range

__all__ = ["Cascade", "ThresholdRouter"]

ThresholdSpec = float | Sequence[float] | np.ndarray | Mapping[str, float]


@dataclass(frozen=True)
class StageDecision:
    """What one stage decided for a batch of ``m`` inputs.

    ``ok``: the stage answered the input (False where it failed under a non-raising policy);
    ``labels`` / ``scores``: its own answer and (calibrated) score, ``-1`` / NaN where it failed;
    ``accept``: answered and confident enough (every answered input on the last stage);
    ``errors``: message per failed input; ``classes`` / ``n_classes``: the cascade's classes so far.
    """

    ok: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    accept: np.ndarray
    errors: np.ndarray
    classes: tuple[str, ...] | None
    n_classes: int | None

    @property
    def defer(self) -> np.ndarray:
        """Inputs that go on to the next stage."""
        return self.ok & ~self.accept
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
    >>> r.stage.tolist(), r.label_names.tolist()
    ([0, 1, 1], ['a', 'a', 'a'])
    >>> Cascade([cheap, mid, big], thresholds=[0.9, 0.7]).route([0.95, 0.5]).stage.tolist()
    [0, 2]
    """

    def __init__(
        self,
        stages: Sequence[Predictor | Fallback | Callable[..., Any]],
        thresholds: Sequence[ThresholdSpec],
        *,
        score: Any = "max_prob",
        calibrators: Sequence[Any] | None = None,
        cost_model: CostModel | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        if len(stages) < 1:
            raise ValueError("a cascade needs at least one stage")
        self.stages = [_as_fallback(s) for s in stages]
        thresholds = list(thresholds)
        if len(thresholds) != len(self.stages) - 1:
            raise ValueError(
                f"{len(self.stages)} stages need {len(self.stages) - 1} threshold(s), got {len(thresholds)}"
            )
        scores = list(score) if isinstance(score, (list, tuple)) else [score] * len(self.stages)
        if len(scores) != len(self.stages):
            raise ValueError(f"give one score per stage ({len(self.stages)}), got {len(scores)}")
        self.score = scores
        self._score_fns = [resolve_score(s) for s in scores]
        self.thresholds = [_check_threshold(t, scores[i], i) for i, t in enumerate(thresholds)]
        calibrators = list(calibrators) if calibrators is not None else [None] * len(self.stages)
        if len(calibrators) != len(self.stages):
            raise ValueError(f"give one calibrator (or None) per stage ({len(self.stages)}), got {len(calibrators)}")
        self.calibrators = calibrators
        if cost_model is not None:
            cost_model._check_stages(len(self.stages))
        self.cost_model = cost_model
        names = list(names) if names is not None else _default_names(self.stages)
        if len(names) != len(self.stages) or len(set(names)) != len(names):
            raise ValueError(f"give {len(self.stages)} distinct stage names, got {names}")
        self.names = tuple(names)

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    def __repr__(self) -> str:
        thr = ", ".join(_fmt_threshold(t) for t in self.thresholds)
        return f"{type(self).__name__}(stages={list(self.names)}, thresholds=[{thr}])"

    # -- routing -----------------------------------------------------------------------------------

    def route(self, inputs: Sequence[Any]) -> RoutingResult:
        """Route a batch; one result per input, in input order.

        Returns
        -------
        RoutingResult
        """
        plan = self._plan(as_sequence(inputs))
        try:
            stage, batch = next(plan)
            while True:
                stage, batch = plan.send(self.stages[stage].call(batch))
        except StopIteration as done:
            return done.value

    async def aroute(self, inputs: Sequence[Any]) -> RoutingResult:
        """Async :meth:`route`; sync predictors run in worker threads, async ones are awaited."""
        plan = self._plan(as_sequence(inputs))
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
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        refuse_single_string(inputs)
        iterator = iter(inputs)
        while chunk := list(islice(iterator, chunk_size)):
            yield self.route(chunk)

    async def aroute_stream(
        self, inputs: Iterable[Any] | AsyncIterator[Any], chunk_size: int = 1024
    ) -> AsyncIterator[RoutingResult]:
        """Async :meth:`route_stream`; accepts a sync or an async iterable."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
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
        """The routing core, shared by every driver."""
        n, n_stages = len(inputs), self.n_stages
        labels = np.full(n, -1, dtype=np.int64)
        confidence = np.full(n, np.nan)
        answered_by = np.full(n, -1, dtype=np.int64)
        stage_labels = np.full((n_stages, n), -1, dtype=np.int64)
        stage_scores = np.full((n_stages, n), np.nan)
        reached = np.zeros((n_stages, n), dtype=bool)
        degraded = np.zeros(n, dtype=bool)
        errors = np.full(n, None, dtype=object)
        classes = self.stages[0].classes
        n_classes: int | None = len(classes) if classes else None

        pending = np.arange(n)
        for s in range(n_stages):
            if pending.size == 0:
                break
            reached[s, pending] = True
            batch = _take(inputs, pending)
            outcome = yield s, batch
            decision = self._decide(s, batch, outcome, classes, n_classes)
            classes, n_classes = decision.classes, decision.n_classes
            failed = pending[~decision.ok]
            if failed.size:
                degraded[failed] = True
                errors[failed] = decision.errors[~decision.ok]
                if self.stages[s].on_error == "keep_primary" and s > 0:
                    # The previous stage answered these inputs (it only deferred them).
                    labels[failed] = stage_labels[s - 1, failed]
                    confidence[failed] = stage_scores[s - 1, failed]
                    answered_by[failed] = s - 1
            ok = pending[decision.ok]
            stage_labels[s, ok] = decision.labels[decision.ok]
            stage_scores[s, ok] = decision.scores[decision.ok]
            done = pending[decision.accept]
            labels[done] = decision.labels[decision.accept]
            confidence[done] = decision.scores[decision.accept]
            answered_by[done] = s
            pending = pending[decision.defer]

        cost = None if self.cost_model is None else self.cost_model.per_input(reached)
        return RoutingResult(
            labels=labels,
            classes=classes,
            confidence=confidence,
            stage=answered_by,
            stage_names=self.names,
            stage_labels=stage_labels,
            stage_scores=stage_scores,
            reached=reached,
            degraded=degraded,
            errors=errors,
            cost=cost,
        )

    def _decide(
        self,
        s: int,
        batch: Sequence[Any],
        outcome: StageOutcome,
        classes: tuple[str, ...] | None,
        n_classes: int | None,
    ) -> StageDecision:
        """Stage ``s``'s decision on ``batch`` from what it returned: align the columns to the
        cascade's classes, calibrate, score, compare with the threshold (the last stage accepts
        everything it answered). Shared by every driver, the stage-wise (Ray) one included."""
        m, name = len(batch), self.names[s]
        if outcome.ok.shape != (m,):
            raise PredictionError(f"stage {name!r} returned {outcome.ok.size} results for {m} inputs")
        labels = np.full(m, -1, dtype=np.int64)
        scores = np.full(m, np.nan)
        accept = np.zeros(m, dtype=bool)
        errors = np.full(m, None, dtype=object)
        failed = ~outcome.ok
        if failed.any():
            errors[failed] = np.asarray(outcome.errors, dtype=object)[failed]
        ok = np.flatnonzero(outcome.ok)
        if ok.size:
            assert outcome.predictions is not None
            preds, classes = _align(outcome.predictions, classes, n_classes, name)
            n_classes = preds.n_classes
            preds = self._calibrated(s, preds)
            labels[ok] = predicted = preds.labels
            scores[ok] = stage_scores = checked_scores(self._score_fns[s](preds, _take(batch, ok)), ok.size, name)
            if s == self.n_stages - 1:
                accept[ok] = True
            else:
                accept[ok] = stage_scores >= self._threshold_for(s, predicted, classes, n_classes)
        return StageDecision(outcome.ok.copy(), labels, scores, accept, errors, classes, n_classes)

    # -- pieces shared with evaluation ---------------------------------------------------------

    def _calibrated(self, s: int, preds: Predictions) -> Predictions:
        calibrator = self.calibrators[s]
        if calibrator is None:
            return preds
        probs = calibrator.transform(preds.log_scores())
        return Predictions.from_probs(probs, preds.classes, source=f"calibrator of stage {self.names[s]!r}")

    def _threshold_for(
        self, s: int, predicted: np.ndarray, classes: tuple[str, ...] | None, n_classes: int
    ) -> np.ndarray | float:
        t = self.thresholds[s]
        if isinstance(t, float):
            return t
        if isinstance(t, dict):
            if classes is None:
                raise ValueError(f"stage {self.names[s]!r}: thresholds by class name need named classes")
            unknown = sorted(set(t) - set(classes))
            if unknown:
                raise ValueError(f"stage {self.names[s]!r}: thresholds name unknown classes {unknown}; classes are {list(classes)}")
            missing = sorted(set(classes) - set(t))
            if missing:
                raise ValueError(f"stage {self.names[s]!r}: no threshold for classes {missing}")
            t = np.array([t[c] for c in classes])
        if t.shape != (n_classes,):
            raise ValueError(f"stage {self.names[s]!r}: {t.size} per-class thresholds for {n_classes} classes")
        return t[predicted]

    def stage_predictions(self, inputs: Sequence[Any], calibrated: bool = True) -> list[Predictions]:
        """Run every stage once on *all* inputs (classes aligned); for evaluation.

        With ``calibrated=False`` the raw predictions come back (to measure calibration error
        before and after). Failures raise: evaluation needs every stage's answer on every input.
        """
        inputs = as_sequence(inputs)
        out: list[Predictions] = []
        classes = self.stages[0].classes
        n_classes: int | None = len(classes) if classes else None
        for s, stage in enumerate(self.stages):
            preds, classes = _align(stage.predictor.predict(inputs), classes, n_classes, self.names[s])
            n_classes = preds.n_classes
            out.append(self._calibrated(s, preds) if calibrated else preds)
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
    names : (str, str), default ("primary", "fallback")

    Examples
    --------
    >>> import numpy as np
    >>> primary = CallablePredictor(lambda xs: np.array([[1 - x, x] for x in xs]), classes=["neg", "pos"])
    >>> fallback = CallablePredictor(lambda xs: np.tile([0.1, 0.9], (len(xs), 1)), classes=["neg", "pos"])
    >>> router = ThresholdRouter(primary, fallback, threshold=0.8,
    ...                          cost_model=CostModel.per_sample([0.001, 0.005]))
    >>> result = router.route([0.95, 0.6, 0.1])
    >>> result.stage.tolist(), result.label_names.tolist()
    ([0, 1, 0], ['pos', 'pos', 'neg'])
    >>> round(result.total_cost, 6)  # 3 x 0.001 + 1 x 0.005
    0.008
    """

    def __init__(
        self,
        primary: Predictor | Callable[..., Any],
        fallback: Fallback | Predictor | Callable[..., Any],
        threshold: ThresholdSpec = 0.8,
        *,
        score: Any = "max_prob",
        calibrator: Any = None,
        cost_model: CostModel | None = None,
        names: Sequence[str] = ("primary", "fallback"),
    ) -> None:
        super().__init__(
            [primary, fallback],
            [threshold],
            score=[score, "max_prob"],
            calibrators=[calibrator, None],
            cost_model=cost_model,
            names=names,
        )
        self.primary = self.stages[0].predictor
        self.fallback = self.stages[1]
        self.threshold = self.thresholds[0]
        self.calibrator = calibrator


# -- helpers ---------------------------------------------------------------------------------------


def _as_fallback(stage: Any) -> Fallback:
    if isinstance(stage, Fallback):
        return stage
    if isinstance(stage, Predictor):
        return Fallback(stage)
    if callable(stage):
        return Fallback(CallablePredictor(stage))
    raise TypeError(f"a stage must be a Predictor, a Fallback or a callable, got {type(stage).__name__}")


def _default_names(stages: list[Fallback]) -> list[str]:
    names = [s.name for s in stages]
    if len(set(names)) == len(names):
        return names
    return [f"stage{i}" for i in range(len(stages))]


def _take(inputs: Sequence[Any], index: np.ndarray) -> Sequence[Any]:
    if isinstance(inputs, np.ndarray):
        return inputs[index]
    return [inputs[i] for i in index]


def _check_threshold(t: Any, score: Any, s: int) -> float | np.ndarray | dict[str, float]:
    lo, hi = score_range(score) or (-math.inf, math.inf)

    def check(v: Any, what: str) -> float:
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"threshold {what}of stage {s} must be a number, got {v!r}") from None
        # +inf is always allowed: "this stage accepts nothing" (a threshold search may choose it).
        if math.isnan(v) or not (lo <= v <= hi or v == math.inf):
            raise ValueError(
                f"threshold {what}of stage {s} must lie in the score's range [{lo}, {hi}] (or be inf), got {v}"
            )
        return v

    if isinstance(t, Mapping):
        return {str(k): check(v, f"for class {k!r} ") for k, v in t.items()}
    if np.ndim(t) == 0:
        return check(t, "")
    arr = np.asarray(t, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"per-class thresholds of stage {s} must be 1-D, got shape {arr.shape}")
    for c, v in enumerate(arr):
        check(v, f"for class {c} ")
    return arr


def _fmt_threshold(t: float | np.ndarray | dict[str, float]) -> str:
    if isinstance(t, float):
        return f"{t:g}"
    if isinstance(t, dict):
        return "{" + ", ".join(f"{k}: {v:g}" for k, v in t.items()) + "}"
    return "[" + ", ".join(f"{v:g}" for v in t) + "]"


def _align(
    preds: Predictions, classes: tuple[str, ...] | None, n_classes: int | None, stage: str
) -> tuple[Predictions, tuple[str, ...] | None]:
    """Put a stage's columns in the cascade's class order (by name when both sides name them)."""
    if classes is not None and preds.classes is not None:
        if preds.classes == classes:
            return preds, classes
        if set(preds.classes) != set(classes):
            raise PredictionError(
                f"stage {stage!r} predicts classes {list(preds.classes)} but the cascade's classes are "
                f"{list(classes)}; they cannot be matched by name"
            )
        order = np.array([preds.classes.index(c) for c in classes])
        logits = None if preds.logits is None else preds.logits[:, order]
        return Predictions(preds.probs[:, order], logits, classes), classes
    if n_classes is not None and preds.n_classes != n_classes:
        raise PredictionError(
            f"stage {stage!r} returns {preds.n_classes} classes but earlier stages return {n_classes}"
        )
    return preds, classes if classes is not None else preds.classes
