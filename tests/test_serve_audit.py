"""The audit loop on Ray Serve (issue 22, item 5): shadow audits through the fallback stage's
deployment, label import over ``POST /labels``, the certificate over ``GET /certificate``, audit
metrics equal to the ledger's numbers, and a failing fallback that changes no user answer and
loses no audit record.

One application for the module (Ray is slow to start): the toy router of ``_serve_audit_toy``,
two ingress replicas (the audit replica is one: nothing is counted twice), a SQLite ledger and a
JSONL label sink in a temporary folder.
"""

from __future__ import annotations

import functools
import json
import socket
import sqlite3
import time
import urllib.request

import pytest

from confroute.cli.serve import audit_options, check_config, check_cpus
from confroute.exceptions import CLIError

import _serve_audit_toy as toy

N_HEALTHY, N_DOWN = 160, 80

STAGES = [{"name": "a", "model": "onnx:/m/a"}, {"name": "b", "url": "http://gpu:8080", "classes": ["n", "p"]}]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the config section (no Ray) -------------------------------------------------------------------


def _cfg(audit, stages=STAGES, thresholds=(0.9,), tmp=None):
    return check_config({"stages": stages, "thresholds": list(thresholds), "audit": audit}, base=tmp or ".")


@pytest.mark.parametrize("audit, message", [
    ({"ledger": "a.sqlite"}, r"audit: give exactly one target of"),
    ({"target_agreement": 0.9, "target_accuracy": 0.8, "ledger": "a.sqlite"}, r"exactly one target"),
    ({"target_relative_accuracy": 1.5, "ledger": "a.sqlite"}, r"audit\.target_relative_accuracy must be a number in \(0, 1\]"),
    ({"target_agreement": 0.9, "ledger": "a.sqlite", "rate": 0}, r"audit\.rate must be a number in \(0, 1\], got 0"),
    ({"target_agreement": 0.9, "ledger": "a.sqlite", "delta": "x"}, r"audit\.delta must be a number"),
    ({"target_agreement": 0.9, "ledger": "a.sqlite", "shadow_concurrency": 0}, r"audit\.shadow_concurrency must be an integer >= 1"),
    ({"target_agreement": 0.9, "ledger": "a.sqlite", "check_every": -1}, r"audit\.check_every must be an integer >= 0"),
    ({"target_agreement": 0.9, "ledger": "a.sqlite", "policy": "abstain"}, r"audit\.policy must be one of \['alert', "),
    ({"target_agreement": 0.9, "ledger": "a.sqlite", "looser": "apply"}, r"audit\.looser must be one of \['recommend', "),
    ({"target_agreement": 0.9}, r"audit\.ledger: give a SQLite file"),
    ({"target_agreement": 0.9, "ledger": "no/such/dir/a.sqlite"}, r"audit\.ledger: no such folder"),
    ({"target_agreement": 0.9, "ledger": "a.sqlite", "rat": 0.1}, r"config audit: unknown keys \['rat'\]"),
    ({"target_agreement": 0.9, "ledger": "a.sqlite", "deployment": {"num_replicas": 2}},
     r"audit\.deployment\.num_replicas: the audit loop runs in exactly one replica"),
])
def test_audit_section_errors_name_the_key(audit, message, tmp_path):
    with pytest.raises(CLIError, match=message):
        _cfg(audit, tmp=tmp_path)


def test_audit_section_needs_two_stages_and_a_global_threshold(tmp_path):
    audit = {"target_agreement": 0.9, "ledger": "a.sqlite"}
    with pytest.raises(CLIError, match="watches two stages, this config has 3"):
        _cfg(audit, stages=[*STAGES, {"name": "c", "model": "onnx:/m/c"}], thresholds=(0.9, 0.9), tmp=tmp_path)
    with pytest.raises(CLIError, match="one global threshold"):
        _cfg(audit, thresholds=([0.8, 0.9],), tmp=tmp_path)


def test_audit_section_maps_to_monitor_arguments_and_counts_its_cpu(tmp_path):
    cfg = _cfg({"target_relative_accuracy": 0.99, "rate": 0.25, "ledger": "audit.sqlite", "sink": "labels.jsonl",
                "delta": 0.05, "policy": "alert", "shadow_concurrency": 3}, tmp=tmp_path)
    assert audit_options(cfg["audit"]) == {
        "target_relative_accuracy": 0.99, "audit_rate": 0.25, "ledger": str(tmp_path / "audit.sqlite"),
        "label_sink": str(tmp_path / "labels.jsonl"), "delta": 0.05, "policy": "alert", "shadow_concurrency": 3,
        "deployment": {}}
    assert check_cpus(cfg, 2) == pytest.approx(1.2)  # 2 x 0.5 + ingress 0.1 + audit 0.1
    with pytest.raises(CLIError, match=r"ingress: 1 x 0\.1, audit: 1 x 0\.1\) but ray\.num_cpus is 1"):
        check_cpus(cfg, 1)
    assert _cfg(None)["audit"] is None


