"""The remote chaos soak through the Ray Serve app (benchmarks/bench_remote_soak.py --flavour
serve) for a few seconds: a served router whose stage 1 is an ``OIPPredictor`` pointed at a
misbehaving loopback server (slow, trickling, hanging, 500s, resets), 32 HTTP requests in flight
on ``/route``. Its invariants are test assertions; the long run, with its deadline and memory
figures, is in docs/reliability.md (no timing is asserted here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("httpx", reason="OIPPredictor needs httpx: pip install 'confroute[serve]'")
pytest.importorskip("ray.serve", reason="the serving tests need Ray Serve: pip install 'confroute[serve]'")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_remote_soak import MIX, ServeSoak, parser  # noqa: E402

pytestmark = [pytest.mark.slow]


def test_served_remote_stage_soak_loses_nothing_answers_no_traceback_and_keeps_its_pool():
    args = parser().parse_args(["--flavour", "serve", "--seconds", "8", "--in-flight", "32",
                                "--max-connections", "4", "--concurrent-batches", "8", "--slow-delay", "2.0",
                                "--oip-timeout", "2.0", "--stage-timeout", "0.5"])
    out = ServeSoak(args).serve_run()
    # every request answered 200, none with a traceback; every row answered as its id says
    assert out["http_status"] == {"200": out["calls"]} and out["calls"] > 0, out["bad_bodies"]
    assert out["bodies_with_traceback"] == 0
    assert out["rows"] == 4 * out["calls"]
    assert out["rows_wrong_or_lost"] == 0
    # the chaos happened (the plan is seeded per request; the first 21 requests use every mode)
    assert out["server"]["requests"] >= 21
    assert set(out["server"]["modes"]) == {part.split("=")[0] for part in MIX.split(",")}
    assert 0 < out["rows_degraded"] and 0 < out["rows_answered_by_remote"]
    assert set(out["degraded_errors"]) == {"StageTimeoutError", "RemoteUnavailableError"}
    # the stage replica made its calls under the Fallback's timeout, and some ran into it
    assert out["stage_calls"] > 0 and out["stage_calls_timed_out"] > 0
    # the replicas were found, and the stage replica's connections to the server stayed in its pool
    assert {"ingress", "stage0-local", "stage1-oip:m"} <= set(out["replicas"])
    assert 0 < out["sockets_peak"] <= out["max_connections"] == 4
