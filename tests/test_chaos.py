"""The chaos soak (benchmarks/bench_chaos.py) on a short stream: its invariants are test assertions.

The full run (a million inputs, figures in docs/reliability.md) is a benchmark; this runs the
same code on 20,000 inputs, with the same random failures, hangs past the timeout, outages that
open the breaker and callers cancelled at random, and checks what must hold at any length.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_chaos import chaos_soak, parser  # noqa: E402


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_chaos_soak_loses_nothing_and_leaves_nothing_behind(flavour):
    args = parser().parse_args(["--n", "20000", "--flavour", flavour, "--chunk-size", "500", "--hang", "0.03",
                                "--outage", "0.01"])
    out = chaos_soak(args)
    assert out["rows_returned"] == 20000 and out["lost_inputs"] == 0
    assert out["chaos_rows_wrong"] == 0
    # the chaos happened: failures, hangs past the timeout, cancelled callers, degraded rows
    assert out["fallback_failures"] > 0 and out["fallback_hangs_past_timeout"] > 0
    assert out["chaos_calls_cancelled"] > 0 and 0 < out["degraded_rows"] < 20000
    assert 0 < out["answered_by_fallback"]
    # nothing left behind, and the limit held
    assert out["peak_calls_in_flight"] <= out["max_concurrency"]
    assert out["slots_in_use_at_end"] == 0
    assert out["breaker_state_at_end"] in ("closed", "open")
    assert out["tasks_at_end"] == out["tasks_baseline"]
    assert out["threads_after_hung_calls_ended"] <= out["threads_baseline"]
