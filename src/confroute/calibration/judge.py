"""A learned correctness judge: predict whether the cheap model is right, and route on that.

Max-probability routing trusts the model's own confidence. A model can be confidently wrong in
ways its softmax does not show (long inputs, a rare topic, one class it confuses), and for a
binary classifier no recalibration can change the *order* of its confidences. A small
classifier trained on labelled data to predict "is the primary right here?" from richer
features can order inputs better: the idea of learned confidence (Jiang et al. 2018, trust
scores; Corbière et al. 2019, ConfidNet), here with off-the-shelf scikit-learn models.

:class:`CorrectnessJudge` implements the router's ``PredictionScore`` protocol
(``score_predictions(predictions, inputs)``, ``score_range = (0, 1)``), so it routes like any
score: ``ThresholdRouter(primary, fallback, threshold=t, score=judge)``. Thresholds for it are
chosen with :func:`~confroute.choose_thresholds` on the judge's scores, as for max-probability.

Features (:meth:`CorrectnessJudge.features`): the primary's probabilities sorted in decreasing
order (the top 10 at most), max probability, margin, normalised-entropy confidence, the
log-odds of the max probability, the top-1 minus top-2 log-score (logit margin when logits are
known), the predicted class (one-hot), the input length (``log1p`` of characters and of
whitespace tokens for text, 0 otherwise), and any extra columns from ``extra_features(inputs)``
(an embedding, the primary's hidden state, ...).

Two targets:

``"primary_correct"`` (default)
    ``score = P(primary is right | features)``: defer what the primary probably gets wrong.
``"fallback_helps"``
    ``score = 1 - P(primary wrong and fallback right | features)``: defer only where the
    fallback is likely to fix the answer. Inputs both models get wrong are then kept by the
    cheap model, where deferring them would cost money and fix nothing.

Train the judge on data neither model was trained on (a model is nearly always right on its own
training data, so a judge trained there learns little). To train the judge *and* choose its
threshold on one labelled set, use :func:`cross_fit`: each input's score comes from a judge that
did not see it.

References
----------
Geifman & El-Yaniv (2017). Selective classification for deep neural networks. NeurIPS.
Jiang, Kim, Guan & Gupta (2018). To trust or not to trust a classifier. NeurIPS.
Corbière, Thome, Bar-Hen, Cord & Pérez (2019). Addressing failure prediction by learning model
confidence. NeurIPS (ConfidNet).
Chernozhukov et al. (2018). Double/debiased machine learning. Econometrics Journal (cross-fitting).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone

from ..core.classes import label_indices
from ..core.estimators import check_is_fitted
from ..core.types import Predictions
from ..core.scores import margin, max_prob, neg_entropy

__all__ = ["CorrectnessJudge", "CrossFitJudge", "cross_fit", "judge_features"]

_TARGETS = ("primary_correct", "fallback_helps")
_TOP = 10


def _as_predictions(predictions: Any) -> Predictions:
    if isinstance(predictions, Predictions):
        return predictions
    return Predictions.from_probs(np.asarray(predictions, dtype=np.float64), source="judge input")


def _lengths(inputs: Sequence[Any] | None, n: int) -> np.ndarray:
    """``log1p`` of characters and whitespace tokens for text inputs; zeros otherwise."""
    out = np.zeros((n, 2))
    if inputs is None:
        return out
    if len(inputs) != n:
        raise ValueError(f"{len(inputs)} inputs for {n} predictions")
    for i, x in enumerate(inputs):
        if isinstance(x, str):
            out[i, 0] = np.log1p(len(x))
            out[i, 1] = np.log1p(len(x.split()))
    return out


def judge_features(
    predictions: Any,
    inputs: Sequence[Any] | None = None,
    extra_features: Callable[[Sequence[Any]], Any] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """The feature matrix a :class:`CorrectnessJudge` learns from, with column names.

    Examples
    --------
    >>> X, names = judge_features(np.array([[0.7, 0.2, 0.1]]), ["a short input"])
    >>> names[:5], X.shape
    (['prob_1', 'prob_2', 'prob_3', 'max_prob', 'margin'], (1, 13))
    >>> float(dict(zip(names, X[0].round(3)))["log1p_words"])
    1.386
    """
    p = _as_predictions(predictions)
    n, k = p.probs.shape
    probs = p.probs
    top = min(k, _TOP)
    sorted_probs = -np.sort(-probs, axis=1)[:, :top]
    mp = max_prob(probs)
    pm = np.clip(mp, 1e-6, 1 - 1e-6)
    log_scores = -np.sort(-p.log_scores(), axis=1)
    cols = [
        sorted_probs,
        mp[:, None],
        margin(probs)[:, None],
        neg_entropy(probs)[:, None],
        np.log(pm / (1 - pm))[:, None],
        np.clip(log_scores[:, 0] - log_scores[:, 1], 0, 50)[:, None],
        np.eye(k)[p.label_index],
        _lengths(inputs, n),
    ]
    names = [f"prob_{i + 1}" for i in range(top)] + [
        "max_prob", "margin", "neg_entropy", "max_prob_logit", "log_score_margin",
    ] + [f"predicted_{c}" for c in (p.classes or range(k))] + ["log1p_chars", "log1p_words"]
    if extra_features is not None:
        if inputs is None:
            raise ValueError("extra_features needs the inputs")
        extra = np.asarray(extra_features(inputs), dtype=np.float64)
        if extra.ndim == 1:
            extra = extra[:, None]
        if extra.ndim != 2 or extra.shape[0] != n:
            raise ValueError(f"extra_features must return an array of shape ({n}, d), got {extra.shape}")
        if not np.isfinite(extra).all():
            raise ValueError("extra_features returned non-finite values")
        cols.append(extra)
        names += [f"extra_{j}" for j in range(extra.shape[1])]
    return np.hstack(cols), names


class CorrectnessJudge(BaseEstimator):
    """Predict whether the primary is right (or whether deferring helps) from richer features.

    Parameters
    ----------
    model : {"logistic", "hgb"} or scikit-learn classifier, default "logistic"
        ``"logistic"``: standardised features and L2 logistic regression (robust, fast, needs a
        few hundred labelled inputs). ``"hgb"``: ``HistGradientBoostingClassifier`` (learns
        non-linear regions; wants a few thousand). Any classifier with ``predict_proba`` is
        cloned and used as is.
    target : {"primary_correct", "fallback_helps"}, default "primary_correct"
        What to predict (see the module notes). The score is ``P(primary correct)``, or
        ``1 - P(primary wrong and fallback right)``; higher is "keep the primary's answer".
    extra_features : callable, optional
        ``extra_features(inputs) -> (n, d)`` array appended to the features (an embedding, the
        primary's hidden state...). It must be picklable to pickle the judge.
    C : float, default 1.0
        Inverse L2 strength of the logistic model.
    max_iter : int, default 200
        Iterations of the chosen model.
    random_state : int, default 0

    Attributes
    ----------
    estimator_ : fitted scikit-learn classifier
    feature_names_ : list of str
    n_features_in_ : int
    base_rate_ : float
        Share of positive targets in the training data.

    Examples
    --------
    The primary is wrong on long inputs, whatever its confidence:

    >>> rng = np.random.default_rng(0)
    >>> texts = ["word " * int(k) for k in rng.integers(1, 40, 600)]
    >>> conf = rng.uniform(0.6, 1.0, 600)
    >>> preds = Predictions.from_probs(np.c_[conf, 1 - conf])
    >>> correct = np.array([len(t.split()) < 30 for t in texts])
    >>> judge = CorrectnessJudge().fit(preds, texts, correct)
    >>> s = judge.score_predictions(preds, texts)
    >>> bool(s[~correct].max() < s[correct].min())  # it separates them perfectly
    True
    """

    score_range = (0.0, 1.0)

    def __init__(
        self,
        model: str | Any = "logistic",
        *,
        target: str = "primary_correct",
        extra_features: Callable[[Sequence[Any]], Any] | None = None,
        C: float = 1.0,
        max_iter: int = 200,
        random_state: int = 0,
    ) -> None:
        self.model = model
        self.target = target
        self.extra_features = extra_features
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state

    # -- pieces --------------------------------------------------------------------------------
    def features(self, predictions: Any, inputs: Sequence[Any] | None = None) -> np.ndarray:
        """The feature matrix for ``predictions`` (and their ``inputs``)."""
        return judge_features(predictions, inputs, self.extra_features)[0]

    def _make_estimator(self) -> Any:
        if self.model == "logistic":
            from sklearn.linear_model import LogisticRegression
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            logistic = LogisticRegression(C=self.C, max_iter=max(self.max_iter, 100))
            return make_pipeline(StandardScaler(), logistic)
        if self.model == "hgb":
            from sklearn.ensemble import HistGradientBoostingClassifier

            return HistGradientBoostingClassifier(
                max_iter=self.max_iter, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=20,
                l2_regularization=1.0, random_state=self.random_state,
            )
        if isinstance(self.model, str):
            raise ValueError(
                f"model must be 'logistic', 'hgb' or a scikit-learn classifier, got {self.model!r}"
            )
        if not hasattr(self.model, "predict_proba"):
            raise TypeError(f"model {type(self.model).__name__} has no predict_proba")
        return clone(self.model)

    @staticmethod
    def target_labels(
        target: str, correct: Any, fallback_correct: Any = None, n: int | None = None
    ) -> np.ndarray:
        """The 0/1 training target for ``target`` from per-input correctness."""
        c = np.asarray(correct)
        if c.dtype != bool:
            if c.dtype.kind in "USO" or not np.isin(c, (0, 1)).all():
                raise ValueError(
                    "correct must say whether the primary is right on each input (boolean or 0/1); "
                    "to give the true labels instead, pass labels=..."
                )
            c = c.astype(bool)
        if n is not None and c.shape != (n,):
            raise ValueError(f"correct must have shape ({n},), got {c.shape}")
        if target == "primary_correct":
            return c
        if target == "fallback_helps":
            if fallback_correct is None:
                raise ValueError(
                    "target='fallback_helps' needs fallback_correct (whether the fallback is right)"
                )
            f = np.asarray(fallback_correct).astype(bool)
            if f.shape != c.shape:
                raise ValueError(f"fallback_correct must have shape {c.shape}, got {f.shape}")
            return ~c & f
        raise ValueError(f"target must be one of {_TARGETS}, got {target!r}")

    # -- fit / predict -------------------------------------------------------------------------
    def fit(
        self,
        predictions: Any,
        inputs: Sequence[Any] | None,
        correct: Any = None,
        *,
        labels: Any = None,
        fallback_correct: Any = None,
        sample_weight: Any = None,
    ) -> CorrectnessJudge:
        """Learn from labelled data.

        Parameters
        ----------
        predictions : Predictions or array of shape (n, k)
            The primary's predictions, as the router will score them (calibrated when the
            router calibrates).
        inputs : sequence of length n, or None
            The raw inputs (for the length and extra features).
        correct : array of bool, shape (n,), optional
            Whether the primary is right on each input.
        labels : array of shape (n,), optional
            The true labels instead of ``correct`` (in the predictions' label space: their class
            values); ``correct`` is then ``predictions.labels == labels``, matched by value.
        fallback_correct : array of bool, shape (n,), optional
            Whether the fallback is right; required for ``target="fallback_helps"``.
        sample_weight : array of shape (n,), optional

        Returns
        -------
        self
        """
        if (correct is None) == (labels is None):
            raise ValueError("give exactly one of correct= (bool per input) or labels= (the true labels)")
        if labels is not None:
            p = _as_predictions(predictions)
            correct = p.label_index == label_indices(labels, p.classes, p.n_classes, owner="the predictions")
        X, names = judge_features(predictions, inputs, self.extra_features)
        y = self.target_labels(self.target, correct, fallback_correct, X.shape[0]).astype(np.int64)
        if np.unique(y).size < 2:
            what = "the primary is right" if self.target == "primary_correct" else "the fallback helps"
            raise ValueError(
                f"cannot train a judge: {what} on {'every' if y.all() else 'no'} training input; it "
                "needs both outcomes (more data, or data the primary was not trained on)"
            )
        est = self._make_estimator()
        if sample_weight is None:
            est.fit(X, y)
        elif hasattr(est, "steps"):
            est.fit(X, y, **{f"{est.steps[-1][0]}__sample_weight": np.asarray(sample_weight)})
        else:
            est.fit(X, y, sample_weight=np.asarray(sample_weight))
        self.estimator_ = est
        self.feature_names_ = names
        self.n_features_in_ = X.shape[1]
        self.base_rate_ = float(y.mean())
        return self

    def _check_fitted(self) -> None:
        check_is_fitted(self, "estimator_")

    def predict_proba(self, predictions: Any, inputs: Sequence[Any] | None = None) -> np.ndarray:
        """``P(target = 1)`` per input, shape ``(n,)``: P(primary right) or P(fallback helps)."""
        self._check_fitted()
        X = self.features(predictions, inputs)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"the judge was trained on {self.n_features_in_} features but got {X.shape[1]} "
                "(a different number of classes, or extra features)"
            )
        classes = list(self.estimator_.classes_)
        return np.asarray(self.estimator_.predict_proba(X)[:, classes.index(1)], dtype=np.float64)

    def score_predictions(self, predictions: Predictions, inputs: Sequence[Any] | None = None) -> np.ndarray:
        """The routing score in ``[0, 1]``; higher means keep the primary's answer."""
        p = self.predict_proba(predictions, inputs)
        out = p if self.target == "primary_correct" else 1.0 - p
        return np.clip(out, 0.0, 1.0)


