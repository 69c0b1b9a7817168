"""evaluate(): the vectorised sweep against a brute-force loop, both call styles, exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _helpers import SpyPredictor, binary
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from confroute import CostModel, Predictions, ThresholdRouter
from confroute.calibration.calibrators import TemperatureScaler
from confroute.evaluation.evaluate import Evaluation, evaluate, pareto_front, threshold_sweep
from confroute.calibration.metrics import aurc, eaurc, expected_calibration_error


def brute_force(scores, pc, fc, c0, c1):
    """One pass over the data per candidate threshold, straight from the definitions."""
    n = len(scores)
    rows = []
    for t in [np.inf, *sorted(set(scores.tolist()), reverse=True)]:
        acc = scores >= t
        m = int(acc.sum())
        rows.append(
            dict(
                threshold=t,
                n_accepted=m,
                coverage=m / n,
                accepted_accuracy=pc[acc].mean() if m else np.nan,
                system_accuracy=(pc[acc].sum() + fc[~acc].sum()) / n,
                cost=n * c0 + (n - m) * c1,
                savings=1 - (n * c0 + (n - m) * c1) / (n * c1),
            )
        )
    return rows


@settings(max_examples=150, deadline=None)
@given(
    data=st.integers(1, 60).flatmap(
        lambda n: st.tuples(
            # Few distinct values, so ties are common.
            hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, 0.25, 0.5, 0.51, 0.9, 1.0])),
            hnp.arrays(np.bool_, n),
            hnp.arrays(np.bool_, n),
        )
    ),
    prices=st.tuples(st.floats(0, 5), st.floats(0.01, 50)),
)
def test_sweep_matches_brute_force(data, prices):
    scores, pc, fc = data
    n = len(scores)
    labels = np.zeros(n, dtype=int)
    # Predicted labels encode correctness against all-zero labels.
    res = evaluate(labels=labels, primary=np.where(pc, 0, 1), scores=scores,
                   fallback=np.where(fc, 0, 1), cost_model=list(prices))
    expected = brute_force(scores, pc, fc, *prices)
    assert res.n_thresholds == len(expected)
    for col in ["threshold", "n_accepted", "coverage", "accepted_accuracy", "system_accuracy", "cost", "savings"]:
        np.testing.assert_allclose(res.table[col], [r[col] for r in expected], rtol=1e-9, atol=1e-9,
                                   err_msg=col)
    assert res.aurc == pytest.approx(aurc(scores, pc))
    # at() agrees with the brute force at arbitrary thresholds, including between table rows.
    for t in [-1.0, 0.0, 0.3, 0.5, 0.505, 0.9, 1.0, 2.0]:
        p = res.at(t)
        acc = scores >= t
        assert p.n_accepted == acc.sum()
        assert p.system_accuracy == pytest.approx((pc[acc].sum() + fc[~acc].sum()) / n)


def test_threshold_sweep_with_per_input_costs():
    s = np.array([0.9, 0.1, 0.5])
    sw = threshold_sweep(s, [True, False, True], primary_cost=[1.0, 2.0, 3.0], fallback_cost=[10.0, 20.0, 30.0])
    # Rows accept {}, {0.9}, {0.9, 0.5}, all: cost = 6 + fallback cost of the deferred.
    assert sw.cost.tolist() == [66.0, 56.0, 26.0, 6.0]
    assert sw.baseline_cost == 60.0
    with pytest.raises(ValueError, match="give both"):
        threshold_sweep(s, [True, False, True], primary_cost=1.0)


def test_evaluate_from_predictions_with_class_names():
    classes = ["neg", "pos"]
    primary = Predictions.from_probs([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.55, 0.45]], classes)
    fallback = Predictions.from_probs([[0.8, 0.2], [0.1, 0.9], [0.3, 0.7], [0.1, 0.9]], classes)
    y = np.array(["neg", "pos", "neg", "pos"])
    res = evaluate(labels=y, primary=primary, fallback=fallback, cost_model=CostModel.per_sample([1, 4]))
    assert res.stage_accuracy == {"primary": 0.5, "fallback": 0.75}
    assert res.table["threshold"].tolist() == [np.inf, 0.9, 0.8, 0.6, 0.55]
    assert res.table["accepted_accuracy"][1:].tolist() == [1.0, 0.5, 2 / 3, 0.5]
    # Threshold 0.8 accepts rows 0 and 2 (one right); the fallback answers rows 1 and 3 (both right).
    p = res.at(0.8)
    assert (p.n_accepted, p.system_accuracy, p.cost, p.savings) == (2, 0.75, 12.0, 0.25)
    assert res.ece == pytest.approx(expected_calibration_error(primary.probs, [0, 1, 0, 1]))
    with pytest.raises(ValueError, match="not among"):
        evaluate(labels=np.array(["neg", "maybe", "neg", "pos"]), primary=primary)


def test_calibrator_changes_scores_and_reports_ece_before_and_after():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 3)) * 4
    p_true = np.exp(logits / 3) / np.exp(logits / 3).sum(axis=1, keepdims=True)
    y = (rng.random(4000)[:, None] > np.cumsum(p_true, axis=1)).sum(axis=1).clip(0, 2)
    ts = TemperatureScaler().fit(logits[:2000], y[:2000])
    primary = Predictions.from_logits(logits[2000:])
    res = evaluate(labels=y[2000:], primary=primary, calibrator=ts)
    assert res.ece_before_calibration == pytest.approx(expected_calibration_error(primary.probs, y[2000:]))
    assert res.ece < 0.5 * res.ece_before_calibration
    np.testing.assert_allclose(res.scores, ts.transform(logits[2000:]).max(axis=1))
    # With k > 2 classes, temperature changes how rows rank by max probability (so AURC moves);
    # with two classes the ranking, and so AURC, is unchanged.
    assert res.aurc != pytest.approx(evaluate(labels=y[2000:], primary=primary).aurc, abs=1e-6)
    y2 = (logits[:, 1] > logits[:, 0] + 3 * rng.normal(size=4000)).astype(int)
    ts2 = TemperatureScaler().fit(logits[:2000, :2], y2[:2000])
    two = Predictions.from_logits(logits[2000:, :2])
    assert ts2.temperature_ > 1.2
    assert evaluate(labels=y2[2000:], primary=two, calibrator=ts2).aurc == pytest.approx(
        evaluate(labels=y2[2000:], primary=two).aurc)
    assert not res.has_fallback and np.isnan(res.table["system_accuracy"]).all()


def test_evaluate_router_runs_each_stage_once_and_matches_route():
    xs = [i / 20 for i in range(21)]
    primary = SpyPredictor(lambda x: binary(x), classes=["neg", "pos"], name="cheap")
    fallback = SpyPredictor(lambda x: binary(0.9 if x > 0.3 else 0.1), classes=["neg", "pos"], name="big")
    y = np.array(["pos" if x > 0.35 else "neg" for x in xs])
    router = ThresholdRouter(primary, fallback, threshold=0.8, cost_model=CostModel.per_sample([1, 3]))
    res = evaluate(router, xs, y, progress=False, chunk_size=8)
    assert sum(len(c) for c in primary.calls) == len(xs)
    assert sum(len(c) for c in fallback.calls) == len(xs)
    assert res.stage_names == ("cheap", "big")  # the predictors' names (issue 26)
    for t in [0.55, 0.8, 0.95]:
        routed = ThresholdRouter(primary, fallback, threshold=t, cost_model=CostModel.per_sample([1, 3])).route(xs)
        p = res.at(t)
        assert p.coverage == pytest.approx(routed.coverage)
        assert p.system_accuracy == pytest.approx(np.mean(routed.labels == y))
        assert p.cost == pytest.approx(routed.total_cost)


def test_evaluate_router_progress_bar(capsys):
    pytest.importorskip("tqdm")
    primary = SpyPredictor(lambda x: binary(x), classes=["neg", "pos"])
    fallback = SpyPredictor(lambda x: binary(0.5), classes=["neg", "pos"])
    xs = [0.1, 0.6, 0.9]
    evaluate(ThresholdRouter(primary, fallback), xs, ["neg", "pos", "pos"], progress=True, chunk_size=1)
    assert "evaluate" in capsys.readouterr().err
    evaluate(ThresholdRouter(primary, fallback), xs, ["neg", "pos", "pos"], progress=False, chunk_size=1)
    assert capsys.readouterr().err == ""


def test_to_dict_is_json_and_to_pandas_matches_table():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1, 1], size=300)
    y = rng.integers(0, 2, size=300)
    res = evaluate(labels=y, primary=probs, fallback=y, cost_model=[1.0, 2.0])
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["table"]["threshold"][0] is None and d["table"]["accepted_accuracy"][0] is None
    assert len(d["table"]["coverage"]) == res.n_thresholds
    assert d["stage_accuracy"]["fallback"] == 1.0
    small = res.to_dict(max_rows=5)["table"]
    assert small["coverage"][0] == 0.0 and small["coverage"][-1] == 1.0 and len(small["coverage"]) <= 7
    df = res.to_pandas()
    assert list(df.columns)[:3] == ["threshold", "n_accepted", "coverage"]
    np.testing.assert_allclose(df["system_accuracy"], res.table["system_accuracy"])
    text = repr(res)
    assert "Evaluation(n=300" in text and "savings" in text and len(text.splitlines()) <= 16
    assert isinstance(res, Evaluation)
    assert res.eaurc == pytest.approx(eaurc(res.scores, res.primary_correct))


def test_pareto_front_against_brute_force():
    rng = np.random.default_rng(2)
    for _ in range(20):
        c = rng.integers(0, 6, size=15).astype(float)
        a = rng.integers(0, 6, size=15).astype(float)
        front = set(pareto_front(c, a).tolist())
        for i in range(15):
            dominated = any((c[j] <= c[i] and a[j] > a[i]) or (c[j] < c[i] and a[j] >= a[i]) for j in range(15))
            if dominated:
                assert i not in front
        # Exactly one representative per non-dominated (cost, accuracy) pair.
        pairs = {(c[i], a[i]) for i in range(15) if not any(
            (c[j] <= c[i] and a[j] > a[i]) or (c[j] < c[i] and a[j] >= a[i]) for j in range(15))}
        assert {(c[i], a[i]) for i in front} == pairs and len(front) == len(pairs)


def test_evaluate_errors():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(ValueError, match="labels are required"):
        evaluate(primary=probs)
    with pytest.raises(ValueError, match="give its confidence as scores"):
        evaluate(labels=[0, 1], primary=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"predicted labels of stage 'fallback' \['a', 'b'\] are not column indices"):
        evaluate(labels=np.array([0, 1]), primary=probs, fallback=np.array(["a", "b"]))
    with pytest.raises(ValueError, match="one price per stage"):
        evaluate(labels=[0, 1], primary=probs, cost_model=[1.0])
    with pytest.raises(ValueError, match="not finite"):
        evaluate(labels=[0, 1], primary=np.array([0, 1]), scores=[0.5, np.nan])
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        evaluate(labels=[0, 1], primary=probs, fallback=np.array([0, 1, 1]))


# --------------------------------------------------------------------------- one path, one name
def _small():
    return evaluate(labels=[0, 1, 1, 0], primary=[[.9, .1], [.3, .7], [.6, .4], [.45, .55]],
                    fallback=[0, 1, 1, 1], cost_model=[1.0, 10.0])


def test_at_refuses_an_evaluation_or_a_sweep():
    res = _small()
    with pytest.raises(TypeError, match="one threshold per table row"):
        res.at(res)
    sweep = threshold_sweep(res.scores, res.primary_correct, res.fallback_correct)
    with pytest.raises(TypeError, match="one threshold per table row"):
        res.at(sweep)


def test_row_thresholds_and_primary_label_index_and_their_old_names():
    res = _small()
    np.testing.assert_array_equal(res.row_thresholds, [np.inf, 0.9, 0.7, 0.6, 0.55])
    assert res.primary_label_index.tolist() == [0, 1, 0, 1]
    with pytest.deprecated_call(match="row_thresholds"):
        np.testing.assert_array_equal(res.thresholds, res.row_thresholds)
    with pytest.deprecated_call(match="primary_label_index"):
        assert res.primary_labels.tolist() == [0, 1, 0, 1]
    sweep = threshold_sweep(res.scores, res.primary_correct)
    with pytest.deprecated_call(match="Sweep.row_thresholds"):
        np.testing.assert_array_equal(sweep.thresholds, sweep.row_thresholds)


def test_old_names_of_the_evaluation_warn():
    import confroute.evaluation.evaluate as module

    with pytest.deprecated_call(match="EvaluationResult") as record:
        assert module.EvaluationResult is Evaluation
    assert record[0].filename == __file__  # the warning points at the caller's line
    with pytest.deprecated_call(match="row_thresholds") as record:
        _small().thresholds
    assert record[0].filename == __file__
    with pytest.deprecated_call(match="CascadeEvaluation"):
        assert module.CascadeEvaluation is Evaluation
    with pytest.deprecated_call(match="evaluate_cascade"):
        old = module.evaluate_cascade(labels=[0, 1], primary=[[.9, .1], [.3, .7]], fallback=[0, 1])
    assert old.to_dict() == evaluate(labels=[0, 1], primary=[[.9, .1], [.3, .7]], fallback=[0, 1]).to_dict()


def _strict(scores, predicted_index, threshold):
    """A different accept rule: ``score > threshold``."""
    s = np.asarray(scores, dtype=np.float64)
    if isinstance(threshold, np.ndarray) and threshold.ndim == 1:
        return s > threshold[np.asarray(predicted_index, dtype=np.int64)]
    return s > float(threshold)


def test_sweep_and_at_follow_a_monkeypatched_accept_rule(monkeypatch):
    from confroute.core import decision

    rng = np.random.default_rng(4)
    scores = rng.choice([0.2, 0.5, 0.5, 0.7, 0.9], 60)  # ties at every threshold
    pc, fc = rng.random(60) < 0.6, rng.random(60) < 0.9
    c0, c1 = 1.0, 5.0
    monkeypatch.setattr(decision, "accepts", _strict)
    sw = threshold_sweep(scores, pc, fc, cost_model=[c0, c1])
    res = evaluate(labels=np.zeros(60, int), primary=np.where(pc, 0, 1), scores=scores,
                   fallback=np.where(fc, 0, 1), cost_model=[c0, c1])
    assert sw.n_accepted[0] == 0 and sw.n_accepted[-1] == 60
    for h, t in enumerate(sw.row_thresholds):
        acc = scores > t  # the patched rule, straight from the definition
        assert sw.n_accepted[h] == acc.sum()
        assert sw.primary_correct[h] == pc[acc].sum()
        assert sw.system_correct[h] == pc[acc].sum() + fc[~acc].sum()
        assert sw.cost[h] == pytest.approx(60 * c0 + (~acc).sum() * c1)
        assert res.table["n_accepted"][h] == acc.sum()
    for t in [0.2, 0.5, 0.7, 0.9, 0.1]:
        p = res.at(t)
        acc = scores > t
        assert p.n_accepted == acc.sum()
        assert p.system_accuracy == pytest.approx((pc[acc].sum() + fc[~acc].sum()) / 60)
        assert res.row(res.row_at(t)).n_accepted == acc.sum()


def test_sweep_and_at_price_through_cost_model_per_input(monkeypatch):
    rng = np.random.default_rng(5)
    scores = rng.choice([0.2, 0.5, 0.7, 0.9], 40)
    pc, fc = rng.random(40) < 0.6, rng.random(40) < 0.9
    before = threshold_sweep(scores, pc, fc, cost_model=[1.0, 5.0])
    ev_before = evaluate(labels=np.zeros(40, int), primary=np.where(pc, 0, 1), scores=scores,
                         fallback=np.where(fc, 0, 1), cost_model=[1.0, 5.0])
    at_before = {t: ev_before.at(t).cost for t in [0.1, 0.5, 0.8, 1.0]}
    original = CostModel.per_input
    # A different price rule: every input also pays an overhead of 0.5.
    monkeypatch.setattr(CostModel, "per_input", lambda self, reached: original(self, reached) + 0.5)
    sw = threshold_sweep(scores, pc, fc, cost_model=[1.0, 5.0])
    np.testing.assert_allclose(sw.cost, before.cost + 20.0)
    assert sw.baseline_cost == pytest.approx(before.baseline_cost + 20.0)
    per_input = threshold_sweep(scores, pc, fc, primary_cost=1.0, fallback_cost=np.full(40, 5.0))
    np.testing.assert_allclose(per_input.cost, before.cost + 20.0)
    ev = evaluate(labels=np.zeros(40, int), primary=np.where(pc, 0, 1), scores=scores,
                  fallback=np.where(fc, 0, 1), cost_model=[1.0, 5.0])
    np.testing.assert_allclose(ev.table["cost"], ev_before.table["cost"] + 20.0)
    for t, cost in at_before.items():
        assert ev.at(t).cost == pytest.approx(cost + 20.0)


def test_evaluation_folder_has_no_import_cycle():
    import ast
    from pathlib import Path

    import confroute.evaluation as pkg

    folder = Path(pkg.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):  # every import, also in functions
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
                deps.update(n.split(".")[0] for n in names)
        graph[path.stem] = deps & {p.stem for p in folder.glob("*.py")}

    def reaches(start, goal, seen):
        return any(d == goal or (d not in seen and reaches(d, goal, seen | {d})) for d in graph[start])

    assert [m for m in graph if reaches(m, m, {m})] == []