def test_check_refuses_a_ledger_written_for_another_target(tmp_path, capsys):
    import argparse
    import importlib.util

    from confroute.cli.serve import run_serve
    from confroute.monitoring.ledger import open_ledger

    ledger = open_ledger(str(tmp_path / "audit.sqlite"))
    ledger.set_meta("config", {"objective": "target_agreement", "target": 0.95, "delta": 0.05})
    ledger.close()
    (tmp_path / "serve.yaml").write_text(
        "stages:\n  - {name: a, url: 'http://127.0.0.1:9', classes: [n, p]}\n"
        "  - {name: b, url: 'http://127.0.0.1:9', classes: [n, p]}\nthresholds: [0.9]\n"
        "audit: {target_agreement: 0.9, ledger: audit.sqlite}\n")
    args = argparse.Namespace(config=str(tmp_path / "serve.yaml"), check=True, allow_pickle=False)
    assert run_serve(args) == 2
    err = capsys.readouterr().err
    assert "config audit: the ledger" in err and "was written for target 'target_agreement'" not in err
    assert "was written for target 0.95, not 0.9" in err
    # The same target passes the ledger check (and goes on to the models: here, no server).
    (tmp_path / "serve.yaml").write_text((tmp_path / "serve.yaml").read_text().replace("0.9, ledger", "0.95, ledger"))
    assert run_serve(args) == 2
    err = capsys.readouterr().err
    if importlib.util.find_spec("httpx") is None:  # the URL stages name their extra instead
        assert "OIPPredictor needs httpx: pip install 'confroute[serve]'" in err
    else:
        assert "RemoteUnavailableError" in err


# -- the served loop (real Ray Serve) --------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    pytest.importorskip("httpx", reason="the serving tests need httpx: pip install 'confroute[serve]'")
    pytest.importorskip("ray.serve", reason="the serving tests need Ray Serve: pip install 'confroute[serve]'")
    import ray
    from ray import cloudpickle, serve

    from confroute.integrations.serve import build_app

    folder = tmp_path_factory.mktemp("audit")
    down = str(folder / "fallback-down")
    cfg = _cfg({"target_relative_accuracy": 0.9, "rate": 0.5, "ledger": "audit.sqlite", "sink": "requests.jsonl",
                "random_state": 7, "shadow_concurrency": 2, "check_every": 50}, tmp=folder)
    http_port, metrics_port = _free_port(), _free_port()
    cloudpickle.register_pickle_by_value(toy)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             _metrics_export_port=metrics_port)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": http_port})
        app = build_app(functools.partial(toy.make_router, down), name="toy", audit=audit_options(cfg["audit"]),
                        stage_options={"ray_actor_options": {"num_cpus": 0.25}, "max_batch_size": 8},
                        ingress_options={"num_replicas": 2})  # two ingress replicas, one audit replica
        serve.run(app, name="toy", route_prefix="/")
        yield {"url": f"http://127.0.0.1:{http_port}", "metrics": f"http://127.0.0.1:{metrics_port}/metrics",
               "ledger": cfg["audit"]["ledger"], "sink": cfg["audit"]["sink"], "down": down, "sent": []}
    finally:
        serve.shutdown()
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(toy)


def _route(service, texts):
    import httpx

    rows = []
    with httpx.Client(timeout=120) as client:
        for lo in range(0, len(texts), 10):
            r = client.post(service["url"] + "/route", json={"inputs": texts[lo:lo + 10]})
            assert r.status_code == 200, r.text
            rows += r.json()["results"]
    service["sent"] += texts
    return rows


