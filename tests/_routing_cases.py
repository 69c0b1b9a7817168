"""Routers on numeric features shared by the stage-wise and the Ray tests.

Every router here is deterministic per row (failures included: failing batches are split down
to single rows), so routing stage by stage in any batching must give exactly what
``router.route`` gives.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression

from confroute import Cascade, CallablePredictor, CostModel, Fallback, SklearnPredictor, ThresholdRouter

CLASSES = ("neg", "pos")


def features(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of 3 numeric features and binary labels (names)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = np.where(X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.8, size=n) > 0, "pos", "neg")
    return X, y


def _fitted(seed: int, noise: float) -> LogisticRegression:
    X, y = features(400, seed)
    X = X + np.random.default_rng(seed + 100).normal(scale=noise, size=X.shape)
    return LogisticRegression(C=0.5).fit(X, y)


def big_model(xs: np.ndarray) -> np.ndarray:
    """A 'big' model that fails on any batch holding a row with x2 > 1.2 (about 12% of rows)."""
    xs = np.asarray(xs)
    if (xs[:, 2] > 1.2).any():
        raise RuntimeError("upstream 503")
    p = 1.0 / (1.0 + np.exp(-2.0 * (xs[:, 0] + 0.5 * xs[:, 1])))
    return np.column_stack([1 - p, p])


def reversed_model(xs: np.ndarray) -> np.ndarray:
    """A mid-size model whose columns are in the order (pos, neg): aligned by name."""
    xs = np.asarray(xs)
    p = 1.0 / (1.0 + np.exp(-(xs[:, 0] + 0.3 * xs[:, 1])))
    return np.column_stack([p, 1 - p])


def two_stage(on_error: str = "keep_previous", cost: bool = True) -> ThresholdRouter:
    fallback = Fallback(
        CallablePredictor(big_model, classes=CLASSES, name="big"),
        on_error=on_error,  # type: ignore[arg-type]
        split_on_failure=True,
    )
    return ThresholdRouter(
        SklearnPredictor(_fitted(1, 0.5), name="small"),
        fallback,
        threshold=0.8,
        cost_model=CostModel.per_sample([0.001, 0.005]) if cost else None,
        names=("primary", "fallback"),  # the default would be the predictors' names, small and big
    )


def three_stage() -> Cascade:
    mid = CallablePredictor(reversed_model, classes=("pos", "neg"), name="mid")
    big = Fallback(CallablePredictor(big_model, classes=CLASSES, name="big"), on_error="abstain",
                   split_on_failure=True)
    return Cascade(
        [SklearnPredictor(_fitted(2, 1.0), name="small"), mid, big],
        thresholds=[{"neg": 0.85, "pos": 0.75}, 0.7],
        score=["max_prob", "margin", "max_prob"],
        cost_model=CostModel.per_sample([0.001, 0.002, 0.01]),
    )


ROUTERS: dict[str, Callable[[], Cascade]] = {
    "two_stage_keep_previous": lambda: two_stage("keep_previous"),
    "two_stage_abstain": lambda: two_stage("abstain"),
    "two_stage_no_cost": lambda: two_stage("keep_previous", cost=False),
    "three_stage": three_stage,
}


# -- one rule, one cost model -------------------------------------------------------------------------

#: Inputs of :func:`tie_router`: 0.8 and 0.2 give its primary a max probability of exactly 0.8,
#: its threshold (a tie); under the default rule (``>=``) they are accepted, under ``>`` deferred.
TIE_XS = [0.95, 0.8, 0.5, 0.2, 0.05, 0.8]


def strict_accepts(scores, predicted_index, threshold):
    """``score > threshold``: the other tie-breaking rule."""
    s = np.asarray(scores, dtype=np.float64)
    if isinstance(threshold, np.ndarray) and threshold.ndim == 1:
        return s > threshold[np.asarray(predicted_index, dtype=np.int64)]
    return s > float(threshold)


def fake_per_input(self, reached):
    """A cost no path computes by itself: 100 per stage reached, plus 7."""
    return 100.0 * np.asarray(reached, dtype=bool).sum(axis=0) + 7.0


def tie_router(names=("primary", "fallback")) -> ThresholdRouter:
    """Two stages, threshold 0.8, prices 1 and 10; see :data:`TIE_XS`."""
    return ThresholdRouter(
        CallablePredictor(lambda v: np.array([[1 - float(x), float(x)] for x in v]), classes=["neg", "pos"],
                          name=names[0]),
        CallablePredictor(lambda v: np.tile([0.3, 0.7], (len(v), 1)), classes=["neg", "pos"], name=names[1]),
        threshold=0.8,
        cost_model=CostModel.per_sample([1.0, 10.0]),
        names=names,
    )


def patched_tie_router() -> ThresholdRouter:
    """:func:`tie_router`, after patching the accept rule (``>``) and ``CostModel.per_input`` in
    *this process*: a router factory for Ray workers and Serve replicas, where a monkeypatch in
    the test process cannot reach."""
    from confroute.core import decision

    decision.accepts = strict_accepts
    CostModel.per_input = fake_per_input  # type: ignore[method-assign]
    return tie_router(("small", "big"))
