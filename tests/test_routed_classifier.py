"""RoutedClassifier: scikit-learn's estimator checks, the routing it fits, and its place in
Pipeline / GridSearchCV / cross_val_score / clone / pickle."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict, cross_val_score
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from confroute import Predictions, RoutedClassifier, evaluate
from confroute.exceptions import ClassMismatchError, NotFittedError, ThresholdWarning

frozen = pytest.importorskip("sklearn.frozen")  # scikit-learn >= 1.6
FrozenEstimator = frozen.FrozenEstimator

SHARED = Path(os.environ.get("CONFROUTE_SHARED") or Path(__file__).resolve().parents[1] / ".." / "shared")


# --------------------------------------------------------------------------- estimator checks
# Two stage configurations: the two-stage threshold (choose_threshold) and the joint search of a
# three-stage cascade under a cost budget (choose_cascade_thresholds). No check is marked as an
# expected failure: every one of scikit-learn's checks passes for both.
CONFIGS = [
    RoutedClassifier([("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(random_state=0))], cv=2),
    RoutedClassifier(
        [GaussianNB(), LogisticRegression(), DecisionTreeClassifier(random_state=0)],
        objective="cost", target=5.0, costs=[1.0, 2.0, 10.0], grid=5, cv=2,
    ),
]


@parametrize_with_checks(CONFIGS)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        # Tiny, separable check data: unreachable targets and temperatures at the search edge
        # are expected there and reported as warnings by design.
        warnings.simplefilter("ignore", ThresholdWarning)
        warnings.filterwarnings("ignore", module="confroute")
        check(estimator)


# --------------------------------------------------------------------------- the routing it fits
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:1000], y[:1000], X[1000:], y[1000:]


def _two_stage(**kw):
    kw.setdefault("target", 0.85)
    kw.setdefault("cv", 3)
    return RoutedClassifier(
        [("nb", GaussianNB()), ("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)))],
        **kw,
    )


@pytest.fixture(scope="module")
def fitted(digits):
    X, y, _, _ = digits
    return _two_stage(costs=[1.0, 10.0]).fit(X, y)


def test_predictions_match_evaluate_on_the_same_predictions(fitted, digits):
    _, _, X_test, y_test = digits
    threshold = float(fitted.thresholds_[0])
    assert 0 < threshold < 1 and fitted.choice_.feasible
    point = evaluate(fitted.to_router(), X_test, y_test, progress=False).at(threshold)
    result = fitted.route(X_test)
    pred = fitted.predict(X_test)
    assert result.coverage == pytest.approx(point.coverage, abs=0)
    assert np.mean(pred == y_test) == pytest.approx(point.system_accuracy, abs=1e-12)
    assert fitted.score(X_test, y_test) == pytest.approx(point.system_accuracy, abs=1e-12)
    assert 0.05 < result.coverage < 0.95  # both stages answer something
    assert result.total_cost == pytest.approx(point.cost)


def test_predict_proba_is_the_answering_stage_calibrated_distribution(fitted, digits):
    _, _, X_test, _ = digits
    proba = fitted.predict_proba(X_test)
    result = fitted.route(X_test)
    per_stage = fitted.to_router().stage_predictions(X_test)  # every stage on every input, calibrated
    expected = np.where((result.stage == 0)[:, None], per_stage[0].probs, per_stage[1].probs)
    np.testing.assert_allclose(proba, expected, rtol=1e-12, atol=1e-15)
    assert np.array_equal(fitted.classes_[proba.argmax(axis=1)], fitted.predict(X_test))


def test_calibration_and_thresholds_use_out_of_fold_predictions(digits):
    X, y, _, _ = digits
    tree = DecisionTreeClassifier(random_state=0)  # 100% accurate on its own training data
    clf = RoutedClassifier([("tree", tree), ("lr", LogisticRegression(max_iter=2000))], cv=3, target=0.8,
                           delta=None).fit(X, y)
    oof = cross_val_predict(tree, X, y, cv=StratifiedKFold(3))
    assert clf.n_calibration_ == len(y)
    assert clf.cv_evaluation_.stage_accuracy["tree"] == pytest.approx(np.mean(oof == y))
    assert clf.cv_evaluation_.stage_accuracy["tree"] < 0.95
    assert clf.calibrators_[0].temperature_ > 1.0  # the in-sample tree would look perfectly sure


def test_hold_out_split_and_no_calibration(digits):
    X, y, _, _ = digits
    clf = _two_stage(cv=0.25, random_state=0, calibration=None, objective="accepted_accuracy",
                     target=0.95).fit(X, y)
    assert clf.n_calibration_ == 250
    assert clf.calibrators_ == [None, None]
    assert clf.choice_.objective == "accepted_accuracy"
    assert clf.choice_.n == 250


@pytest.mark.parametrize("objective, target", [("relative_accuracy", 0.97), ("accuracy_drop", 0.02)])
def test_objectives_come_from_the_one_table(digits, objective, target):
    """``objective`` is the short name of a row of selection.objectives: the paired objectives
    are there too, and they mean what the keyword means in choose_thresholds."""
    from confroute import choose_thresholds
    from confroute.selection.objectives import OBJECTIVES, objective_of

    X, y, _, _ = digits
    clf = _two_stage(cv=0.25, random_state=0, calibration=None, objective=objective, target=target,
                     delta=None).fit(X, y)
    assert clf.choice_.objective == objective
    ref = choose_thresholds(clf.cv_evaluation_, delta=None, **{objective_of(objective).keyword: target})
    assert list(clf.thresholds_) == ref.thresholds
    three = {o.name for o in OBJECTIVES.values() if o.supports(3)}
    assert three == {"system_accuracy", "cost"}


def test_frozen_stage_is_used_as_fitted(digits):
    X, y, X_test, y_test = digits
    forest = LogisticRegression(max_iter=3000).fit(X_test, y_test)  # fitted elsewhere
    stage = FrozenEstimator(forest)
    clf = RoutedClassifier([("nb", GaussianNB()), ("big", stage)], cv=3, target=0.85).fit(X, y)
    assert clf.estimators_[1] is stage and clf.frozen_ == [False, True]
    assert np.array_equal(clf.estimators_[1].estimator.coef_, forest.coef_)  # not refitted
    all_frozen = RoutedClassifier([FrozenEstimator(GaussianNB().fit(X_test, y_test)), stage], target=0.85)
    all_frozen.fit(X, y)
    assert all_frozen.n_calibration_ == len(y)  # no folds: every row calibrates


def test_three_stages_joint_choice(digits):
    X, y, X_test, y_test = digits
    clf = RoutedClassifier(
        [GaussianNB(), DecisionTreeClassifier(max_depth=8, random_state=0),
         make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))],
        target=0.85, costs=[1.0, 2.0, 20.0], grid=8, cv=3,
    ).fit(X, y)
    assert clf.thresholds_.shape == (2,)
    assert type(clf.choice_).__name__ == "CascadeChoice"
    assert clf.choice_.feasible and clf.choice_.accuracy_bound >= 0.85
    grid = [[t] for t in clf.thresholds_]  # the chosen thresholds as a one-row grid
    point = evaluate(clf.to_router(), X_test, y_test, grid=grid, progress=False).row(0)
    result = clf.route(X_test)
    assert np.mean(clf.predict(X_test) == y_test) == pytest.approx(point.system_accuracy, abs=1e-12)
    shares = np.bincount(result.stage, minlength=3) / len(y_test)
    np.testing.assert_allclose(shares, point.shares)


def test_user_label_values_are_kept():
    X, y = make_classification(n_samples=300, n_classes=3, n_informative=4, random_state=0)
    names = np.array(["cat", "dog", "eel"])[y]
    clf = _two_stage(target=0.6).fit(X, names)
    assert clf.classes_.tolist() == ["cat", "dog", "eel"]
    assert set(clf.predict(X)) <= {"cat", "dog", "eel"}
    ints = _two_stage(target=0.6).fit(X, y + 10)
    assert ints.classes_.tolist() == [10, 11, 12] and ints.predict(X).dtype.kind == "i"


# --------------------------------------------------------------------------- scikit-learn tools
def test_pipeline_cross_val_score_grid_search_clone_pickle(digits):
    X, y, X_test, y_test = digits
    X, y = X[:500], y[:500]
    clf = RoutedClassifier([("nb", GaussianNB()), ("tree", DecisionTreeClassifier(random_state=0))],
                           target=0.75, delta=None, cv=2)
    scores = cross_val_score(clf, X, y, cv=2)
    assert scores.shape == (2,) and (scores > 0.5).all()
    grid = GridSearchCV(clf, {"target": [0.7, 0.75], "nb__var_smoothing": [1e-9, 1e-2]}, cv=2).fit(X, y)
    assert grid.best_estimator_.stages[0][1].var_smoothing == grid.best_params_["nb__var_smoothing"]
    assert clone(clf).get_params()["tree__random_state"] == 0
    restored = pickle.loads(pickle.dumps(grid.best_estimator_))
    assert np.array_equal(restored.predict(X_test), grid.best_estimator_.predict(X_test))
    replaced = clone(clf).set_params(nb=DecisionTreeClassifier(max_depth=3))
    assert isinstance(replaced.stages[0][1], DecisionTreeClassifier)


def test_html_repr_has_the_estimator_diagram_and_the_fitted_routing(fitted):
    html = fitted._repr_html_()
    assert "sk-" in html  # scikit-learn's own estimator diagram
    assert "fitted routing" in html and f"{fitted.thresholds_[0]:.4g}" in html
    assert "fitted routing" not in clone(fitted)._repr_html_()


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"objective": "cost"}, "needs costs"),
        ({"objective": "speed"}, "objective must be one of"),
        ({"calibration": "platt"}, "calibration must be"),
        ({"cv": 1.5}, "hold-out share"),
        ({"costs": [1.0, 2.0, 3.0]}, "cost model has 3 stages"),
        ({"delta": 1.5}, r"delta must lie in \(0, 1\) or be None"),
    ],
)
def test_bad_parameters_are_named(digits, kw, message):
    X, y, _, _ = digits
    with pytest.raises(ValueError, match=message):
        _two_stage(**kw).fit(X, y)


def test_bad_stages_are_named(digits):
    X, y, X_test, y_test = digits
    with pytest.raises(ValueError, match="at least 2"):
        RoutedClassifier([GaussianNB()]).fit(X, y)
    with pytest.raises(ValueError, match="every stage as an estimator or every stage as a"):
        RoutedClassifier([("nb", GaussianNB()), LogisticRegression()]).fit(X, y)
    with pytest.raises(ValueError, match="objective must be one of"):
        RoutedClassifier([GaussianNB(), GaussianNB(), GaussianNB()], objective="coverage").fit(X, y)
    few = FrozenEstimator(GaussianNB().fit(X_test[y_test < 5], y_test[y_test < 5]))
    with pytest.raises(ClassMismatchError, match="does not predict"):
        RoutedClassifier([few, GaussianNB()]).fit(X, y)
    with pytest.raises(NotFittedError, match="not fitted"):
        RoutedClassifier([GaussianNB(), GaussianNB()]).predict(X)


def test_unreachable_target_warns_and_sends_everything_on(digits):
    X, y, X_test, _ = digits
    with pytest.warns(ThresholdWarning):
        clf = _two_stage(target=0.999).fit(X, y)
    assert not clf.choice_.feasible and np.isinf(clf.thresholds_[0])
    assert clf.route(X_test).coverage == 0.0


# --------------------------------------------------------------------------- text, on TREC
def _trec(name: str) -> tuple[list[str], np.ndarray]:
    lines = (SHARED / "data" / "extra" / name).read_text(encoding="latin-1").splitlines()
    labels, texts = zip(*(line.split(" ", 1) for line in lines if line.strip()))
    return list(texts), np.array(labels, dtype=int)


@pytest.mark.shared
def test_tfidf_pipeline_grid_search_on_trec_matches_evaluate():
    if not (SHARED / "data" / "extra" / "TREC.train.all").exists():
        pytest.skip(f"TREC not found under {SHARED}/data/extra (set CONFROUTE_SHARED)")
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import SGDClassifier
    from sklearn.naive_bayes import ComplementNB
    from sklearn.pipeline import Pipeline

    X_train, y_train = _trec("TREC.train.all")
    X_test, y_test = _trec("TREC.test.all")
    pipe = Pipeline([
        ("tfidf", TfidfVectorizer(sublinear_tf=True)),
        ("route", RoutedClassifier(
            [("nb", ComplementNB()), ("sgd", SGDClassifier(loss="log_loss", alpha=1e-5, random_state=0))],
            objective="system_accuracy", target=0.8, costs=[1.0, 10.0], cv=3)),
    ])
    search = GridSearchCV(pipe, {"route__target": [0.78, 0.8], "route__nb__alpha": [0.3, 1.0]}, cv=3)
    search.fit(X_train, y_train)
    best = search.best_estimator_
    routed = best.named_steps["route"]
    features = best[:-1].transform(X_test)

    result = routed.route(features)
    system_accuracy = float(np.mean(best.predict(X_test) == y_test))
    # evaluate() on the same predictions: each fitted stage's calibrated probabilities.
    stages = [Predictions.from_probs(cal.transform(Predictions.from_probs(est.predict_proba(features))))
              for est, cal in zip(routed.estimators_, routed.calibrators_)]
    point = evaluate(labels=y_test, primary=stages[0], fallback=stages[1], cost_model=[1.0, 10.0]).at(
        routed.thresholds_[0])
    assert result.coverage == pytest.approx(point.coverage, abs=0)
    assert system_accuracy == pytest.approx(point.system_accuracy, abs=1e-12)
    assert result.total_cost / len(y_test) == pytest.approx(point.cost / len(y_test))
    assert 0.0 < result.coverage < 1.0
    assert system_accuracy > 0.8
    assert search.best_params_["route__target"] == routed.target


# --------------------------------------------------------------------------- scikit-learn's calibration
def _sklearn_has_temperature() -> bool:
    import sklearn

    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    return (major, minor) >= (1, 8)


@pytest.mark.skipif(not _sklearn_has_temperature(), reason="scikit-learn < 1.8 has no temperature method")
def test_temperature_scaler_agrees_with_sklearn_on_the_same_input(digits):
    from sklearn.calibration import CalibratedClassifierCV

    from confroute import TemperatureScaler

    X, y, X_test, _ = digits
    model = LogisticRegression(C=0.05, max_iter=3000).fit(X[:500], y[:500])
    ours = TemperatureScaler().fit(Predictions.from_probs(model.predict_proba(X[500:])), y[500:])
    theirs = CalibratedClassifierCV(FrozenEstimator(model), method="temperature").fit(X[500:], y[500:])
    beta = float(np.ravel(theirs.calibrated_classifiers_[0].calibrators[0].beta_)[0])
    assert ours.temperature_ == pytest.approx(1.0 / beta, rel=1e-4)
    np.testing.assert_allclose(ours.transform(Predictions.from_probs(model.predict_proba(X_test))),
                               theirs.predict_proba(X_test), atol=1e-6)


@pytest.mark.skipif(not _sklearn_has_temperature(), reason="scikit-learn < 1.8 has no temperature method")
def test_sklearn_calibrated_stage_without_a_second_calibration(digits):
    from sklearn.calibration import CalibratedClassifierCV

    X, y, X_test, y_test = digits
    stage = CalibratedClassifierCV(GaussianNB(), method="temperature", cv=3)
    big = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf = RoutedClassifier([("nb", stage), ("lr", big)], calibration=None, target=0.85, cv=3).fit(X, y)
    assert clf.calibrators_ == [None, None]
    proba = clf.predict_proba(X_test)
    answered = clf.route(X_test).stage == 0
    np.testing.assert_allclose(proba[answered], clf.estimators_[0].predict_proba(X_test[answered]))


def test_unnamed_stages_get_numbered_class_names(digits):
    X, y, _, _ = digits
    clf = RoutedClassifier([GaussianNB(), GaussianNB(var_smoothing=1e-3), LogisticRegression(max_iter=200)],
                           target=0.5, grid=4, cv=2, delta=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X[:300], y[:300])
    assert clf.stage_names_ == ["gaussiannb0", "gaussiannb1", "logisticregression"]
