"""Issue 27: the label planner scans every size (the pass/fail curve is a saw-tooth) and reports
the smallest size that passes and the size from which every larger one passes."""

from __future__ import annotations

import numpy as np

from confroute.selection.bounds import clopper_pearson
from confroute.selection.paired import select_paired
from confroute.selection.planner import pass_points, plan_labels


def _passes(n, p_loss=0.002, eps=0.005):
    """The certificate itself (select_paired, difference, cp_losses) at the expected counts."""
    L = round(p_loss * n)
    return bool(select_paired([0, L], [0, 0], n, eps, 0.05, kind="difference")[0] > 0)


def test_hand_checked_saw_tooth():
    """Loss rate 0.2%, allowed drop 0.5%, delta 0.05. Expected losses round(0.002 n):
    3 from n = 1,251 to 1,749, 4 from 1,750. Clopper–Pearson upper bounds (95%):
    3 losses in 1,548 inputs: 0.0050011 > 0.005 (fails); in 1,549: 0.0049979 (passes);
    4 losses in 1,750: 0.0052229 (fails again); in 1,828: 0.0050003; in 1,829: 0.0049976 (passes).
    So 1,549 is the smallest n that passes, and every n >= 1,829 passes (1,750-1,828 fail)."""
    cp = lambda k, n: float(clopper_pearson(k, n, 0.05))  # noqa: E731
    assert cp(3, 1548) > 0.005 >= cp(3, 1549)
    assert cp(4, 1750) > 0.005 and cp(4, 1828) > 0.005 >= cp(4, 1829)
    assert (round(0.002 * 1749), round(0.002 * 1750)) == (3, 4)
    plan = plan_labels(0.002, 0.002, 0.0, epsilon=0.005, kind="difference")
    assert (plan.n_inputs, plan.n_inputs_always) == (1549, 1829)
    assert (plan.n_inputs_estimated, plan.n_inputs_estimated_always) == (1549, 1829)  # difference: the same
    for n in (plan.n_inputs, plan.n_inputs_always):
        assert _passes(n)
    assert not _passes(1548) and not _passes(1750) and not _passes(1828)
    assert all(_passes(n) for n in range(1829, 3000))
    assert plan.n_labels == int(np.ceil(1829 * 0.002))
    assert "does not involve" in plan.assumption


def test_ratio_plan_gives_both_reference_assumptions_and_each_passes():
    """SST-2 dev's rates at 65% coverage (4 disagreements, 2 losses, 2 gains of 872; dense right
    on 777): the issue's saw-tooth 2,357 / 2,398 / 2,655 / 2,835 / 2,948."""
    plan = plan_labels(4 / 872, 2 / 872, 2 / 872, epsilon=0.005, kind="ratio", reference_accuracy=777 / 872)
    assert (plan.n_inputs_estimated, plan.n_inputs_estimated_always) == (2357, 2948)
    assert plan.n_labels_estimated == 2948  # every input labelled
    assert plan.n_labels == int(np.ceil(plan.n_inputs_always * 4 / 872)) < plan.n_labels_estimated
    acc = 777 / 872

    def est(n):
        return bool(select_paired([0, round(2 / 872 * n)], [0, round(2 / 872 * n)], n, 0.005, 0.05, kind="ratio",
                                  fallback_correct=round(acc * n))[0] > 0)

    def known(n):
        return bool(select_paired([0, round(2 / 872 * n)], [0, round(2 / 872 * n)], n, 0.005, 0.05, kind="ratio",
                                  reference_lower=acc)[0] > 0)

    assert est(2357) and not est(2356) and not est(2398) and est(2948) and not est(2947)
    assert known(plan.n_inputs) and not known(plan.n_inputs - 1) and known(plan.n_inputs_always)
    assert not known(plan.n_inputs_always - 1)
    assert all(est(n) for n in range(2948, 2948 + 400)) and all(known(n) for n in range(plan.n_inputs_always, 3400))
    assert "known" in plan.assumption and "estimate" in plan.assumption


def test_pass_points_scans_exactly():
    assert pass_points(lambda n: (n >= 10) & (n != 15)) == (10, 16, 1024)
    assert pass_points(lambda n: n >= 5000)[:2] == (5000, 5000)
    assert pass_points(lambda n: n % 2 == 0, most=4096) == (2, None, 4096)  # never settles
    assert pass_points(lambda n: n < 0, most=2048) == (None, None, 2048)
