"""A served audit loop moves the threshold of every deciding replica (issue 22): the ledger's
deployment record is the source of truth, and each replica of the first stage re-reads it at
most every ``audit.sync_interval_s`` (real Ray Serve: two replicas of the first stage).

A change made through the audit replica (``set_threshold``), one written straight into the ledger
by another process's :class:`~confroute.monitoring.Deployment` (everything to the fallback), two
``revert``, then an alarm that ``policy: tighten`` acts on: after the sync interval the answers
equal ``router.route`` at the new threshold, both first-stage replicas answered, and the ledger
records the threshold that routed each input.
"""

from __future__ import annotations

import functools
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from confroute.cli.serve import audit_options, check_config
from confroute.exceptions import CLIError

import _serve_audit_toy as toy

SYNC_S = 0.5
STAGES = [{"name": "a", "model": "onnx:/m/a"}, {"name": "b", "url": "http://gpu:8080", "classes": ["n", "p"]}]


def _cfg(audit, tmp):
    return check_config({"stages": STAGES, "thresholds": [0.9], "audit": audit}, base=tmp)


@pytest.mark.parametrize("extra, message", [
    ({"sync_interval_s": 0}, r"audit\.sync_interval_s must be a number of seconds > 0, got 0"),
    ({"sync_interval_s": "1s"}, r"audit\.sync_interval_s must be a number"),
    ({"policy": "loosen"}, r"audit\.policy must be one of \['alert', 'tighten', 'fallback_all'\], got 'loosen'"),
    ({"looser": "tighten"}, r"audit\.looser must be one of \['recommend', 'loosen'\]"),
])
def test_served_policy_keys_are_checked(extra, message, tmp_path):
    with pytest.raises(CLIError, match=message):
        _cfg({"target_agreement": 0.9, "ledger": "a.sqlite", **extra}, tmp_path)


def test_threshold_moving_policies_are_served(tmp_path):
    from confroute.integrations.serve_policy import threshold_sync

    cfg = _cfg({"target_agreement": 0.9, "ledger": "a.sqlite", "policy": "fallback_all", "looser": "loosen",
                "sync_interval_s": 2}, tmp_path)
    options = audit_options(cfg["audit"])
    assert options["policy"] == "fallback_all" and options["looser"] == "loosen"
    sync = threshold_sync(options, 2)
    assert sync.interval_s == 2.0 and sync.ledger_location == str(tmp_path / "a.sqlite")
    with pytest.raises(ValueError, match=r"audit\.sync_interval_s"):
        threshold_sync({**options, "sync_interval_s": -1}, 2)
    # A ledger object ships its location (a PostgreSQL DSN stays one); an in-memory one cannot be shared.
    from confroute.monitoring.ledger import SQLiteLedger

    ledger = SQLiteLedger(tmp_path / "b.sqlite")
    assert threshold_sync({**options, "ledger": ledger}, 2).ledger_location == str(tmp_path / "b.sqlite")
    ledger.close()
    assert threshold_sync({**options, "ledger": ":memory:"}, 2) is None


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    pytest.importorskip("httpx", reason="the serving tests need httpx: pip install 'confroute[serve]'")
    pytest.importorskip("ray.serve", reason="the serving tests need Ray Serve: pip install 'confroute[serve]'")
    import ray
    from ray import cloudpickle, serve

    from confroute.integrations.serve import build_app

    folder = tmp_path_factory.mktemp("policy")
    down, log = str(folder / "fallback-down"), str(folder / "small.log")
    cfg = _cfg({"target_agreement": 0.99, "rate": 0.5, "ledger": "audit.sqlite", "random_state": 3,
                "policy": "tighten", "looser": "loosen", "check_every": 0, "sync_interval_s": SYNC_S}, folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cloudpickle.register_pickle_by_value(toy)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_app(functools.partial(toy.make_router, down, log), name="toy", audit=audit_options(cfg["audit"]),
                        stage_options=[{"num_replicas": 2, "ray_actor_options": {"num_cpus": 0.25}, "max_batch_size": 4},
                                       {"ray_actor_options": {"num_cpus": 0.25}, "max_batch_size": 8}])
        serve.run(app, name="toy", route_prefix="/")
        yield {"url": f"http://127.0.0.1:{port}", "ledger": cfg["audit"]["ledger"], "down": down, "log": log,
               "audit": serve.get_deployment_handle("audit", app_name="toy")}
    finally:
        serve.shutdown()
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(toy)


def _route_all(service, texts):
    """``texts`` in requests of 3, 8 at a time (so both first-stage replicas get some); the rows,
    and the pids of the first-stage replicas that answered them."""
    import httpx

    open(service["log"], "w").close()
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda lo: client.post(service["url"] + "/route", json={"inputs": texts[lo:lo + 3]}),
                                range(0, len(texts), 3)))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    with open(service["log"], encoding="utf-8") as fh:
        pids = {line.split("\t", 1)[0] for line in fh if line.strip()}
    return [row for r in answers for row in r.json()["results"]], pids


