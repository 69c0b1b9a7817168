"""The monitor's ledger: SQLite (WAL, one transaction per batch) and a real PostgreSQL server
through the same interface; the crash test (SIGKILL at 10 random points, restart: nothing
committed is lost, nothing is duplicated, the same certificate, and ``confroute audit replay``
equals the stored certificates)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _monitor import make_data, make_router, running_postgres

from confroute.cli import main
from confroute.monitoring import CertificateMonitor, LabelError
from confroute.monitoring.ledger import PostgresLedger, SQLiteLedger, open_ledger

CHILD = Path(__file__).parent / "monitor_child.py"
N_BATCHES, BATCH = 32, 50


@pytest.fixture(scope="session")
def postgres():
    yield from running_postgres()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_spec(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    server = request.getfixturevalue("postgres")
    return server.create_db(f"t_{os.getpid()}_{time.monotonic_ns()}")


def _record(i: int, sampled: int = 0) -> tuple:
    return (f"s:{i}", "s", i, 0.9, 1, -1, 0, 0.25, sampled, None, None, 0.8, json.dumps([i]), 0.0)


def test_sqlite_ledger_is_wal_with_full_sync(tmp_path):
    ledger = SQLiteLedger(tmp_path / "l.sqlite")
    assert ledger._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    ledger.close()


def test_one_interface_on_both_back_ends(ledger_spec):
    ledger = open_ledger(ledger_spec)
    assert isinstance(ledger, PostgresLedger if ledger_spec.startswith("postgresql") else SQLiteLedger)
    ev1 = ledger.add_records([_record(0, 1), _record(1)], [("s:1", 1.0, "disagreement", "{}")])
    assert ledger.pending_audits() == [("s:0", "[0]")]
    ev2 = ledger.add_audits([("s:0", 0, 1, None, 10.0, 1.0)], [("s:0", 1.0, "disagreement", "{}")])
    assert ev2 > ev1 and ledger.pending_audits() == []
    with pytest.raises(LabelError, match="unknown id"):
        ledger.add_labels(["s:9"], [0], 2)
    with pytest.raises(LabelError, match="outside the 2 classes"):
        ledger.add_labels(["s:0"], [2], 2)
    ev3 = ledger.add_labels(["s:0", "s:1"], [0, 1], 2)
    with pytest.raises(LabelError, match="already have a label"):
        ledger.add_labels(["s:0"], [0], 2)
    rows = ledger.stream_rows()
    assert rows["id"].tolist() == ["s:0", "s:1"]
    assert rows["fallback"].tolist() == [0, -1] and rows["label"].tolist() == [0, 1]
    assert rows["audited"].tolist() == [True, False] and rows["label_requested"].tolist() == [True, True]
    before = ledger.stream_rows(upto=ev2)  # what was known at an earlier event
    assert before["label"].tolist() == [-1, -1] and before["fallback"].tolist() == [0, -1]
    assert ledger.stream_rows(upto=ev1)["fallback"].tolist() == [-1, -1]
    ledger.add_certificate({"threshold": 0.9}, ev3)
    assert ledger.certificates()[0]["body"] == {"threshold": 0.9}
    ledger.add_change(0.8, float("inf"), "fallback_all", {"e": 21.0})
    assert ledger.changes()[0]["new"] == float("inf")
    assert ledger.counts() == {"seen": 2, "sampled": 1, "audited": 1, "shadow_failures": 0, "disagreements": 1,
                               "labels_requested": 2, "labels_received": 2, "labels_pending": 0}
    with pytest.raises(Exception):  # a position committed twice is refused, not duplicated
        ledger.add_records([_record(1)])
    assert ledger.n_records() == 2 and ledger.next_pos("s") == 2
    ledger.close()


def test_replicas_share_a_postgres_ledger(postgres):
    dsn = postgres.create_db("replicas")
    X, _ = make_data()
    monitors = [CertificateMonitor(make_router(), target_agreement=0.9, audit_rate=0.3, ledger=dsn,
                                   stream=f"replica-{k}", random_state=k) for k in range(2)]
    for lo in range(1000, 1600, 100):
        for m in monitors:
            m.route(X[lo:lo + 100])
    for m in monitors:
        m.flush()
    ledger = PostgresLedger(dsn)
    rows = ledger.stream_rows()
    assert len(rows["id"]) == len(set(rows["id"].tolist())) == 1200
    assert ledger.counts()["audited"] == ledger.counts()["sampled"] > 0
    ledger.close()
    for m in monitors:
        m.close()


def _run_child(ledger: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), ledger, str(N_BATCHES), str(BATCH)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    lines = out.splitlines()
    return json.loads(lines[lines.index("done") + 1])


def _comparable(rows: dict) -> dict:
    return {k: v.tolist() for k, v in rows.items() if k not in ("ev", "cost", "shadow_cost")}


@pytest.mark.slow
def test_sigkill_at_ten_random_points_loses_and_duplicates_nothing(ledger_spec, tmp_path, request):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).parents[1] / "src"),
                                                                   os.environ.get("PYTHONPATH", "")] if p)}
    if ledger_spec.startswith("postgresql"):
        reference_ledger = request.getfixturevalue("postgres").create_db(f"ref_{time.monotonic_ns()}")
    else:
        reference_ledger = str(tmp_path / "reference.sqlite")
    reference = _finish(_run_child(reference_ledger, env))  # the same stream, never killed

    rng = np.random.default_rng(22)
    committed = 0
    kills = 0
    while kills < 10:
        proc = _run_child(ledger_spec, env)
        wait_lines = int(rng.integers(1, 4))
        seen = 0
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("committed"):
                committed = max(committed, int(line.split()[1]))
                seen += 1
                if seen >= wait_lines:
                    break
            if line.strip() == "done":
                break
        time.sleep(float(rng.uniform(0.0, 0.3)))  # land mid-batch: routing, shadow calls, labels
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        ledger = open_ledger(ledger_spec)
        assert ledger.n_records() >= committed  # no committed record lost
        ledger.close()
    final = _finish(_run_child(ledger_spec, env))

    ledger = open_ledger(ledger_spec)
    rows = ledger.stream_rows()
    n = N_BATCHES * BATCH
    assert rows["id"].tolist() == [f"default:{i}" for i in range(n)]  # each input once, in order
    assert ledger.counts()["labels_pending"] == 0 and ledger.pending_audits() == []
    ref = open_ledger(reference_ledger)
    assert _comparable(rows) == _comparable(ref.stream_rows())  # the same records as the unbroken run
    assert ref.counts() == ledger.counts()
    ref.close()
    assert final == reference  # the same certificate
    stored = ledger.certificates()
    assert len(stored) >= 2
    ledger.close()
    assert main(["audit", "replay", ledger_spec]) == 0
