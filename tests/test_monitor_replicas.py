"""Several serving replicas on one PostgreSQL ledger (issue 22): every replica's records are
counted once, the certificate uses every replica's evidence, and the deployed threshold and the
alarm are ONE shared state, changed by compare-and-set (each change logged once, every replica
adopts it on its next batch or ``sync()``). Against a real PostgreSQL server; the multi-process
test runs two replica processes at once and SIGKILLs one of them mid-stream (3 times, each time
restarted)."""

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
from confroute.monitoring import CertificateMonitor
from confroute.monitoring.ledger import DEPLOYMENT_KEY, PostgresLedger, SQLiteLedger
from confroute.monitoring.records import stream_ladder

REPLICA = Path(__file__).parent / "monitor_replica.py"


@pytest.fixture(scope="module")
def postgres():
    yield from running_postgres()


@pytest.fixture(scope="module")
def stream():
    X, y = make_data()
    ladder = stream_ladder(make_router().route(X[:1000]).stage_scores[0])
    return X[1000:], y[1000:], ladder


def _pair(dsn, ladder, **kw):
    return [CertificateMonitor(make_router(threshold=0.5), target_agreement=0.99, audit_rate=0.5, ledger=dsn,
                               stream=f"replica-{k}", random_state=ord(k), ladder=ladder, policy="tighten", **kw)
            for k in "ab"]


