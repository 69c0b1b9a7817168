"""The reproducers of the "one engine" issue: each gives the right number or a clear error.

Labels are the user's own label values everywhere, matched to the stages' classes by value;
stages are aligned by class name; results speak the user's label space.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from confroute import (
    ClassMismatchError,
    CorrectnessJudge,
    DriftMonitor,
    Predictions,
    SklearnPredictor,
    TemperatureScaler,
    ThresholdRouter,
    choose_thresholds,
    evaluate,
)


def _four_classes(seed: int = 0):
    """A 4-class problem labelled 1..4, as AG News is; a weak and a strong model."""
    X, y = make_blobs(n_samples=1200, centers=4, cluster_std=1.5, random_state=seed)
    y = y + 1
    Xtr, ytr, Xte, yte = X[:600], y[:600], X[600:], y[600:]
    weak = LogisticRegression(max_iter=500).fit(Xtr[:, :1], ytr)  # one feature only
    strong = LogisticRegression(max_iter=500).fit(Xtr, ytr)

    class OneFeature:  # the weak model sees the first feature only
        classes_ = weak.classes_

        def predict_proba(self, X):
            return weak.predict_proba(np.asarray(X)[:, :1])

        def predict(self, X):
            return weak.predict(np.asarray(X)[:, :1])

    return OneFeature(), strong, Xte, yte


def test_classes_matched_by_name_whatever_the_column_order():
    primary = Predictions.from_probs([[0.9, 0.1], [0.2, 0.8]], ["neg", "pos"])
    fallback = Predictions.from_probs([[0.1, 0.9], [0.8, 0.2]], ["pos", "neg"])
    res = evaluate(labels=["neg", "pos"], primary=primary, fallback=fallback)
    assert res.stage_accuracy == {"primary": 1.0, "fallback": 1.0}
    # Column indices given for named classes are not guessed at: a clear error that says why.
    with pytest.raises(ClassMismatchError, match=r"look like column indices.*\['neg', 'pos'\]"):
        evaluate(labels=[0, 1], primary=primary, fallback=fallback)


def test_labels_one_to_four_give_the_true_accuracy():
    weak, strong, X, y = _four_classes()
    p, f = SklearnPredictor(weak), SklearnPredictor(strong)
    assert p.classes == (1, 2, 3, 4)  # integers stay integers
    res = evaluate(labels=y, primary=p.predict(X), fallback=f.predict(X))
    assert res.stage_accuracy["primary"] == pytest.approx(np.mean(weak.predict(X) == y))
    assert res.stage_accuracy["fallback"] == pytest.approx(strong.score(X, y))
    assert res.stage_accuracy["fallback"] > 0.8
    # A slice without class 4 is read the same way (no silent shift to column positions).
    keep = y != 4
    sliced = evaluate(labels=y[keep], primary=p.predict(X[keep]), fallback=f.predict(X[keep]))
    assert sliced.stage_accuracy["fallback"] == pytest.approx(strong.score(X[keep], y[keep]))
    # Labels outside the classes: an error naming both sets.
    with pytest.raises(ClassMismatchError, match=r"labels \[5\] are not among the classes .* \[1, 2, 3, 4\]"):
        evaluate(labels=np.where(y == 4, 5, y), primary=p.predict(X), fallback=f.predict(X))


def test_predicted_label_vectors_are_checked_against_the_classes():
    weak, strong, X, y = _four_classes()
    p = SklearnPredictor(weak).predict(X)
    res = evaluate(labels=y, primary=p, fallback=strong.predict(X))  # predict() gives labels 1..4
    assert res.stage_accuracy["fallback"] == pytest.approx(strong.score(X, y))
    with pytest.raises(ClassMismatchError, match="predicted labels of stage 'fallback'"):
        evaluate(labels=y, primary=p, fallback=strong.predict(X) + 10)
    three = Predictions.from_probs(np.full((len(y), 3), 1 / 3))
    with pytest.raises(ClassMismatchError, match="returns 3 classes but earlier stages return 4"):
        evaluate(labels=y, primary=p, fallback=three)
    other = Predictions.from_probs(np.full((len(y), 4), 0.25), classes=["a", "b", "c", "d"])
    with pytest.raises(ClassMismatchError, match="cannot be matched by name"):
        evaluate(labels=y, primary=p, fallback=other)


def test_routing_results_speak_the_users_label_space():
    weak, strong, X, y = _four_classes()
    router = ThresholdRouter(SklearnPredictor(weak), SklearnPredictor(strong), 0.7)
    result = router.route(X)
    expected = np.where(result.stage == 0, weak.predict(X), strong.predict(X))
    np.testing.assert_array_equal(result.labels, expected)
    assert np.mean(result.labels == y) == pytest.approx(np.mean(expected == y))
    np.testing.assert_array_equal(np.asarray(router.stages[0].classes)[result.label_index], result.labels)
    assert result.labels.dtype.kind == "i"


def test_calibrators_and_judge_take_class_name_labels():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    logits = np.c_[np.zeros(500), (2 * y - 1) * 3 + rng.normal(0, 2, 500)]
    preds = Predictions.from_logits(logits, classes=["neg", "pos"])
    names = np.array(["neg", "pos"])[y]
    by_name = TemperatureScaler().fit(preds, names)
    by_index = TemperatureScaler().fit(logits, y)
    assert by_name.temperature_ == pytest.approx(by_index.temperature_)
    with pytest.raises(ClassMismatchError, match="bare logit matrix has no class names"):
        TemperatureScaler().fit(logits, names)
    judge = CorrectnessJudge().fit(preds, None, labels=names)
    direct = CorrectnessJudge().fit(preds, None, preds.labels == names)
    np.testing.assert_allclose(judge.score_predictions(preds), direct.score_predictions(preds))
    with pytest.raises(ValueError, match="pass labels="):
        CorrectnessJudge().fit(preds, None, names)


def test_sparse_matrices_and_frames_route_like_scikit_learn():
    texts = ["good movie", "bad movie", "great film", "awful film", "good film", "bad plot"] * 20
    y = np.array(["pos", "neg", "pos", "neg", "pos", "neg"] * 20)
    vec = TfidfVectorizer().fit(texts)
    X = vec.transform(texts)
    assert sparse.issparse(X)
    cheap = LogisticRegression(C=0.1).fit(X, y)
    big = LogisticRegression(C=10).fit(X, y)
    router = ThresholdRouter(SklearnPredictor(cheap), SklearnPredictor(big), 0.6)
    result = router.route(X)
    assert len(result) == X.shape[0] and (result.labels == y).mean() == 1.0
    res = evaluate(router, X, y, progress=False)
    assert res.n == X.shape[0]
    # A whole text pipeline on raw strings, and a DataFrame batch with column names.
    pd = pytest.importorskip("pandas")
    pipe = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, y)
    assert (ThresholdRouter(SklearnPredictor(pipe), SklearnPredictor(pipe)).route(texts).labels == y).all()
    frame = pd.DataFrame({"a": np.arange(12.0), "b": np.arange(12.0)[::-1]})
    target = (frame["a"] > 5).astype(int).to_numpy()
    lr = LogisticRegression().fit(frame, target)
    routed = ThresholdRouter(SklearnPredictor(lr), SklearnPredictor(lr), 0.9).route(frame)
    np.testing.assert_array_equal(routed.labels, lr.predict(frame))


def test_thresholds_are_settable_with_validation():
    p = Predictions.from_probs  # noqa: F841 - readability
    router = ThresholdRouter(lambda xs: np.tile([0.3, 0.7], (len(xs), 1)),
                             lambda xs: np.tile([0.9, 0.1], (len(xs), 1)), 0.8)
    assert router.route([1, 2]).stage.tolist() == [1, 1]
    router.threshold = 0.5
    assert router.thresholds == [0.5] and router.route([1, 2]).stage.tolist() == [0, 0]
    with pytest.raises(ValueError, match="range"):
        router.thresholds = [1.5]
    with pytest.raises(TypeError, match="must be a number"):
        router.threshold = "0.8"
    with pytest.raises(TypeError, match="must be a number"):
        router.threshold = True
    assert router.thresholds == [0.5]  # a refused assignment changes nothing
    copy = router.with_thresholds([0.9])
    assert copy.thresholds == [0.9] and router.thresholds == [0.5]


def test_a_choice_is_accepted_by_the_router_as_it_is():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 3000)
    p = np.clip(0.5 + (2 * y - 1) * rng.uniform(-0.2, 0.5, 3000), 0, 1)
    probs = np.c_[1 - p, p]
    res = evaluate(labels=y, primary=probs, fallback=y, cost_model=[1.0, 10.0])
    choice = choose_thresholds(res, target_accuracy=0.95)
    router = ThresholdRouter(lambda idx: probs[np.asarray(idx)], lambda idx: np.eye(2)[y[np.asarray(idx)]], choice)
    routed = router.route(np.arange(3000))
    assert routed.coverage == pytest.approx(res.at(choice).coverage)
    per_class = choose_thresholds(res, target_accuracy=0.95, per_class=True)
    router.thresholds = per_class
    assert router.route(np.arange(3000)).coverage == pytest.approx(res.at(per_class).coverage)


def test_estimators_follow_scikit_learn_conventions():
    for est in (TemperatureScaler(), CorrectnessJudge(), DriftMonitor(threshold=0.8)):
        assert clone(est).get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        TemperatureScaler().transform(np.zeros((1, 2)))
    with pytest.raises(NotFittedError):
        DriftMonitor().check([0.5])
