"""A scikit-learn meta-estimator that routes between classifiers: :class:`RoutedClassifier`.

It is the library's routing packaged as an estimator, not a second implementation:

* ``fit`` gets out-of-fold predictions of the stages it fits (cross-fitting, as scikit-learn's
  ``TunedThresholdClassifierCV`` does), fits a :class:`~confroute.TemperatureScaler` per stage
  on them, measures every threshold with :func:`~confroute.evaluate` and picks the thresholds
  with :func:`~confroute.choose_thresholds`, then refits the stages on all the data;
* ``predict``, ``predict_proba`` and ``route`` run a :class:`~confroute.Cascade` of
  :class:`~confroute.SklearnPredictor` stages: each stage sees only the inputs that reach it.

Stages already fitted elsewhere are wrapped in ``sklearn.frozen.FrozenEstimator``: they are not
refitted and their predictions on the ``fit`` data are used as they are (which is only honest
when that data is new to them).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.model_selection import StratifiedShuffleSplit, check_cv
from sklearn.utils import _safe_indexing, get_tags, indexable
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _num_samples, column_or_1d

from ..calibration.calibrators import TemperatureScaler
from ..core import _html
from ..core._params import DELTA, Interval
from ..core.classes import as_classes, label_indices
from ..core.cost import CostModel
from ..core.types import Predictions, RoutingResult
from ..evaluation.evaluate import evaluate
from ..exceptions import ClassMismatchError, NotFittedError
from ..predictors.sklearn import SklearnPredictor
from ..routing.cascade import Cascade
from ..selection.choose import choose_thresholds
from ..selection.objectives import OBJECTIVES, objective_of

__all__ = ["RoutedClassifier"]

#: A float ``cv``: the share held out.
_HOLD_OUT = Interval(0.0, 1.0)


def _is_frozen(est: Any) -> bool:
    try:
        from sklearn.frozen import FrozenEstimator
    except ImportError:  # scikit-learn < 1.6 has no FrozenEstimator
        return False
    return isinstance(est, FrozenEstimator)


def _default_name(est: Any) -> str:
    inner = getattr(est, "estimator", None) if _is_frozen(est) else None
    return type(inner if inner is not None else est).__name__.lower()


class _RowPredictor(SklearnPredictor):
    """A stage over row indices of one ``X`` (any container ``_safe_indexing`` takes: arrays,
    sparse matrices, DataFrames, lists of texts); keeps the probabilities it returned."""

    def __init__(self, estimator: Any, X: Any, name: str) -> None:
        super().__init__(estimator, name=name)
        self._X = X
        self.outputs: list[np.ndarray] = []

    def _predict_batch(self, inputs: Sequence[Any]) -> Predictions:
        rows = np.asarray(inputs, dtype=np.intp)
        part = super()._predict_batch(_safe_indexing(self._X, rows))
        self.outputs.append(part.probs)
        return part


class RoutedClassifier(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """Route between classifiers of increasing cost: each answers what it is confident on.

    Parameters
    ----------
    stages : list of estimators or of (name, estimator) tuples
        Classifiers with ``predict_proba``, cheapest first; the last answers everything that
        reaches it. An estimator wrapped in ``sklearn.frozen.FrozenEstimator`` is used as
        fitted; the others are fitted by :meth:`fit`. Named stages expose their parameters as
        ``name__param`` (for ``GridSearchCV``); unnamed ones get their class name.
    objective : {"system_accuracy", "accepted_accuracy", "coverage", "cost", "savings", \
            "relative_accuracy", "accuracy_drop"}
        What ``target`` constrains: the short ``name`` of an objective of
        :func:`~confroute.choose_thresholds` (the table in ``confroute.selection.objectives``),
        with that keyword's guarantee. ``"system_accuracy"``: accuracy of the routed answers;
        ``"accepted_accuracy"``: accuracy of the first stage on what it keeps; ``"coverage"``:
        share the first stage answers; ``"cost"``: mean price per input (needs ``costs``);
        ``"savings"``: share saved against the last stage alone (needs ``costs``);
        ``"relative_accuracy"`` / ``"accuracy_drop"``: system accuracy against the last stage's,
        paired-certified. Three or more stages take ``"system_accuracy"`` or ``"cost"`` (the
        joint search of :func:`~confroute.choose_thresholds`).
    target : float, default 0.9
        The target of the objective. Accuracy and coverage objectives take the cheapest routing
        that meets it; a cost budget takes the most accurate routing within it.
    delta : float or None, default 0.05
        The target holds with probability ``1 - delta`` over the draw of the data (see
        :func:`~confroute.choose_thresholds`); ``None``: an empirical choice, met on the
        out-of-fold predictions only. An unreachable target issues a ``ThresholdWarning``, and
        the safe end is used (everything to the last stage for accuracy targets).
    costs : sequence of float or CostModel, optional
        Price per input of each stage: for the ``"cost"`` and ``"savings"`` objectives, to pick
        the cheapest of equally good cascades, and for ``route(X).cost``.
    calibration : "temperature", None or calibrator, default "temperature"
        How each stage's confidence is calibrated on the out-of-fold predictions before the
        thresholds are chosen: a :class:`~confroute.TemperatureScaler`, nothing, or any
        confroute calibrator instance (copied, then fitted). To use scikit-learn's calibration
        instead, wrap a stage in ``CalibratedClassifierCV(..., method="temperature")`` and pass
        ``calibration=None``.
    cv : int, float, cross-validation generator or iterable, default 5
        How the out-of-fold predictions are made, as in ``TunedThresholdClassifierCV``: a number
        of stratified folds, a float in (0, 1) for one stratified hold-out split of that size,
        or a splitter. Only the rows in the test folds are used for calibration and thresholds.
        Not used when every stage is frozen.
    confidence : {"max_prob", "margin", "neg_entropy"}, default "max_prob"
        Confidence score of the non-last stages (``score`` is scikit-learn's accuracy method).
    grid : int, default 20
        Three or more stages: threshold candidates per stage (quantiles of its scores).
    method : {"exhaustive", "coordinate"}, default "exhaustive"
        Three or more stages: the joint search (see :func:`~confroute.choose_thresholds`).
    random_state : int, RandomState or None
        Seed of the hold-out split when ``cv`` is a float.

    Attributes
    ----------
    estimators_ : list of estimators
        The fitted stages (refitted on all of ``X``, or the frozen ones as given).
    frozen_ : list of bool
    classes_ : ndarray
        The class labels, in the user's own values.
    stage_names_ : list of str
    calibrators_ : list
        The fitted calibrator of each stage (``None`` without calibration).
    thresholds_ : ndarray of shape (n_stages - 1,)
        Threshold of each non-last stage on its calibrated score (``inf``: accepts nothing).
    choice_ : ThresholdChoice or CascadeChoice
        The threshold choice, with its target, guarantee and figures on the out-of-fold data.
    cv_evaluation_ : Evaluation
        Every threshold measured on the out-of-fold predictions (plot it, or read its table).
    stage_costs_ : ndarray or None
        Price per input of each stage.
    n_calibration_ : int
        Rows the calibration and the threshold choice used.
    n_features_in_, feature_names_in_
        From the first stage, when it has them.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = RoutedClassifier([("cheap", LogisticRegression(max_iter=1000)),
    ...                         ("forest", RandomForestClassifier(n_estimators=50, random_state=0))],
    ...                        target=0.85, costs=[1.0, 20.0], cv=3).fit(X[:1200], y[:1200])
    >>> clf.choice_.feasible, clf.predict(X[1200:1203]).shape
    (True, (3,))
    >>> result = clf.route(X[1200:])
    >>> result.n_stages, 0 < result.coverage < 1
    (2, True)
    """

    def __init__(
        self,
        stages: Sequence[Any],
        *,
        objective: str = "system_accuracy",
        target: float = 0.9,
        delta: float | None = 0.05,
        costs: Any = None,
        calibration: Any = "temperature",
        cv: Any = 5,
        confidence: str = "max_prob",
        grid: int = 20,
        method: str = "exhaustive",
        random_state: Any = None,
    ) -> None:
        self.stages = stages
        self.objective = objective
        self.target = target
        self.delta = delta
        self.costs = costs
        self.calibration = calibration
        self.cv = cv
        self.confidence = confidence
        self.grid = grid
        self.method = method
        self.random_state = random_state

    # -- parameters of named stages (``cheap__C``), as Pipeline and VotingClassifier do ----------
    def _named(self) -> bool:
        stages = getattr(self, "stages", None)
        return (
            isinstance(stages, (list, tuple))
            and len(stages) > 0
            and all(isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], str) for s in stages)
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        out = super().get_params(deep=deep)
        if deep and self._named():
            for name, est in self.stages:
                out[name] = est
                if hasattr(est, "get_params") and not isinstance(est, type):
                    out.update({f"{name}__{k}": v for k, v in est.get_params(deep=True).items()})
        return out

    def set_params(self, **params: Any) -> RoutedClassifier:
        if "stages" in params:
            self.stages = params.pop("stages")
        if self._named():
            names = [name for name, _ in self.stages]
            for key in [k for k in params if k in names]:
                value = params.pop(key)
                self.stages = [(n, value if n == key else e) for n, e in self.stages]
        super().set_params(**params)
        return self

    def _stage_list(self) -> list[tuple[str, Any]]:
        stages = self.stages
        if not isinstance(stages, (list, tuple)) or len(stages) < 2:
            raise ValueError(
                f"stages must be a list of at least 2 classifiers (cheapest first), got {stages!r}"
            )
        if self._named():
            named = [(str(n), e) for n, e in stages]
        elif any(isinstance(s, tuple) for s in stages):
            raise ValueError("give every stage as an estimator or every stage as a (name, estimator) tuple")
        else:
            bases = [_default_name(est) for est in stages]
            seen: dict[str, int] = {}
            named = []
            for base, est in zip(bases, stages):
                # Repeated class names are numbered in order: gaussiannb0, gaussiannb1, ...
                k = seen[base] = seen.get(base, -1) + 1
                named.append((f"{base}{k}" if bases.count(base) > 1 else base, est))
        names = [n for n, _ in named]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        clash = sorted(set(names) & set(self.get_params(deep=False)))
        bad = [n for n in names if "__" in n or not n]
        if clash or bad:
            raise ValueError(
                f"stage names must be non-empty, without '__', and not a parameter name: {clash + bad}"
            )
        for name, est in named:
            if not hasattr(est, "fit") or not hasattr(est, "predict_proba"):
                raise TypeError(
                    f"stage {name!r} ({type(est).__name__}) must be a classifier with fit and "
                    "predict_proba; wrap a fitted one in sklearn.frozen.FrozenEstimator"
                )
        return named

    # -- fitting ------------------------------------------------------------------------------
    def _check_params(self, n_stages: int) -> tuple[str, CostModel | None]:
        names = [o.name for o in OBJECTIVES.values() if o.supports(n_stages)]
        if self.objective not in names:
            raise ValueError(
                f"objective must be one of {names} for {n_stages} stages, got {self.objective!r}"
            )
        objective = objective_of(self.objective)
        DELTA.check(self.delta, "delta")  # before any stage is fitted
        if not isinstance(self.target, numbers.Real) or not np.isfinite(self.target):
            raise ValueError(f"target must be a finite number, got {self.target!r}")
        cost_model = None
        if self.costs is not None:
            cost_model = (
                self.costs if isinstance(self.costs, CostModel) else CostModel.per_sample(list(self.costs))
            )
            cost_model.check_stages(n_stages)
            prices = cost_model.stage_costs
            if not np.isfinite(prices).all() or (prices < 0).any():
                raise ValueError(f"costs must be finite and >= 0, got {prices.tolist()}")
        if objective.needs_prices and cost_model is None:
            raise ValueError(f"objective={self.objective!r} needs costs=[price of each stage]")
        if self.method not in ("exhaustive", "coordinate"):
            raise ValueError(f"method must be 'exhaustive' or 'coordinate', got {self.method!r}")
        return objective.keyword, cost_model

    def _calibrator(self) -> Any:
        if self.calibration is None:
            return None
        if isinstance(self.calibration, str):
            if self.calibration != "temperature":
                raise ValueError(
                    f"calibration must be 'temperature', None or a calibrator, got {self.calibration!r}"
                )
            return TemperatureScaler()
        if not (hasattr(self.calibration, "fit") and hasattr(self.calibration, "transform")):
            raise TypeError(
                "calibration must be 'temperature', None or a calibrator with fit(log_scores, labels) "
                f"and transform(log_scores), got {type(self.calibration).__name__}"
            )
        return copy.deepcopy(self.calibration)

    def _splits(self, X: Any, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        cv = self.cv
        if isinstance(cv, numbers.Real) and not isinstance(cv, numbers.Integral):
            try:
                _HOLD_OUT.check(cv, "cv")
            except ValueError:
                raise ValueError(f"a float cv is the hold-out share and must lie in {_HOLD_OUT}, got {cv}") from None
            splitter: Any = StratifiedShuffleSplit(n_splits=1, test_size=cv, random_state=self.random_state)
        else:
            splitter = check_cv(cv, y, classifier=True)
        splits = [(np.asarray(tr), np.asarray(te)) for tr, te in splitter.split(X, y)]
        seen = np.concatenate([te for _, te in splits]) if splits else np.empty(0, dtype=np.intp)
        if seen.size == 0:
            raise ValueError("cv produced no test rows to calibrate and choose thresholds on")
        if np.unique(seen).size != seen.size:
            raise ValueError("cv must not put a row in more than one test fold (out-of-fold "
                             "predictions need one prediction per row)")
        return splits

    def _out_of_fold(self, named: list[tuple[str, Any]], frozen: list[bool], X: Any, y: np.ndarray,
                     classes: np.ndarray) -> tuple[np.ndarray, list[Predictions]]:
        """The rows predicted out of fold (all rows when every stage is frozen) and each stage's
        predictions on them: fitted stages on the other folds, frozen ones as they are."""
        rows = np.arange(_num_samples(X))
        splits: list[tuple[np.ndarray, np.ndarray]] = []
        if not all(frozen):
            splits = self._splits(X, y)
            rows = np.concatenate([te for _, te in splits])
        oof = []
        for (name, est), is_frozen in zip(named, frozen):
            probs = np.zeros((rows.size, classes.size))
            if is_frozen:
                probs[:] = _aligned_proba(est, _safe_indexing(X, rows), classes, name)
            else:
                at = 0
                for train, test in splits:
                    fold = clone(est).fit(_safe_indexing(X, train), y[train])
                    probs[at : at + test.size] = _aligned_proba(fold, _safe_indexing(X, test), classes, name)
                    at += test.size
            oof.append(Predictions.from_probs(probs, source=f"stage {name!r}"))
        return rows, oof

    def fit(self, X: Any, y: Any = None) -> RoutedClassifier:
        """Fit the stages, calibrate their confidence and choose the thresholds.

        Parameters
        ----------
        X : array-like, sparse matrix, DataFrame or list of texts, shape (n_samples, ...)
            Whatever the stages take.
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        named = self._stage_list()
        n_stages = len(named)
        keyword, cost_model = self._check_params(n_stages)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        X, y = indexable(X, y)  # sparse -> CSR, non-indexable -> array; same number of rows
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        frozen = [_is_frozen(est) for _, est in named]
        first_frozen = next((est for (_, est), f in zip(named, frozen) if f), None)
        classes = np.asarray(first_frozen.classes_) if first_frozen is not None else np.unique(y)
        if classes.size < 2:
            raise ValueError(f"RoutedClassifier needs at least 2 classes in y, got {classes.size} class(es)")
        try:
            y_index = label_indices(y, as_classes(classes), classes.size, what="y")
        except ClassMismatchError as exc:
            raise ClassMismatchError(
                f"y has labels {exc.unknown[:5]} that the frozen stage {_default_name(first_frozen)!r} "  # type: ignore[attr-defined]
                f"does not predict (its classes are {classes.tolist()})"
            ) from None

        # 1. Out-of-fold predictions of the stages to fit; frozen stages predict as they are.
        rows, oof = self._out_of_fold(named, frozen, X, y, classes)
        y_cal = y_index[rows]

        # 2. Calibrate each stage's confidence on its out-of-fold predictions.
        calibrators = []
        for preds in oof:
            cal = self._calibrator()
            calibrators.append(None if cal is None else cal.fit(preds, y_cal))
        calibrated = [p if c is None else Predictions.from_probs(c.transform(p), source="calibrator")
                      for p, c in zip(oof, calibrators)]

        # 3. Measure every threshold and choose with the library's own selection.
        names = [name for name, _ in named]
        goal: dict[str, Any] = {keyword: float(self.target)}
        choice: Any
        if n_stages == 2:
            evaluation = evaluate(labels=y_cal, primary=calibrated[0], fallback=calibrated[1],
                                  score=self.confidence, cost_model=cost_model, stage_names=names)
        else:
            evaluation = evaluate(labels=y_cal, stages=calibrated, score=self.confidence,
                                  cost_model=cost_model, stage_names=names, grid=int(self.grid))
        choice = choose_thresholds(evaluation, delta=self.delta, method=self.method, **goal)
        thresholds = list(choice.thresholds)

        # 4. Refit the stages to fit on all the data.
        estimators = [est if is_frozen else clone(est).fit(X, y)
                      for (_, est), is_frozen in zip(named, frozen)]
        for (name, _), est in zip(named, estimators):
            if not np.array_equal(np.asarray(est.classes_), classes):
                raise ClassMismatchError(
                    f"stage {name!r} predicts classes {np.asarray(est.classes_).tolist()} but the "
                    f"router's classes are {classes.tolist()}; every stage must know the same classes"
                )

        self.estimators_ = estimators
        self.frozen_ = frozen
        self.classes_ = classes
        self.stage_names_ = names
        self.calibrators_ = calibrators
        self.thresholds_ = np.asarray(thresholds, dtype=np.float64)
        self.choice_ = choice
        self.cv_evaluation_ = evaluation
        self.stage_costs_ = None if cost_model is None else cost_model.stage_costs
        self.n_calibration_ = int(rows.size)
        first = estimators[0]
        if hasattr(first, "n_features_in_"):
            self.n_features_in_ = first.n_features_in_
        if hasattr(first, "feature_names_in_"):
            self.feature_names_in_ = first.feature_names_in_
        return self

    # -- prediction ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "estimators_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit(X, y) first"
            )

    def _cascade(self, stages: Sequence[Any]) -> Cascade:
        cost_model = None if self.stage_costs_ is None else CostModel.per_sample(self.stage_costs_.tolist())
        return Cascade(stages, thresholds=list(self.thresholds_), score=self.confidence,
                       calibrators=self.calibrators_, cost_model=cost_model, names=self.stage_names_)

    def to_router(self) -> Cascade:
        """The fitted routing as a :class:`~confroute.Cascade` of
        :class:`~confroute.SklearnPredictor` stages, to route inputs with the rest of the library
        (``route_stream``, ``aroute``, :class:`~confroute.Fallback` policies...)."""
        self._check_fitted()
        stages = [SklearnPredictor(e, name=n) for e, n in zip(self.estimators_, self.stage_names_)]
        return self._cascade(stages)

    def _route(self, X: Any) -> tuple[RoutingResult, list[_RowPredictor]]:
        self._check_fitted()
        X = indexable(X)[0]
        stages = [_RowPredictor(e, X, n) for e, n in zip(self.estimators_, self.stage_names_)]
        rows: Any = np.arange(_num_samples(X))
        result = self._cascade(stages).route(rows)
        return result, stages

    def route(self, X: Any) -> RoutingResult:
        """Route ``X``: each stage runs once, on the inputs that reach it.

        Returns
        -------
        RoutingResult
            Which stage answered each input, every stage's label and score, cost.
        """
        return self._route(X)[0]

    def predict(self, X: Any) -> np.ndarray:
        """The answering stage's class for each input, in the user's label values."""
        result, _ = self._route(X)
        return self.classes_[_label_index(result)]

    def predict_proba(self, X: Any) -> np.ndarray:
        """The answering stage's (calibrated) class distribution for each input.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``.
        """
        result, stages = self._route(X)
        n = len(result)
        out = np.full((n, self.classes_.size), np.nan)
        for s, stage in enumerate(stages):
            reached = np.flatnonzero(result.reached[s])
            if reached.size == 0:
                continue
            raw = np.concatenate(stage.outputs)
            if raw.shape[0] != reached.size:  # pragma: no cover - a broken routing invariant
                raise RuntimeError(f"stage {stage.name!r} answered {raw.shape[0]} of {reached.size} inputs")
            cal = self.calibrators_[s]
            probs = raw if cal is None else cal.transform(Predictions.from_probs(raw, source=stage.name))
            answered = np.flatnonzero(result.stage == s)
            out[answered] = probs[np.searchsorted(reached, answered)]
        return out

    # -- display and tags ---------------------------------------------------------------------
    def _html_repr(self) -> str:
        base = getattr(super(), "_html_repr", None)
        html = base() if base is not None else ""
        return html + _html.routed_classifier_html(self) if hasattr(self, "estimators_") else html

    def _sk_visual_block_(self) -> Any:
        """The stages side by side, each under its name and place in the cascade (an input is
        answered by one of them), like the estimators of scikit-learn's ``VotingClassifier``."""
        try:
            from sklearn.utils._repr_html.estimator import _VisualBlock
        except ImportError:  # pragma: no cover - older scikit-learn
            from sklearn.utils._estimator_html_repr import _VisualBlock
        named = self._stage_list()
        last = len(named) - 1
        names = [f"{n} (stage {s + 1}{', answers the rest' if s == last else ''})" for s, (n, _) in enumerate(named)]
        return _VisualBlock("parallel", [e for _, e in named], names=names,
                            name_details=[str(e) for _, e in named], dash_wrapped=False)

    def _get_fitted_attr_html(self, doc_link: str = "") -> Any:
        """scikit-learn's "Fitted attributes" panel, with float arrays shown to 4 significant
        digits (scikit-learn prints them with 2 decimals: prices 0.001 and 0.005 read ``[0., 0.01]``)."""
        attrs = super()._get_fitted_attr_html(doc_link)  # type: ignore[misc]
        for info in attrs.values():
            value = info.get("value")
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.ndim == 1:
                info["value"] = [float(f"{v:.4g}") for v in value.tolist()]
        return attrs

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        try:
            stage_tags = [get_tags(e) for _, e in self._stage_list()]
        except (TypeError, ValueError):
            return tags
        tags.input_tags.sparse = all(t.input_tags.sparse for t in stage_tags)
        tags.input_tags.allow_nan = all(t.input_tags.allow_nan for t in stage_tags)
        tags.input_tags.string = all(t.input_tags.string for t in stage_tags)
        return tags


# -- helpers ---------------------------------------------------------------------------------------
def _aligned_proba(est: Any, X: Any, classes: np.ndarray, name: str) -> np.ndarray:
    """``est.predict_proba(X)`` with its columns put in the order of ``classes``; a class the
    estimator never saw (a fold without it) gets probability 0."""
    probs = np.asarray(est.predict_proba(X), dtype=np.float64)
    own = np.asarray(est.classes_)
    if own.shape == classes.shape and np.array_equal(own, classes):
        return probs
    try:
        columns = label_indices(own, as_classes(classes), classes.size, what=f"stage {name!r} classes")
    except ClassMismatchError as exc:
        raise ClassMismatchError(
            f"stage {name!r} predicts classes {exc.unknown[:5]} that are not among the router's "  # type: ignore[attr-defined]
            f"classes {classes.tolist()}"
        ) from None
    out = np.zeros((probs.shape[0], classes.size))
    out[:, columns] = probs
    return out


def _label_index(result: RoutingResult) -> np.ndarray:
    """Column index of each final answer."""
    return np.asarray(result.label_index, dtype=np.intp)
