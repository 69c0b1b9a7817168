"""Issue 27: a certificate does not depend on the order the calibration rows are passed in, says
what it assumes about them, and a failed certificate reports no bound."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from confroute.selection.accepted import certify_accepted_accuracy
from confroute.selection.bounds import betting_order
from confroute.selection.certificate import EXCHANGEABLE
from confroute.selection.relative import certify_relative_accuracy

from _selection import choose


def _data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    s = np.round(rng.random(n), 3)  # ties
    ok = rng.random(n) < 0.5 + 0.5 * s
    ref = rng.random(n) < 0.9
    label = (rng.random(n) < s).astype(int)
    pred = np.where(ok, label, 1 - label)
    orders = {
        "as_drawn": np.arange(n),
        "score_ascending": np.argsort(s, kind="stable"),
        "score_descending": np.argsort(-s, kind="stable"),
        "by_class": np.argsort(pred, kind="stable"),
        "by_label": np.argsort(label, kind="stable"),
    }
    return s, ok, ref, orders


def _same(a, b):
    da, db = a.to_dict(), b.to_dict()
    assert da == db, {k: (da[k], db[k]) for k in da if da[k] != db[k]}


@pytest.mark.parametrize("method", ["fallback", "single", "multistart", "split", "betting"])
def test_accepted_certificate_is_the_same_in_every_row_order(method):
    s, ok, _, orders = _data()
    certs = {name: certify_accepted_accuracy(s[o], ok[o], target=0.9, method=method) for name, o in orders.items()}
    for name, c in certs.items():
        _same(c, certs["as_drawn"])
    c = certs["as_drawn"]
    assert c.certified
    assert c.random_state == (0 if method == "betting" else None)
    assert c.assumption.startswith(EXCHANGEABLE[:-1])


@pytest.mark.parametrize("bound", ["cp_losses", "conditional", "betting"])
@pytest.mark.parametrize("kind, eps", [("ratio", 0.02), ("difference", 0.01)])
def test_paired_certificate_is_the_same_in_every_row_order(bound, kind, eps):
    s, ok, ref, orders = _data()
    certs = {name: certify_relative_accuracy(s[o], np.stack([ok[o], ref[o]]), epsilon=eps, kind=kind, bound=bound)
             for name, o in orders.items()}
    for c in certs.values():
        _same(c, certs["as_drawn"])
    # answered_by (any cascade) too
    ab = np.stack([np.where(s < t, 1, 0) for t in (0.9, 0.8, 0.7, 0.6)])
    cands = {name: certify_relative_accuracy(answered_by=ab[:, o], stage_correct=np.stack([ok[o], ref[o]]),
                                             epsilon=eps, kind=kind, bound=bound) for name, o in orders.items()}
    for c in cands.values():
        _same(c, cands["as_drawn"])


def test_betting_seed_is_recorded_and_reproduces():
    s, ok, ref, _ = _data()
    a = certify_accepted_accuracy(s, ok, target=0.9, method="betting", random_state=5)
    assert a.random_state == 5 and "(random_state=5)" in a.assumption
    _same(a, certify_accepted_accuracy(s, ok, target=0.9, method="betting", random_state=5))
    fresh = certify_relative_accuracy(s, np.stack([ok, ref]), epsilon=0.02, bound="betting", random_state=None)
    assert isinstance(fresh.random_state, int)
    _same(fresh, certify_relative_accuracy(s, np.stack([ok, ref]), epsilon=0.02, bound="betting",
                                           random_state=fresh.random_state))
    with pytest.raises(ValueError, match="random_state"):
        certify_accepted_accuracy(s, ok, target=0.9, method="betting", random_state=-1)
    assert sorted(betting_order(10, 3, [np.arange(10)[::-1]]).tolist()) == list(range(10))


def test_choice_text_and_html_say_what_the_guarantee_assumes():
    s, ok, ref, _ = _data()
    ch = choose(s, ok, ref, max_accuracy_drop=0.01, bound="betting")
    assert ch.assumption.startswith(EXCHANGEABLE[:-1]) and "random_state=0" in ch.assumption
    assert ch.assumption in str(ch) and ch.assumption in ch._repr_html_()
    cp = choose(s, ok, target_accuracy=0.9)
    assert cp.assumption == EXCHANGEABLE and EXCHANGEABLE in str(cp)
    assert type(cp).from_dict(cp.to_dict()) == cp
    empirical = choose(s, ok, target_accuracy=0.9, delta=None)
    assert empirical.assumption == "" and "exchangeable" not in str(empirical)


# --------------------------------------------------------------------------- item 3
@pytest.mark.parametrize("kwargs", [
    {"target_accuracy": 0.999},
    {"target_accuracy": 0.999, "method": "single"},
    {"target_accuracy": 0.999, "method": "multistart"},
    {"target_accuracy": 0.999, "method": "split"},
    {"target_accuracy": 0.999, "method": "betting"},
    {"target_accuracy": 0.999, "correction": "bonferroni"},
    {"target_system_accuracy": 0.999},
    {"target_system_accuracy": 0.999, "correction": "bonferroni"},
    {"target_relative_accuracy": 0.9999},
    {"target_relative_accuracy": 0.9999, "bound": "conditional"},
    {"target_relative_accuracy": 0.9999, "bound": "betting"},
    {"max_accuracy_drop": 0.0001},
    {"max_accuracy_drop": 0.0001, "bound": "conditional"},
    {"max_accuracy_drop": 0.0001, "bound": "betting"},
    {"target_coverage": 0.999},
])
def test_a_failed_certificate_reports_no_bound(kwargs):
    """Nothing certifies: ``guaranteed`` is nan (never the bound at the safe end), for every
    procedure, and the text does not show a guarantee."""
    s, ok, ref, _ = _data(300, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ch = choose(s, ok, ref, **kwargs)
    assert not ch.feasible, kwargs
    assert math.isnan(ch.guaranteed), (kwargs, ch.guaranteed)
    assert "guaranteed" not in str(ch)
    assert "not reachable" in ch._repr_html_()


def test_a_failed_certificate_reports_no_bound_per_class_and_cascade():
    from confroute import choose_thresholds, evaluate

    rng = np.random.default_rng(3)
    n = 300
    labels = rng.integers(0, 2, n)
    ev = evaluate(labels=labels, primary=np.where(rng.random(n) < 0.7, labels, 1 - labels), scores=rng.random(n),
                  fallback=np.where(rng.random(n) < 0.8, labels, 1 - labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pc = choose_thresholds(ev, target_accuracy=0.999, per_class=True)
    assert not pc.feasible and math.isnan(pc.guaranteed)


def test_cascade_choice_says_what_the_guarantee_assumes():
    from confroute import choose_thresholds, evaluate

    rng = np.random.default_rng(4)
    n, k = 600, 3
    y = rng.integers(0, k, n)

    def stage(acc):
        pred = np.where(rng.random(n) < acc, y, (y + 1) % k)
        probs = np.full((n, k), 0.1)
        probs[np.arange(n), pred] = 0.5 + 0.5 * rng.random(n)
        return probs / probs.sum(axis=1, keepdims=True)

    res = evaluate(labels=y, stages=[stage(0.7), stage(0.8), stage(0.95)], cost_model=[1.0, 3.0, 25.0], grid=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        certified = choose_thresholds(res, target_system_accuracy=0.8, delta=0.1)
        empirical = choose_thresholds(res, target_system_accuracy=0.8, delta=None)
    assert certified.assumption == EXCHANGEABLE and EXCHANGEABLE in certified._repr_html_()
    assert empirical.assumption == "" and "exchangeable" not in empirical._repr_html_()
    assert type(certified).from_dict(certified.to_dict()) == certified


def test_choose_thresholds_takes_the_seed():
    s, ok, ref, orders = _data()
    a = choose(s, ok, ref, max_accuracy_drop=0.01, bound="betting", random_state=3)
    assert "random_state=3" in a.assumption
    o = orders["score_descending"]
    assert choose(s[o], ok[o], ref[o], max_accuracy_drop=0.01, bound="betting", random_state=3) == a
    b = choose(s, ok, target_accuracy=0.9, method="betting", random_state=3)
    assert b.threshold == certify_accepted_accuracy(s, ok, target=0.9, method="betting", random_state=3).threshold
