"""compare_to_alternatives: routed points and single models on one Pareto front, in words."""

from __future__ import annotations

import json

import numpy as np
import pytest

from confroute.evaluation.alternatives import ParetoComparison, compare_to_alternatives
from confroute.evaluation.evaluate import pareto_front


def test_routing_off_the_front_is_said_plainly():
    # The shipped MiniLM pair as measured in issue 13: int8 dense beats sparse -> dense routing.
    c = compare_to_alternatives(
        [8.0, 9.5, 10.5], [0.875, 0.884, 0.889],
        {"pruned80": (7.2, 0.8658), "dense fp32": (11.2, 0.8911), "dense int8": (4.6, 0.8911)},
        cost_unit="ms per sentence",
    )
    assert not c.routing_on_front
    assert c.front == ["dense int8"]
    assert "NOT on the accuracy-cost Pareto front" in c.summary and "dense int8" in c.summary
    assert "No routed point reaches the accuracy of dense int8" in c.summary
    assert c.at_equal_accuracy("pruned80") == (3, pytest.approx(8.0 / 7.2))
    assert "routing does not beat it" in c.summary


def test_routing_on_the_front_and_cost_at_equal_accuracy():
    c = compare_to_alternatives(
        [5.0, 7.0, 9.0], [0.905, 0.915, 0.921],
        {"minilm int8": (3.2, 0.8911), "mpnet int8": (19.6, 0.9209)},
    )
    assert c.routing_on_front
    assert c.front == ["minilm int8", "routed[0]", "routed[1]", "routed[2]"]
    j, ratio = c.at_equal_accuracy("mpnet int8")
    assert c.names[j] == "routed[2]" and ratio == pytest.approx(9.0 / 19.6)
    assert "routing beats it" in c.summary
    # The front is exactly what pareto_front gives on the same points.
    assert sorted(np.flatnonzero(c.on_front)) == sorted(pareto_front(c.cost, c.accuracy))


def test_an_exact_tie_goes_to_the_alternative():
    c = compare_to_alternatives([2.0], [0.9], {"single": (2.0, 0.9)})
    assert c.front == ["single"] and not c.routing_on_front


def test_non_finite_routed_points_are_kept_but_never_on_the_front():
    c = compare_to_alternatives([np.nan, 1.0], [0.99, 0.5], {"a": (2.0, 0.8)})
    assert c.names == ("a", "routed[0]", "routed[1]")
    assert c.on_front.tolist() == [True, False, True]
    d = c.to_dict()
    assert d["points"][1]["cost"] is None
    json.dumps(d)  # JSON-ready


def test_to_dict_and_repr():
    c = compare_to_alternatives([1.5], [0.9], {"a": (1.0, 0.8), "b": (3.0, 0.95)}, routed_names=["t=0.9"])
    d = c.to_dict()
    assert d["front"] == ["a", "t=0.9", "b"] and d["routing_on_front"] is True
    assert d["summary"] == c.summary
    assert [p["name"] for p in d["points"]] == ["a", "b", "t=0.9"]
    assert "routing_on_front=True" in repr(c) and isinstance(c, ParetoComparison)


@pytest.mark.parametrize(
    "args, match",
    [
        (([1.0, 2.0], [0.5], {"a": (1, 0.5)}), "2 points"),
        (([1.0], [0.5], {}), "non-empty"),
        (([1.0], [0.5], {"a": (1.0,)}), "pair"),
        (([1.0], [0.5], {"a": (np.inf, 0.5)}), "non-finite"),
        (([1.0], [1.5], {"a": (1.0, 0.5)}), "within"),
        (([1.0], [0.5], {"routed[0]": (1.0, 0.5)}), "unique"),
    ],
)
def test_bad_inputs_are_named(args, match):
    with pytest.raises(ValueError, match=match):
        compare_to_alternatives(*args)


def test_plot_draws_every_point_and_the_front(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = compare_to_alternatives([5.0, 7.0], [0.905, 0.915], {"cheap": (3.0, 0.89), "big": (19.0, 0.92)})
    fig, ax = plt.subplots()
    out = c.plot(ax=ax, path=tmp_path / "front.png")
    assert out is ax and (tmp_path / "front.png").stat().st_size > 0
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["routed (one point per threshold)", "cheap", "big", "Pareto front"]
    front_line = ax.get_lines()[-1]
    assert front_line.get_xdata().tolist() == [3.0, 5.0, 7.0, 19.0]
    plt.close(fig)


def test_evaluation_puts_each_stage_alone_at_its_own_price():
    from confroute import evaluate

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    p = np.clip(0.5 + (2 * y - 1) * rng.uniform(-0.2, 0.5, 2000), 0, 1)
    res = evaluate(labels=y, primary=np.c_[1 - p, p], fallback=y, cost_model=[1.0, 10.0])
    cmp = res.compare_to_alternatives({"big-int8": (4.0, 1.0)})
    assert cmp.alternatives == ["primary alone", "fallback alone", "big-int8"]
    # The fallback alone costs its own price (10), not 1 + 10 as row 0 of the table does.
    points = {pt["name"]: pt for pt in cmp.to_dict()["points"]}
    assert points["fallback alone"]["cost"] == 10.0 and points["primary alone"]["cost"] == 1.0
    assert cmp.front[-1] == "big-int8" and "Pareto front" in cmp.summary