# --------------------------------------------------------------------------- cross-fitting
@dataclass(frozen=True, repr=False)
class CrossFitJudge:
    """K judges from :func:`cross_fit`, with every training input's out-of-fold score.

    It is itself a routing score: :meth:`score_predictions` averages the K judges (each trained
    on ``(K-1)/K`` of the data). Choose the threshold on :attr:`oof_scores` (each input scored by
    the judge that did not see it); the average of K judges is a little smoother than any one of
    them, so the chosen threshold is slightly conservative in coverage terms. For a strict
    guarantee keep a separate calibration split instead.

    Attributes
    ----------
    judges : list of CorrectnessJudge
    oof_scores : ndarray of shape (n,)
        Routing score of each training input from the judge of the fold that held it out.
    folds : ndarray of int, shape (n,)
        Fold of each training input.
    """

    judges: list[CorrectnessJudge]
    oof_scores: np.ndarray
    folds: np.ndarray

    score_range = (0.0, 1.0)

    def score_predictions(self, predictions: Predictions, inputs: Sequence[Any] | None = None) -> np.ndarray:
        return np.mean([j.score_predictions(predictions, inputs) for j in self.judges], axis=0)

    def __repr__(self) -> str:
        return f"CrossFitJudge({len(self.judges)} folds, n={self.oof_scores.size})"


