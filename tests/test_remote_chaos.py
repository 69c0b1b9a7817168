"""The remote chaos soak (benchmarks/bench_remote_soak.py) for a few seconds: its invariants
are test assertions. The long run, with its deadline and memory figures, is in
docs/reliability.md (no timing is asserted here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("httpx", reason="OIPPredictor needs httpx: pip install 'confroute[serve]'")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_remote_soak import MIX, Soak, parser  # noqa: E402


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("binding", ["oip", "stage"])
def test_remote_soak_loses_nothing_and_keeps_its_sockets(flavour, binding):
    timeouts = ["--oip-timeout", "0.5", "--stage-timeout", "1.0"] if binding == "oip" else \
        ["--oip-timeout", "1.5", "--stage-timeout", "0.5"]
    args = parser().parse_args(["--flavour", flavour, "--seconds", "3", "--in-flight", "32",
                                "--max-connections", "8", "--slow-delay", "2.0", *timeouts])
    out = Soak(args).run()
    assert out["rows"] == 4 * out["calls"] > 0
    assert out["rows_wrong_or_lost"] == 0
    # the chaos happened: the plan is seeded per request, and the first 21 requests use every mode
    assert out["server"]["requests"] >= 21
    assert set(out["server"]["modes"]) == {part.split("=")[0] for part in MIX.split(",")}
    assert 0 < out["rows_degraded"] and 0 < out["rows_answered_by_remote"]
    # every fault is one of the two errors a Fallback retries (a 500 with a list body too)
    assert set(out["degraded_errors"]) == {"StageTimeoutError", "RemoteUnavailableError"}
    # the pool bounds the process's connections to the server, and close() releases them
    assert out["sockets_peak_above_start"] <= out["max_connections"] == 8
    assert out["sockets_after_close"] == 0
    assert out["threads_end"] <= out["threads_start"]
