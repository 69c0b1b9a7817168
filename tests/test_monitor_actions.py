"""The monitor's check: certificate stored at every check, the alarm's e-process, the policies
(alert, tighten, fallback_all; recommend, loosen), every change logged with its evidence and
reversible; and ``confroute audit status | labels | replay`` on the ledger."""

from __future__ import annotations

import json

import pytest

from _monitor import make_data, make_router

from confroute.cli import main
from confroute.monitoring import CertificateMonitor
from confroute.monitoring.ledger import SQLiteLedger
from confroute.monitoring.records import stream_ladder


@pytest.fixture(scope="module")
def stream():
    X, y = make_data()
    ladder = stream_ladder(make_router().route(X[:1000]).stage_scores[0])
    return X[1000:], y[1000:], ladder


def _run(monitor, X, n=4000, step=500):
    outs = []
    for lo in range(0, n, step):
        monitor.route(X[lo:lo + step])
        monitor.flush()
        outs.append(monitor.check())
    return outs


@pytest.mark.parametrize("policy, moved_to", [("alert", None), ("tighten", "certified"), ("fallback_all", "inf")])
def test_an_alarm_applies_the_policy(stream, policy, moved_to):
    X, _, ladder = stream
    router = make_router(threshold=0.5)  # accepts nearly everything: agreement ~0.95 < 0.99
    monitor = CertificateMonitor(router, target_agreement=0.99, audit_rate=0.5, random_state=7, ladder=ladder,
                                 policy=policy)
    outs = _run(monitor, X)
    first = next(i for i, o in enumerate(outs) if o["alarm"])
    assert outs[first]["e_value"] >= 1 / 0.05
    changes = monitor.changes()
    if moved_to is None:
        assert changes == [] and router.threshold == 0.5 and monitor.alarm and monitor.metrics()["alarm"] == 1.0
        assert outs[first]["action"].action == "alert"
        return
    assert [c["reason"] for c in changes] == [policy]
    cert = outs[first]["certificate"]
    # tighten: to the certified threshold, or to the most conservative one (inf) when none is
    expected = cert.threshold if moved_to == "certified" and cert.feasible else float("inf")
    assert changes[0]["old"] == 0.5 and changes[0]["new"] == router.threshold == expected
    evidence = changes[0]["evidence"]
    assert evidence["alarm"] and evidence["e_value"] >= 20
    assert evidence["certificate"] == cert.to_dict() and evidence["reason"] == outs[first]["action"].reason
    assert not monitor.alarm  # a new e-process watches the new threshold
    monitor.revert()
    assert router.threshold == 0.5 and monitor.changes()[-1]["reason"] == "revert"
    monitor.close()


@pytest.mark.parametrize("looser", ["recommend", "loosen"])
def test_a_looser_certified_threshold_is_recommended_or_applied(stream, looser):
    X, y, ladder = stream
    router = make_router(threshold=0.99)
    monitor = CertificateMonitor(router, target_relative_accuracy=0.9, audit_rate=0.25, random_state=7,
                                 ladder=ladder, looser=looser, agreement_rate=0.05)
    monitor.route(X[:2000])
    monitor.flush()
    asked = [r["id"] for r in monitor.label_requests()]
    monitor.add_labels(asked, [int(y[int(i.split(":")[1])]) for i in asked])  # runs check()
    cert = monitor.ledger.certificates()[-1]["body"]
    assert cert["feasible"] and cert["threshold"] < 0.99
    gauges = monitor.metrics()
    ev = monitor.evidence()
    assert gauges["certified_threshold"] == cert["threshold"] and gauges["certified_lower_bound"] == cert["guaranteed"]
    assert gauges["audited"] == ev["audited"] and gauges["disagreements"] == ev["disagreements"] > 0
    assert gauges["labels_received"] == ev["labels_received"] > 0 and gauges["labels_pending"] == 0
    assert gauges["alarm"] == 0.0
    if looser == "recommend":
        assert router.threshold == 0.99 and monitor.changes() == []
        assert monitor.recommendation.action == "recommend"
        assert monitor.recommendation.threshold == cert["threshold"]
    else:
        assert router.threshold == cert["threshold"]
        assert [(c["old"], c["reason"]) for c in monitor.changes()] == [(0.99, "loosen")]
        monitor.revert()
        assert router.threshold == 0.99
    monitor.close()


def test_audit_cli_status_labels_replay(stream, tmp_path, capsys):
    X, y, ladder = stream
    path = tmp_path / "ledger.sqlite"
    monitor = CertificateMonitor(make_router(), target_relative_accuracy=0.9, audit_rate=0.25, random_state=7,
                                 ladder=ladder, agreement_rate=0.05, ledger=path)
    monitor.route(X[:2000])
    monitor.flush()
    asked = [r["id"] for r in monitor.label_requests()]
    half = len(asked) // 2
    monitor.add_labels(asked[:half], [int(y[int(i.split(":")[1])]) for i in asked[:half]])
    monitor.close()
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": i, "label": int(y[int(i.split(':')[1])])}) + "\n"
                              for i in asked[half:]))
    capsys.readouterr()
    assert main(["audit", "labels", str(path), str(labels)]) == 0
    assert f"imported {len(asked) - half} labels" in capsys.readouterr().out
    assert main(["audit", "labels", str(path), str(labels)]) == 2  # the same labels again: refused
    assert "already have a label" in capsys.readouterr().err
    monitor = CertificateMonitor(make_router(), target_relative_accuracy=0.9, audit_rate=0.25, random_state=7,
                                 ladder=ladder, agreement_rate=0.05, ledger=path)
    monitor.check()
    monitor.close()
    assert main(["audit", "status", str(path)]) == 0
    out = capsys.readouterr().out
    assert "target relative accuracy 0.9 at delta 0.05" in out
    assert "is certified; coverage" in out and "2000 inputs seen" in out
    assert f"labels asked {len(asked)}, received {len(asked)}, pending 0" in out
    assert main(["audit", "replay", str(path)]) == 0
    assert "2 certificate(s) replayed, 0 differ" in capsys.readouterr().out
    # a stored certificate that does not follow from the records is caught
    ledger = SQLiteLedger(path)
    with ledger._transaction() as cur:
        cur.execute("UPDATE certificates SET body = replace(body, '\"feasible\": true', '\"feasible\": false')")
    ledger.close()
    assert main(["audit", "replay", str(path)]) == 1
    assert "DIFFERS" in capsys.readouterr().out
    assert main(["audit", "status", str(tmp_path / "missing.sqlite")]) == 2