def test_replicas_opening_a_new_ledger_at_once_do_not_collide(postgres):
    # Concurrent CREATE TABLE IF NOT EXISTS races in PostgreSQL's catalog (UniqueViolation on
    # pg_type): the replicas of a fresh deployment all create the schema at start.
    import threading

    for attempt in range(3):
        dsn = postgres.create_db(f"fresh{attempt}")
        barrier, errors, ledgers = threading.Barrier(8), [], []

        def open_one() -> None:
            barrier.wait()
            try:
                ledgers.append(PostgresLedger(dsn))
            except Exception as exc:  # noqa: BLE001 - the test reports every failure
                errors.append(repr(exc))

        threads = [threading.Thread(target=open_one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for ledger in ledgers:
            ledger.close()
        assert not errors, errors
        assert len(ledgers) == 8


def test_a_change_made_by_one_replica_is_adopted_by_the_other_and_logged_once(postgres, stream):
    X, _, ladder = stream
    a, b = _pair(postgres.create_db("adopt"), ladder)
    for lo in range(0, 4000, 500):  # both replicas serve; only replica a checks, until its alarm
        a.route(X[lo:lo + 250])
        b.route(X[lo + 250:lo + 500])
        a.flush()
        b.flush()
        if a.check()["alarm"] or a.changes():
            break
    changes = a.changes()
    assert [c["reason"] for c in changes] == ["tighten"] and changes[0]["old"] == 0.5
    moved = a.router.threshold
    assert moved == changes[0]["new"] != 0.5
    # the certificate behind the change counted both replicas' inputs
    assert changes[0]["evidence"]["certificate"]["evidence"]["n_seen"] == a.evidence()["seen"] == lo + 500
    assert b.router.threshold == 0.5  # b has not routed since
    b.route(X[0:10])
    b.flush()
    assert b.router.threshold == moved  # adopted on its next batch
    out = b.check()  # b's check sees the shared state: no second tighten from its stale 0.5
    assert out["threshold"] == moved and len(b.changes()) == 1
    assert a.alarm == b.alarm is False  # one e-process (for the new threshold), shared
    # a manual change on b reaches a through sync(); a revert on a is logged once and reaches b
    b.set_threshold(0.97, reason="manual")
    assert a.sync()["threshold"] == 0.97 and a.router.threshold == 0.97
    a.revert()
    b.sync()
    assert b.router.threshold == moved
    assert [(c["old"], c["new"], c["reason"]) for c in a.changes()] == [
        (0.5, moved, "tighten"), (moved, 0.97, "manual"), (0.97, moved, "revert")]
    for m in (a, b):
        m.close()


def test_concurrent_checks_serialise_on_a_version(postgres, stream):
    """Two monitors whose checks start from the same state: the second commit finds the version
    moved, starts again from the new state, and logs no second change."""
    X, _, ladder = stream
    a, b = _pair(postgres.create_db("cas"), ladder)
    for lo in range(0, 3000, 500):
        a.route(X[lo:lo + 250])
        b.route(X[lo + 250:lo + 500])
    a.flush()
    b.flush()
    stale = b.deployment.state()  # b reads the state first ...
    a.check()  # ... a commits a check (and maybe a tighten) ...
    assert a.deployment.state()["version"] > stale["version"]
    out = b.deployment.check(b.policy, b.looser, first_state=stale)  # ... b's commit from the stale state retries
    assert out["attempts"] == 2
    changes = b.changes()
    for before, after in zip(changes, changes[1:]):  # a chain: no lost or doubled update
        assert after["old"] == before["new"]
    assert a.sync()["threshold"] == b.router.threshold == a.router.threshold
    for m in (a, b):
        m.close()


def test_one_stream_cannot_be_served_by_two_live_monitors(postgres, stream):
    X, _, ladder = stream
    dsn = postgres.create_db("claim")
    a = CertificateMonitor(make_router(), target_agreement=0.99, ledger=dsn, stream="same", random_state=0)
    with pytest.raises(ValueError, match="already served by another live monitor"):
        CertificateMonitor(make_router(), target_agreement=0.99, ledger=dsn, stream="same", random_state=0,
                           claim_timeout=0.5)
    a.route(X[:100])
    a.close()  # released: a restarted replica takes its stream over
    again = CertificateMonitor(make_router(), target_agreement=0.99, ledger=dsn, stream="same", random_state=0)
    assert again.position == 100
    again.close()


def test_replicas_on_one_sqlite_file_claim_their_streams(tmp_path, stream):
    X, _, ladder = stream
    path = tmp_path / "l.sqlite"
    a = CertificateMonitor(make_router(), target_agreement=0.99, ledger=path, stream="same", random_state=0)
    with pytest.raises(ValueError, match="already served by another live monitor"):
        CertificateMonitor(make_router(), target_agreement=0.99, ledger=path, stream="same", random_state=0,
                           claim_timeout=0.2)
    b = CertificateMonitor(make_router(), target_agreement=0.99, ledger=path, stream="other", random_state=1)
    a.route(X[:50])
    b.route(X[50:100])
    a.set_threshold(0.9)
    assert b.sync()["version"] == a.sync()["version"] and b.router.threshold == 0.9
    for m in (a, b):
        m.close()


def test_an_older_ledgers_alarm_state_is_taken_over(tmp_path, stream):
    """A ledger written before the state was shared (meta "eprocess" without a version) keeps
    its e-process and deployed threshold."""
    X, _, ladder = stream
    path = tmp_path / "old.sqlite"
    first = CertificateMonitor(make_router(threshold=0.5), target_agreement=0.99, ledger=path, random_state=0)
    first.route(X[:200])
    first.check()
    first.close()
    ledger = SQLiteLedger(path)
    old = {k: v for k, v in ledger.get_meta(DEPLOYMENT_KEY).items()
           if k in ("threshold", "start_ev", "process")}  # what the earlier monitor stored
    ledger.set_meta(DEPLOYMENT_KEY, old)
    ledger.close()
    again = CertificateMonitor(make_router(threshold=0.8), target_agreement=0.99, ledger=path, random_state=0)
    state = again.sync()
    assert again.router.threshold == 0.5 and state["process"] == old["process"] and state["version"] == 1
    again.close()


def test_a_replica_resumes_only_its_own_pending_shadow_calls(postgres):
    dsn = postgres.create_db("pending")
    ledger = PostgresLedger(dsn)
    ledger.add_records([(f"{s}:0", s, 0, 0.9, 1, -1, 0, 0.25, 1, None, None, 0.8, "[0]", 0.0) for s in "ab"])
    assert ledger.pending_audits(stream="a") == [("a:0", "[0]")]
    assert sorted(ledger.pending_audits()) == [("a:0", "[0]"), ("b:0", "[0]")]
    ledger.close()


# -- two replica processes at once, one SIGKILLed mid-stream -----------------------------------------

N_BATCHES, BATCH, KILLS = 30, 50, 3
RETRIES: list[str] = []


def _spawn(dsn: str, stream: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPLICA), dsn, stream, str(N_BATCHES), str(BATCH)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    lines = out.splitlines()
    RETRIES.append(lines[-1])  # "retries <n>": compare-and-set conflicts this replica met
    return json.loads(lines[lines.index("done") + 1])


@pytest.mark.slow
def test_two_replica_processes_and_a_sigkill(postgres, tmp_path, capsys):
    dsn = postgres.create_db("two_processes")
    barrier = tmp_path / "barrier"
    env = {**os.environ, "REPLICA_BARRIER": str(barrier),
           "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).parents[1] / "src"),
                                                     os.environ.get("PYTHONPATH", "")] if p)}
    a = _spawn(dsn, "replica-a", env)
    b = _spawn(dsn, "replica-b", env)
    rng = np.random.default_rng(22)
    committed = 0
    for kill in range(KILLS):  # b is SIGKILLed at random points and restarted, while a goes on
        wait_lines = int(rng.integers(2, 5)) if kill == 0 else int(rng.integers(1, 4))
        for line in b.stdout:  # type: ignore[union-attr]
            if line.startswith("committed"):
                committed = int(line.split()[1])
                wait_lines -= 1
                if wait_lines == 0:
                    break
        time.sleep(float(rng.uniform(0.0, 0.3)))  # mid-batch: routing, shadow calls, labels or a check
        b.send_signal(signal.SIGKILL)
        b.wait()
        ledger = PostgresLedger(dsn)
        assert ledger.n_records("replica-b") >= committed  # nothing committed was lost
        ledger.close()
        b = _spawn(dsn, "replica-b", env)  # restarted under its own stream name
    for proc in (a, b):  # both streamed to the end (they block on the barrier)
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("committed") and int(line.split()[1]) == N_BATCHES * BATCH:
                break
    barrier.touch()
    final_a, final_b = _finish(a), _finish(b)

    ledger = PostgresLedger(dsn)
    rows = ledger.stream_rows()
    n = N_BATCHES * BATCH
    ids = rows["id"].tolist()
    assert len(ids) == len(set(ids)) == 2 * n  # 0 duplicated
    assert set(ids) == {f"replica-{s}:{i}" for s in "ab" for i in range(n)}  # 0 lost
    counts = ledger.counts()
    assert ledger.pending_audits() == [] and counts["labels_pending"] == 0 and counts["labels_received"] > 0
    assert ledger.counts()["audited"] == ledger.counts()["sampled"] > 0
    certificates = ledger.certificates()
    assert len(certificates) >= N_BATCHES
    assert certificates[-1]["body"]["evidence"]["n_seen"] == 2 * n  # every replica's evidence
    # one deployed threshold, changed by a chain of logged changes (none lost, none doubled)
    changes = ledger.changes()
    assert changes and changes[0]["old"] == 0.99 and changes[0]["reason"] == "loosen"
    for before, after in zip(changes, changes[1:]):
        assert after["old"] == before["new"]
    state = ledger.get_meta("eprocess")
    assert final_a == final_b == {"threshold": changes[-1]["new"], "version": state["version"]}
    # every check stored one certificate and moved the state one version on: no check's update was
    # overwritten by another's (with the version compare switched off, this run ended at 44 for 60)
    assert state["version"] == 1 + len(certificates)
    ledger.close()
    assert main(["audit", "replay", dsn]) == 0  # every stored certificate recomputed from the records
    assert main(["audit", "status", dsn]) == 0
    out = capsys.readouterr().out
    assert f"streams (replicas): 2: replica-a: {n} inputs, replica-b: {n} inputs" in out
    assert f"(state version {state['version']})" in out
    print(*RETRIES, f"{len(changes)} changes, {len(certificates)} certificates, state version {state['version']}")
