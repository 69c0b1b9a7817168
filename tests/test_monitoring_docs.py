"""The figures of docs/monitoring-statistics.md are the benchmark results, not hand copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "monitoring-statistics.md").read_text()
RESULTS = ROOT / "benchmarks" / "results"


def test_growth_table_is_the_benchmark():
    g = json.loads((RESULTS / "stream_growth.json").read_text())
    for variant in ("reference", "agreement sample"):
        at = [next(r for r in c if r["n"] == 100_000) for k, c in g["runs"].items() if k.startswith(variant + "/")]
        assert ", ".join(f"{r['coverage']:.3f}" for r in at) in PAGE
        assert ", ".join(str(r["labels"]) for r in at) in PAGE
        assert min(r["coverage"] for r in at) >= 0.40 and max(r["labels"] for r in at) <= 1000   # the bar
    ref = [c for k, c in g["runs"].items() if k.startswith("reference/")]
    assert ", ".join(f"{next(r for r in c if r['n'] == 100_000)['agreement_coverage']:.3f}" for c in ref) in PAGE


@pytest.mark.parametrize("name", ["stream_validity.json", "stream_validity_1000b.json", "stream_validity_1000c.json",
                                  "stream_validity_more.json", "stream_validity_drift.json"])
def test_validity_rows_are_the_benchmark(name):
    d = json.loads((RESULTS / name).read_text())
    big = {(r["population"], r["setting"]) for f in ("stream_validity.json", "stream_validity_1000b.json",
                                                                 "stream_validity_1000c.json")
           for r in json.loads((RESULTS / f).read_text())["validity"]}
    for r in d["validity"]:
        assert r["ever_wrong"] <= r["margin"]
        if r["streams"] < 1000 and (r["population"], r["setting"]) in big:
            continue  # the page shows the 1,000-stream run of this setting
        assert f"{r['ever_wrong']:.3f} ({round(r['ever_wrong'] * r['streams'])}/{r['streams']})" in PAGE
        assert r["ever_wrong"] <= r["margin"]
    for r in d["drift"] if name == "stream_validity_drift.json" else ():  # the page shows the 1,000-stream run
        assert f"| {r['streams']} |" in PAGE and f"{r['alarm_before_drift']:.3f}" in PAGE
        if r["drift_at"] < r["n"]:
            assert f"{r['delay_median']:,.0f}" in PAGE


def test_negative_control_is_the_benchmark():
    d = json.loads((RESULTS / "stream_validity_naive.json").read_text())
    assert f"{d['ever_wrong']:.1%} of them" in PAGE and d["ever_wrong"] > 0.05
