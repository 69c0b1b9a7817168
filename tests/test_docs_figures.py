"""Issue 27: the worked figures of docs/evaluation.md (section 6) and docs/sst2-study.md are
recomputed here, not copied by hand. SST-2 dev: 872 sentences, the dense model right on 777;
target: system accuracy >= 99.5% of the dense model's, delta 0.05."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from confroute.selection.bounds import clopper_pearson
from confroute.selection.planner import paired_passes, plan_labels

DOCS = Path(__file__).resolve().parents[1] / "docs"
N, F, EPS, DELTA = 872, 777, 0.005, 0.05
ACC = F / N


@pytest.fixture(scope="module")
def page() -> str:
    return (DOCS / "evaluation.md").read_text()


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _found(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    assert m, f"the docs no longer say {pattern!r}"
    return m.group(1)


def _smallest(passes, start: int = 1) -> int:
    n = start
    while not passes(n):
        n += 1
    return n


def test_one_loss_needs(page):
    """One loss among F reference-right inputs passes the exact (ratio, cp_losses) test only when
    the Clopper–Pearson upper bound on 1 / F is at most epsilon."""
    need = _smallest(lambda f: clopper_pearson(1, f, DELTA) <= EPS)
    assert need == 947
    assert _int(_found(r"one loss would need ([\d,]+)", page)) == need
    study = (DOCS / "sst2-study.md").read_text()
    assert _int(_found(r"one loss would\s+need ([\d,]+) dense-right", study)) == need
    assert F < need  # so dev's first loss ends the walk


def test_zero_losses_need(page):
    need = math.ceil(math.log(DELTA) / math.log(1 - EPS))
    assert clopper_pearson(0, need, DELTA) <= EPS < clopper_pearson(0, need - 1, DELTA)
    assert _int(_found(r"([\d,]+) reference-right inputs at 99.5%", page)) == need


def test_conditional_first_test_needs(page):
    plan = plan_labels(0, 0, 0, epsilon=EPS, kind="ratio", reference_accuracy=ACC, bound="conditional")
    assert _int(_found(r"first test needs about ([\d,]+) inputs", page)) == plan.n_labels_estimated
    assert _int(_found(r"planner's estimate \(([\d,]+) labelled inputs\)", page)) == plan.n_labels_estimated


def test_unpaired_needs(page):
    plan = plan_labels(0, 0, 0, epsilon=EPS, kind="ratio", reference_accuracy=ACC)
    assert _int(_found(r"would need about \*\*[\d,]+\*\* labelled inputs \(([\d,]+)\)", page)) == plan.n_labels_unpaired
    assert _int(_found(r"would need about \*\*([\d,]+)\*\*", page)) == round(plan.n_labels_unpaired, -3)


def test_saw_tooth_switch_points(page):
    ns = np.arange(1, 4000)
    ok = paired_passes(ns, (2 / N, 2 / N, ACC), EPS, "ratio", DELTA, "cp_losses", "estimated")
    switches = ns[1:][np.diff(ok.astype(int)) != 0].tolist()
    text = _found(r"at 65% it (passes from [\d,]+, fails from [^)]*)\)", page)
    assert [_int(x) for x in re.findall(r"[\d,]*\d", text)] == switches


def test_planner_table(page):
    rows = re.findall(r"^\| (\d+)% \| (\d+) / (\d+) / (\d+) \| (.*)$", page, flags=re.M)
    assert [r[0] for r in rows] == ["65", "70", "80"]
    for cov, d, l, g, rest in rows:
        plan = plan_labels(int(d) / N, int(l) / N, int(g) / N, epsilon=EPS, kind="ratio", reference_accuracy=ACC)
        cells = [c.strip() for c in rest.rstrip("|").split("|")]
        if plan.n_inputs is None:
            assert cells[0].startswith("not reachable") and plan.n_inputs_estimated is None
            continue
        assert cells == [
            f"{plan.n_inputs:,} / {plan.n_inputs_always:,}", f"{plan.n_labels:,}",
            f"{plan.n_inputs_estimated:,} / {plan.n_inputs_estimated_always:,}", f"{plan.n_labels_estimated:,}",
            f"{plan.n_labels_unpaired:,}",
        ], cov
