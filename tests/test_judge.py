"""CorrectnessJudge: beats max-probability where the best rule is known; plugs into the router."""

from __future__ import annotations

import numpy as np
from sklearn.exceptions import NotFittedError
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from confroute import CallablePredictor, Predictions, ThresholdRouter
from confroute.evaluation.evaluate import evaluate, threshold_sweep
from confroute.calibration.judge import CorrectnessJudge, cross_fit, judge_features
from confroute.calibration.metrics import aurc

from _selection import choose


def coverage_at(scores, correct, target):
    """Largest coverage whose accepted accuracy reaches ``target`` (oracle threshold)."""
    sw = threshold_sweep(scores, correct)
    m = sw.n_accepted[1:]
    ok = sw.primary_correct[1:] >= target * m
    return float(m[ok].max() / sw.n) if ok.any() else 0.0


def long_input_task(n, seed):
    """The primary is usually right on short texts and usually wrong on long ones; its max-prob
    says nothing about that (it is drawn independently of correctness)."""
    rng = np.random.default_rng(seed)
    words = rng.integers(1, 60, n)
    texts = [" ".join(["tok"] * int(w)) for w in words]
    long = words >= 45
    correct = rng.random(n) < np.where(long, 0.35, 0.97)
    conf = rng.uniform(0.55, 1.0, n)
    preds = Predictions.from_probs(np.c_[conf, 1 - conf], classes=["a", "b"])
    return texts, preds, correct


def test_judge_beats_max_prob_when_length_decides():
    texts, preds, correct = long_input_task(4000, 0)
    tr, te = np.arange(2000), np.arange(2000, 4000)
    judge = CorrectnessJudge().fit(preds.take(tr), [texts[i] for i in tr], correct[tr])
    s_judge = judge.score_predictions(preds.take(te), [texts[i] for i in te])
    s_max = preds.take(te).probs.max(1)
    c = correct[te]
    assert s_judge.min() >= 0 and s_judge.max() <= 1
    # Lower AURC, and much higher coverage at the same accepted accuracy, on inputs it never saw.
    assert aurc(s_judge, c) < 0.5 * aurc(s_max, c)
    cov_j, cov_m = coverage_at(s_judge, c, 0.95), coverage_at(s_max, c, 0.95)
    assert cov_j > 0.7 and cov_m < 0.2, (cov_j, cov_m)
    # The same holds with thresholds chosen with a guarantee on a calibration split.
    cal, test = te[:1000], te[1000:]
    sj = judge.score_predictions(preds.take(cal), [texts[i] for i in cal])
    t = choose(sj, correct[cal], target_accuracy=0.93, delta=0.05, method="multistart")
    st = judge.score_predictions(preds.take(test), [texts[i] for i in test])
    assert t.feasible and st[st >= t.threshold].size > 0.6 * test.size
    assert correct[test][st >= t.threshold].mean() >= 0.93
    # The learned weight that matters is on length.
    coef = judge.estimator_[-1].coef_[0]
    names = judge.feature_names_
    assert coef[names.index("log1p_words")] < 0 and abs(coef[names.index("max_prob")]) < 0.5


