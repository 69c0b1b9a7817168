"""``confroute serve`` with an ``audit:`` section, end to end (a subprocess, real Ray Serve, two
joblib-saved scikit-learn stages): the service answers as the router does, and the audit loop
records every input in the ledger the config names and answers ``GET /certificate``."""

from __future__ import annotations

import json
import socket
import sqlite3
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.slow]


def test_confroute_serve_with_an_audit_section_records_every_input(tmp_path):
    pytest.importorskip("ray.serve", reason="needs Ray Serve: pip install 'confroute[serve]'")
    httpx = pytest.importorskip("httpx", reason="needs httpx: pip install 'confroute[serve]'")
    import joblib
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from _serve_proc import confroute_serve

    from confroute.cli.serve import build_router, load_config

    x, y = make_classification(n_samples=400, n_features=6, random_state=0)
    joblib.dump(LogisticRegression().fit(x[:300], y[:300]), tmp_path / "small.joblib")
    joblib.dump(RandomForestClassifier(n_estimators=20, random_state=0).fit(x[:300], y[:300]), tmp_path / "big.joblib")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "serve.yaml").write_text(
        f"name: toy\nhttp: {{host: 127.0.0.1, port: {port}}}\nray: {{num_cpus: 2}}\nallow_pickle: true\n"
        "stages:\n  - {name: small, model: 'joblib:small.joblib', deployment: {ray_actor_options: {num_cpus: 0.25}}}\n"
        "  - {name: big, model: 'joblib:big.joblib', deployment: {ray_actor_options: {num_cpus: 0.25}}}\n"
        "thresholds: [0.8]\n"
        "audit: {target_agreement: 0.9, rate: 0.5, ledger: audit.sqlite, sink: requests.jsonl, random_state: 3}\n")
    inputs = x[300:].tolist()
    want = build_router(load_config(tmp_path / "serve.yaml")).route(np.array(inputs))
    with confroute_serve(tmp_path / "serve.yaml", name="toy") as line:
        assert "POST /labels, GET /certificate" in line
        url = f"http://127.0.0.1:{port}"
        rows = httpx.post(url + "/route", json={"inputs": inputs}, timeout=120).json()["results"]
        assert [r["label"] for r in rows] == want.labels.tolist()
        for _ in range(120):
            body = httpx.get(url + "/certificate?flush=1", timeout=120).json()
            if body["evidence"]["seen"] == len(inputs):
                break
            time.sleep(0.5)
    with sqlite3.connect(tmp_path / "audit.sqlite") as db:
        seen, audited = (db.execute(q).fetchone()[0] for q in (
            "SELECT COUNT(*) FROM records", "SELECT COUNT(*) FROM audits WHERE ok = 1"))
        sampled = db.execute("SELECT COUNT(*) FROM records WHERE sampled = 1").fetchone()[0]
        last = db.execute("SELECT body FROM certificates ORDER BY ev DESC LIMIT 1").fetchone()[0]
    assert body["evidence"]["seen"] == seen == len(inputs)
    assert body["metrics"]["audited"] == audited == sampled > 0
    assert body["certificate"] == json.loads(last)  # GET /certificate answered what it stored