def _certificate(service, seen, flush=True):
    """GET /certificate (``flush``: ?flush=1) until the audit replica has recorded ``seen`` inputs."""
    import httpx

    deadline = time.monotonic() + 120
    while True:
        r = httpx.get(service["url"] + "/certificate" + ("?flush=1" if flush else ""), timeout=120)
        assert r.status_code == 200, r.text
        body = r.json()
        if body["evidence"]["seen"] >= seen or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def _ledger(path):
    """The ledger's numbers, read from the SQLite file with plain SQL."""
    with sqlite3.connect(path) as db:
        one = lambda q: db.execute(q).fetchone()[0]  # noqa: E731
        last = db.execute("SELECT body FROM certificates ORDER BY ev DESC LIMIT 1").fetchone()
        return {
            "seen": one("SELECT COUNT(*) FROM records"),
            "ids": [r[0] for r in db.execute("SELECT id FROM records ORDER BY pos")],
            "sampled": one("SELECT COUNT(*) FROM records WHERE sampled = 1"),
            "audit_rows": one("SELECT COUNT(*) FROM audits"),
            "audited": one("SELECT COUNT(*) FROM audits WHERE ok = 1"),
            "shadow_failures": one("SELECT COUNT(*) FROM audits WHERE ok = 0"),
            "labels_received": one("SELECT COUNT(*) FROM labels"),
            "labels_pending": one("SELECT COUNT(*) FROM requests") - one("SELECT COUNT(*) FROM labels"),
            "certificate": None if last is None else json.loads(last[0]),
        }


def _scrape(url, metric):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(f"ray_{metric}{{")]
    return values[-1] if values else None


def test_audits_labels_certificate_and_metrics_match_the_ledger(service):
    import httpx

    texts = toy.texts(N_HEALTHY, seed=1)
    rows = _route(service, texts)
    want = toy.make_router(service["down"]).route(texts)
    assert [r["label"] for r in rows] == want.labels.tolist()  # the audit changes no answer
    deadline = time.monotonic() + 60  # check_every: 50 -> the audit replica certifies on its own
    while _ledger(service["ledger"])["certificate"] is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _ledger(service["ledger"])["certificate"] is not None
    body = _certificate(service, N_HEALTHY)
    led = _ledger(service["ledger"])
    # Two ingress replicas, one stream: every input recorded once, positions 0..n-1.
    assert led["ids"] == [f"default:{i}" for i in range(N_HEALTHY)]
    assert led["sampled"] > 10 and led["audit_rows"] == led["sampled"] and led["shadow_failures"] == 0
    # Label requests went to the sink; the disagreements found by shadow calls are among them.
    requests = [json.loads(line) for line in open(service["sink"], encoding="utf-8")]
    assert any(q["reason"] == "disagreement" and q["input"].startswith("not good") for q in requests)
    ids = [q["id"] for q in requests]
    labels = [toy.truth(q["input"]) for q in requests]
    # Errors: unknown ids, duplicates, labels outside the classes: 400, nothing stored.
    for bad in ({"ids": ["default:99999"], "labels": ["pos"]}, {"ids": [ids[0], ids[0]], "labels": ["pos", "pos"]},
                {"ids": ids[:1], "labels": ["maybe"]}, {"ids": ids[:2], "labels": ["pos"]}, {"labels": ["pos"]}):
        r = httpx.post(service["url"] + "/labels", json=bad, timeout=60)
        assert r.status_code == 400 and r.json()["error"], (bad, r.text)
    assert httpx.post(service["url"] + "/labels", content=b"{", timeout=60).status_code == 400
    assert _ledger(service["ledger"])["labels_received"] == 0
    r = httpx.post(service["url"] + "/labels", json={"ids": ids, "labels": labels}, timeout=60)
    assert r.status_code == 200 and r.json() == {"stored": len(ids)}, r.text
    again = httpx.post(service["url"] + "/labels", json={"ids": ids[:1], "labels": labels[:1]}, timeout=60)
    assert again.status_code == 400 and "already have a label" in again.json()["error"]
    body = _certificate(service, N_HEALTHY)
    led = _ledger(service["ledger"])
    ev, m = body["evidence"], body["metrics"]
    assert ev["labels_received"] == led["labels_received"] == len(ids) and led["labels_pending"] == 0
    for key in ("seen", "audited", "shadow_failures", "labels_received", "labels_pending"):
        assert m[key] == ev[key] == led[key], key
    assert m["disagreements"] == ev["disagreements"] > 0
    cert = led["certificate"]
    assert body["certificate"] == cert  # GET /certificate stored what it answered
    assert m["certified_lower_bound"] == (cert["guaranteed"] if cert["feasible"] else None)
    assert m["certified_threshold"] == (cert["threshold"] if cert["feasible"] and cert["threshold"] != "inf" else None)
    assert m["alarm"] == 0.0 and body["deployed_threshold"] == 0.8
    # The same numbers on the Prometheus endpoint of the Ray node (exported on an interval).
    deadline, got = time.monotonic() + 60, {}
    while time.monotonic() < deadline:
        got = {k: _scrape(service["metrics"], f"confroute_audit_{k}") for k in ("seen", "audited", "labels_received")}
        if got == {k: float(led[k]) for k in got}:
            break
        time.sleep(1.0)
    assert got == {k: float(led[k]) for k in got}