def _take(inputs: Sequence[Any] | None, idx: np.ndarray) -> Any:
    if inputs is None:
        return None
    if isinstance(inputs, np.ndarray):
        return inputs[idx]
    return [inputs[i] for i in idx]


def cross_fit(
    judge: CorrectnessJudge,
    predictions: Any,
    inputs: Sequence[Any] | None,
    correct: Any,
    *,
    fallback_correct: Any = None,
    n_splits: int = 5,
    random_state: int = 0,
) -> CrossFitJudge:
    """Train ``n_splits`` copies of ``judge`` on K-1 folds each and score the held-out fold.

    The out-of-fold scores are what the judge would give on data it never saw, so a threshold
    chosen on them (and AURC or coverage measured on them) is not flattered by the judge having
    memorised its training inputs. Folds are stratified on the judge's target.

    Parameters
    ----------
    judge : CorrectnessJudge
        Unfitted template (cloned per fold).
    predictions, inputs, correct, fallback_correct
        As for :meth:`CorrectnessJudge.fit`.
    n_splits : int, default 5
    random_state : int, default 0

    Returns
    -------
    CrossFitJudge

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> conf = rng.uniform(0.5, 1.0, 400)
    >>> correct = rng.random(400) < conf
    >>> cf = cross_fit(CorrectnessJudge(), np.c_[conf, 1 - conf], None, correct, n_splits=4)
    >>> cf.oof_scores.shape, np.bincount(cf.folds).tolist()
    ((400,), [100, 100, 100, 100])
    """
    from sklearn.model_selection import StratifiedKFold

    p = _as_predictions(predictions)
    n = len(p)
    y = CorrectnessJudge.target_labels(judge.target, correct, fallback_correct, n)
    c = np.asarray(correct).astype(bool)
    f = None if fallback_correct is None else np.asarray(fallback_correct).astype(bool)
    if n_splits < 2:
        raise ValueError(f"n_splits must be >= 2, got {n_splits}")
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    oof = np.full(n, np.nan)
    folds = np.full(n, -1, dtype=np.int64)
    judges: list[CorrectnessJudge] = []
    for k, (train, test) in enumerate(splitter.split(np.zeros(n), y)):
        j = clone(judge).fit(p.take(train), _take(inputs, train), c[train],
                             fallback_correct=None if f is None else f[train])
        oof[test] = j.score_predictions(p.take(test), _take(inputs, test))
        folds[test] = k
        judges.append(j)
    return CrossFitJudge(judges, oof, folds)