def ring_task(n, seed):
    """Wrong inside a ring of a 2-D embedding: a region no linear rule on the features finds."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2))
    r = np.hypot(x[:, 0], x[:, 1])
    ring = (r > 0.4) & (r < 0.7)
    correct = rng.random(n) < np.where(ring, 0.3, 0.97)
    conf = rng.uniform(0.55, 1.0, n)
    return x, Predictions.from_probs(np.c_[conf, 1 - conf]), correct


def test_gradient_boosting_judge_learns_a_region_from_extra_features():
    x, preds, correct = ring_task(3000, 1)
    tr, te = np.arange(2000), np.arange(2000, 3000)
    emb = np.asarray  # the "embedding" is the input itself

    hgb = CorrectnessJudge("hgb", extra_features=emb, max_iter=100).fit(preds.take(tr), x[tr], correct[tr])
    lin = CorrectnessJudge(extra_features=emb).fit(preds.take(tr), x[tr], correct[tr])
    c = correct[te]
    a_hgb = aurc(hgb.score_predictions(preds.take(te), x[te]), c)
    a_lin = aurc(lin.score_predictions(preds.take(te), x[te]), c)
    a_max = aurc(preds.take(te).probs.max(1), c)
    assert a_hgb < 0.6 * a_max and a_hgb < 0.75 * a_lin, (a_hgb, a_lin, a_max)
    assert coverage_at(hgb.score_predictions(preds.take(te), x[te]), c, 0.95) > 0.5


def test_fallback_helps_target_defers_only_where_the_fallback_fixes_it():
    # The primary is wrong on region A and region B; the fallback fixes A only.
    rng = np.random.default_rng(2)
    n = 4000
    region = rng.choice(3, n, p=[0.7, 0.15, 0.15])  # 0: fine, 1: A, 2: B
    primary_correct = np.where(region == 0, rng.random(n) < 0.97, False)
    fallback_correct = np.where(region == 2, False, rng.random(n) < 0.98)
    conf = rng.uniform(0.55, 1.0, n)
    preds = Predictions.from_probs(np.c_[conf, 1 - conf])
    x = np.eye(3)[region] + rng.normal(0, 0.3, (n, 3))
    emb = np.asarray
    tr, te = np.arange(2000), np.arange(2000, n)
    helps = CorrectnessJudge(target="fallback_helps", extra_features=emb).fit(
        preds.take(tr), x[tr], primary_correct[tr], fallback_correct=fallback_correct[tr])
    plain = CorrectnessJudge(extra_features=emb).fit(preds.take(tr), x[tr], primary_correct[tr])

    def system_acc_at_routed(scores, frac):
        defer = np.argsort(scores, kind="stable")[: int(frac * scores.size)]
        acc = primary_correct[te].copy()
        acc[defer] = fallback_correct[te][defer]
        return acc.mean()

    s_helps = helps.score_predictions(preds.take(te), x[te])
    s_plain = plain.score_predictions(preds.take(te), x[te])
    # Deferring 15%: the helps-judge sends region A (fixed), the plain judge a mix of A and B.
    gain_helps = system_acc_at_routed(s_helps, 0.15) - primary_correct[te].mean()
    gain_plain = system_acc_at_routed(s_plain, 0.15) - primary_correct[te].mean()
    assert gain_helps > 0.12 and gain_helps > gain_plain + 0.05, (gain_helps, gain_plain)
    with pytest.raises(ValueError, match="needs fallback_correct"):
        CorrectnessJudge(target="fallback_helps").fit(preds, None, primary_correct)


def test_judge_routes_in_the_router_and_evaluate():
    texts, preds, correct = long_input_task(600, 3)
    judge = CorrectnessJudge().fit(preds, texts, correct)
    lookup = dict(zip(range(600), preds.probs))
    primary = CallablePredictor(lambda idx: np.array([lookup[i] for i in idx]), classes=["a", "b"])
    fallback = CallablePredictor(lambda idx: np.tile([0.0, 1.0], (len(idx), 1)), classes=["a", "b"])

    class Texts(CorrectnessJudge):
        """The router's inputs are indices here; give the judge the texts they stand for."""

        def score_predictions(self, predictions, inputs):
            return super().score_predictions(predictions, [texts[i] for i in inputs])

    j2 = Texts().fit(preds, texts, correct)
    router = ThresholdRouter(primary, fallback, threshold=0.5, score=j2)
    routed = router.route(list(range(600)))
    expected = judge.score_predictions(preds, texts)
    np.testing.assert_allclose(routed.stage_scores[0], expected)
    assert (routed.stage == 0).tolist() == (expected >= 0.5).tolist()
    index = np.where(correct, preds.label_index, 1 - preds.label_index)
    res = evaluate(router, list(range(600)), np.array(["a", "b"])[index], progress=False)
    assert res.aurc == pytest.approx(aurc(expected, correct))
    with pytest.raises(ValueError, match="range"):
        ThresholdRouter(primary, fallback, threshold=1.5, score=judge)


def test_cross_fit_scores_are_out_of_fold():
    # Pure-noise extra features and labels: an in-sample judge "finds" signal, out-of-fold does not.
    rng = np.random.default_rng(4)
    n = 300
    noise = rng.normal(size=(n, 60))
    correct = rng.random(n) < 0.5
    conf = rng.uniform(0.5, 1.0, n)
    preds = np.c_[conf, 1 - conf]
    template = CorrectnessJudge(extra_features=lambda xs: noise[np.asarray(xs)], C=100.0)
    idx = np.arange(n)
    in_sample = clone(template).fit(preds, idx, correct).score_predictions(Predictions.from_probs(preds), idx)
    cf = cross_fit(template, preds, idx, correct, n_splits=5)
    assert roc_auc_score(correct, in_sample) > 0.75
    assert abs(roc_auc_score(correct, cf.oof_scores) - 0.5) < 0.1
    assert sorted(np.bincount(cf.folds).tolist()) == [60] * 5
    # Each fold's judge scored exactly the inputs it did not train on.
    for k, j in enumerate(cf.judges):
        held = cf.folds == k
        np.testing.assert_allclose(
            j.score_predictions(Predictions.from_probs(preds[held]), idx[held]), cf.oof_scores[held])
    ens = cf.score_predictions(Predictions.from_probs(preds), idx)
    assert ens.shape == (n,) and ens.min() >= 0 and ens.max() <= 1


def test_sklearn_conventions_and_errors():
    j = CorrectnessJudge("hgb", C=2.0)
    assert j.get_params()["C"] == 2.0 and not hasattr(j, "estimator_")
    assert clone(j).model == "hgb"
    preds = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    with pytest.raises(NotFittedError, match="not fitted"):
        j.score_predictions(Predictions.from_probs(preds))
    with pytest.raises(ValueError, match="both outcomes"):
        CorrectnessJudge().fit(preds, None, [True, True, True])
    with pytest.raises(ValueError, match="model must be"):
        CorrectnessJudge("forest").fit(preds, None, [True, False, True])
    fitted = CorrectnessJudge().fit(preds, None, [True, False, True])
    with pytest.raises(ValueError, match="trained on"):
        fitted.score_predictions(Predictions.from_probs(np.array([[0.5, 0.3, 0.2]])))
    with pytest.raises(ValueError, match="shape"):
        judge_features(preds, ["a", "b", "c"], extra_features=lambda xs: np.ones((2, 2)))
    X, names = judge_features(preds, [1, 2, 3])  # non-text inputs have length 0
    assert (X[:, names.index("log1p_chars")] == 0).all()
