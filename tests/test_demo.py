"""The embedded demo runs offline and its printed numbers are the real ones."""

from __future__ import annotations

import numpy as np

from confroute.cli import main
from confroute.cli.demo import run_demo


def test_demo_numbers_are_consistent():
    lines: list[str] = []
    figures = run_demo(print_fn=lines.append)
    text = "\n".join(lines)
    # The guarantee's target held on the calibration data and the figures printed are these.
    assert figures["choice"]["feasible"] and figures["choice"]["guaranteed"] >= 0.97
    assert f"T = {figures['temperature']:.3f}" in text
    assert f"system accuracy {figures['system_accuracy']:.2%}" in text
    # Routing helps: better than the cheap model alone, cheaper than the expensive one alone.
    assert figures["cheap_accuracy"] < figures["system_accuracy"] <= figures["expensive_accuracy"] + 0.01
    assert 0.3 < figures["coverage"] < 0.9
    # savings = 1 - (c_cheap + (1 - coverage) c_expensive) / c_expensive at the study's prices
    assert np.isclose(figures["savings_study_prices"], 1 - (0.001 + (1 - figures["coverage"]) * 0.005) / 0.005)


def test_cli_demo_runs(capsys):
    assert main(["demo", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "routed the test split" in out and "saves" in out


def test_old_module_is_a_warned_alias():
    import importlib
    import sys

    import confroute.cli.demo
    import pytest

    sys.modules.pop("confroute.demo", None)
    with pytest.deprecated_call(match="use confroute.cli.demo"):
        old = importlib.import_module("confroute.demo")
    assert old is confroute.cli.demo and old.run_demo is run_demo