def _records_since(path, pos):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*), MIN(threshold), MAX(threshold) FROM records WHERE pos >= ?",
                          (pos,)).fetchone()


def _recorded(service, n):
    """Flush the audit replica until it has recorded ``n`` inputs (the ingress hands batches on
    after answering, so the last ones may still be on their way); no more than ``n``."""
    deadline = time.monotonic() + 60
    while (seen := service["audit"].flush.remote().result()["seen"]) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    assert seen == n


def _phase(service, threshold, seed):
    """After the sync interval: every answer is ``router.route``'s at ``threshold``, both
    first-stage replicas answered, and the ledger records ``threshold`` for every input."""
    time.sleep(2 * SYNC_S)
    seen = service["audit"].flush.remote().result()["seen"]
    texts = toy.texts(60, seed=seed)
    rows, pids = _route_all(service, texts)
    expected = toy.make_router(service["down"], threshold=threshold).route(texts)
    assert [r["label"] for r in rows] == expected.labels.tolist()
    assert [r["stage"] for r in rows] == expected.stage.tolist()
    assert len(pids) == 2, f"one first-stage replica answered everything: {pids}"
    _recorded(service, seen + len(texts))
    n, lo, hi = _records_since(service["ledger"], int(seen))
    assert (n, lo, hi) == (len(texts), threshold, threshold)
    return rows


def test_every_replica_follows_the_ledgers_threshold_and_revert(service):
    from confroute.monitoring import Deployment
    from confroute.monitoring.ledger import SQLiteLedger

    base = _phase(service, 0.8, seed=11)  # the config's threshold
    assert {r["stage"] for r in base} == {0, 1}

    # Through the audit replica's monitor (as a policy's tighten / loosen would): looser.
    service["audit"].set_threshold.remote(0.5).result()
    rows = _phase(service, 0.5, seed=12)
    assert {r["stage"] for r in rows} == {0}  # small is at least 0.55 sure of every text

    # Straight into the ledger, by another process's Deployment: everything to the fallback.
    ledger = SQLiteLedger(service["ledger"])
    config = ledger.get_meta("config")
    Deployment(ledger, toy.make_router(service["down"], threshold=0.5), config["objective"], config["target"],
               config["delta"], config["min_probability"]).set_threshold(float("inf"), reason="fallback_all")
    rows = _phase(service, float("inf"), seed=13)
    assert {r["stage"] for r in rows} == {1}

    # revert undoes the ledger change, then the audit replica's one.
    assert service["audit"].revert.remote().result()["state"]["threshold"] == 0.5
    _phase(service, 0.5, seed=14)
    service["audit"].revert.remote().result()
    _phase(service, 0.8, seed=15)
    changes = [(c["old"], c["new"], c["reason"]) for c in ledger.changes()]
    assert changes == [(0.8, 0.5, "manual"), (0.5, float("inf"), "fallback_all"), (float("inf"), 0.5, "revert"),
                       (0.5, 0.8, "revert")]

    # An alarm under policy tighten: at 0.8, small accepts "not good" (big: neg), so the system
    # agrees with big on about 6 of 7 inputs, not 0.99; the audit replica's check tightens (no
    # stricter threshold is certified: everything to the fallback) and the replicas follow.
    import httpx

    from confroute.cli import main

    seen = service["audit"].flush.remote().result()["seen"]
    _route_all(service, toy.texts(120, seed=16))
    _recorded(service, seen + 120)
    body = httpx.get(service["url"] + "/certificate?flush=1", timeout=120).json()
    print({k: body[k] for k in ("alarm", "e_value", "action", "deployed_threshold")})
    assert body["alarm"] and body["action"] == "tighten"
    (old, new, reason), = [(c["old"], c["new"], c["reason"]) for c in ledger.changes()][4:]
    assert (old, reason) == (0.8, "tighten") and new > 0.8
    _phase(service, new, seed=17)
    ledger.close()
    # Certificates from records routed at five thresholds: replay recomputes the stored ones.
    assert main(["audit", "replay", service["ledger"]]) == 0