def test_a_failing_fallback_changes_no_answer_and_loses_no_audit_record(service):
    before = _ledger(service["ledger"])
    texts = toy.texts(N_DOWN, seed=2)
    open(service["down"], "w").close()
    try:
        rows = _route(service, texts)
        want = toy.make_router(service["down"]).route(texts)  # the router's own answers, fallback down
        body = _certificate(service, before["seen"] + N_DOWN)
    finally:
        import os

        os.remove(service["down"])
    assert [r["label"] for r in rows] == want.labels.tolist()
    assert [r["degraded"] for r in rows] == want.degraded.tolist() and any(r["degraded"] for r in rows)
    led = _ledger(service["ledger"])
    assert led["ids"] == [f"default:{i}" for i in range(before["seen"] + N_DOWN)]  # 0 lost, 0 duplicated
    assert led["audit_rows"] == led["sampled"]  # every sampled input has its (failed) audit
    failed = led["shadow_failures"] - before["shadow_failures"]
    assert failed == led["sampled"] - before["sampled"] > 0 and led["audited"] == before["audited"]
    assert body["metrics"]["shadow_failures"] == body["evidence"]["shadow_failures"] == led["shadow_failures"]


def test_answers_do_not_wait_for_shadow_calls(service):
    """While the fallback does not answer, accepted inputs are answered and recorded; their shadow
    calls are still pending (so the answers did not wait for them), and finish once it answers."""
    import os

    before = _ledger(service["ledger"])
    hold = service["down"] + ".hold"
    texts = [f"good {i}" for i in range(40)]  # all accepted by the first stage
    open(hold, "w").close()
    try:
        rows = _route(service, texts)
        body = _certificate(service, before["seen"] + len(texts), flush=False)  # the records only
        ev = body["evidence"]
        assert ev["sampled"] - ev["audited"] - ev["shadow_failures"] > 0  # shadow calls still waiting
    finally:
        os.remove(hold)
    assert [r["label"] for r in rows] == ["pos"] * len(texts) and {r["stage"] for r in rows} == {0}
    import httpx

    ev = httpx.get(service["url"] + "/certificate?flush=1", timeout=120).json()["evidence"]
    led = _ledger(service["ledger"])
    assert ev["sampled"] == led["sampled"] == led["audit_rows"] and ev["audited"] - before["audited"] > 0


def test_a_killed_fallback_replica_changes_no_answer_and_its_shadow_calls_are_counted(service):
    """Shadow calls in flight in the fallback stage's replica when it is killed fail: counted as
    failed audits, nothing lost; the answers (all from the first stage) do not change."""
    import os

    import ray

    before = _ledger(service["ledger"])
    hold, waiting = service["down"] + ".hold", service["down"] + ".waiting"
    texts = [f"so good {i}" for i in range(40)]
    open(hold, "w").close()
    try:
        rows = _route(service, texts)
        deadline = time.monotonic() + 60
        while not os.path.exists(waiting) and time.monotonic() < deadline:  # a shadow call is in the replica
            time.sleep(0.05)
        assert os.path.exists(waiting)
        stage1 = [a for a in ray.util.list_named_actors(all_namespaces=True) if "stage1-big" in a["name"]]
        assert stage1
        for a in stage1:
            ray.kill(ray.get_actor(a["name"], namespace=a["namespace"]))
    finally:
        os.remove(hold)
        if os.path.exists(waiting):
            os.remove(waiting)
    assert [r["label"] for r in rows] == ["pos"] * len(texts) and {r["stage"] for r in rows} == {0}
    body = _certificate(service, before["seen"] + len(texts))  # flush: every shadow call done
    led = _ledger(service["ledger"])
    assert led["ids"] == [f"default:{i}" for i in range(before["seen"] + len(texts))]
    assert led["audit_rows"] == led["sampled"] > before["sampled"]
    assert led["shadow_failures"] > before["shadow_failures"]  # the calls in flight at the kill
    assert body["metrics"]["shadow_failures"] == led["shadow_failures"]


def test_audit_endpoints_answer_405_for_other_methods(service):
    import httpx

    assert httpx.get(service["url"] + "/labels", timeout=60).status_code == 405
    assert httpx.post(service["url"] + "/certificate", json={}, timeout=60).status_code == 405


def test_an_app_without_audit_answers_404_on_the_audit_endpoints():
    import asyncio

    pytest.importorskip("starlette", reason="the serving tests need Ray Serve: pip install 'confroute[serve]'")
    from confroute.integrations.serve_audit import audit_response

    r = asyncio.run(audit_response(None, "/labels", "POST", None))
    assert r.status_code == 404 and b"no audit section" in r.body
