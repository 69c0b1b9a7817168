"""CertificateMonitor around a real scikit-learn router: same answers, ids, shadow audits off
the hot path, label requests only on disagreements, label errors, sinks, threshold changes."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from _monitor import make_data, make_router

from confroute import Fallback
from confroute.monitoring import CertificateMonitor, LabelError, MonitoredResult
from confroute.monitoring.ledger import SQLiteLedger
from confroute.predictors.callable import CallablePredictor


@pytest.fixture(scope="module")
def data():
    X, y = make_data()
    return X[1000:], y[1000:]


def _same(a, b):
    assert a.label_index.tolist() == b.label_index.tolist()
    assert a.stage.tolist() == b.stage.tolist()
    np.testing.assert_array_equal(a.confidence, b.confidence)
    np.testing.assert_array_equal(a.cost, b.cost)
    np.testing.assert_array_equal(a.stage_label_index, b.stage_label_index)


def test_answers_equal_the_routers_and_carry_ids(data, tmp_path):
    X, _ = data
    router = make_router()
    with CertificateMonitor(router, target_agreement=0.9, ledger=tmp_path / "l.sqlite", random_state=0) as monitor:
        ids = []
        for lo in range(0, 600, 100):
            answer = monitor.route(X[lo:lo + 100])
            assert isinstance(answer, MonitoredResult)
            _same(answer, router.route(X[lo:lo + 100]))
            ids += answer.ids.tolist()
        answer = asyncio.run(monitor.aroute(X[600:700]))
        _same(answer, router.route(X[600:700]))
        ids += answer.ids.tolist()
        assert ids == [f"default:{i}" for i in range(700)]
        monitor.flush()
        assert monitor.evidence()["seen"] == 700


def test_shadow_calls_sample_accepted_inputs_only_and_record_both_answers(data):
    X, _ = data
    router = make_router()
    monitor = CertificateMonitor(router, target_relative_accuracy=0.95, audit_rate=0.3, random_state=1,
                                 auto_check=False)
    result = monitor.route(X[:2000])
    monitor.flush()
    rows = monitor.ledger.stream_rows()
    accepted = result.stage == 0
    assert not rows["sampled"][~accepted].any()  # the fallback answered every deferred input already
    share = rows["sampled"][accepted].mean()
    assert 0.25 < share < 0.35, share
    np.testing.assert_array_equal(rows["p_fallback"], np.where(accepted, 0.3, 1.0))
    truth = router.stages[1].predictor.predict(X[:2000]).label_index
    audited = rows["audited"]
    np.testing.assert_array_equal(rows["fallback"][audited], truth[audited])
    assert (rows["fallback"][~audited] == -1).all()
    np.testing.assert_array_equal(rows["primary"], result.stage_label_index[0])
    ev = monitor.evidence()
    disagree = audited & (truth != result.stage_label_index[0])
    assert ev["disagreements"] == int(disagree.sum()) > 0
    # every disagreement is sent for a label; agreements only at the small agreement rate
    requested = rows["label_requested"]
    assert requested[disagree].all()
    assert requested[audited & ~disagree].mean() < 0.05
    assert not requested[~audited].any()
    monitor.close()


def test_the_shadow_call_never_delays_the_answer(data):
    X, _ = data
    release = threading.Event()
    calls = []

    def slow(xs):
        calls.append(len(xs))
        release.wait(30)
        return np.tile([0.5, 0.5], (len(xs), 1))

    router = make_router()
    monitor = CertificateMonitor(router, target_agreement=0.9, audit_rate=1.0, random_state=0,
                                 shadow_fallback=Fallback(CallablePredictor(slow)))
    for lo in range(0, 300, 50):  # answered while every shadow call is still blocked
        _same(monitor.route(X[lo:lo + 50]), router.route(X[lo:lo + 50]))
    assert not release.is_set()
    release.set()
    monitor.flush()
    assert sum(calls) == monitor.evidence()["sampled"] == monitor.evidence()["audited"] > 0
    monitor.close()


def test_a_failing_shadow_call_loses_no_answer_and_is_counted(data):
    X, _ = data

    def dead(xs):
        raise ConnectionError("fallback down")

    router = make_router()
    monitor = CertificateMonitor(router, target_agreement=0.9, audit_rate=0.5, random_state=0,
                                 shadow_fallback=Fallback(CallablePredictor(dead)))
    _same(monitor.route(X[:400]), router.route(X[:400]))
    monitor.flush()
    ev = monitor.evidence()
    assert ev["seen"] == 400 and ev["sampled"] > 0
    assert ev["shadow_failures"] == ev["sampled"] and ev["audited"] == 0
    rows = monitor.ledger.stream_rows()
    assert rows["audit_failed"].sum() == ev["sampled"]
    assert (rows["fallback"][rows["audit_failed"]] == -1).all()  # a failed call: audited, answer unknown
    assert rows["audited"][rows["audit_failed"]].all()
    monitor.close()


def test_a_killed_fallback_changes_no_user_answer(data):
    X, _ = data
    down = threading.Event()
    router0 = make_router()
    big = router0.stages[1].predictor

    def fallback(xs):
        if down.is_set():
            raise ConnectionError("killed")
        return big.predict(xs).probs

    router = make_router(fallback=Fallback(CallablePredictor(fallback), on_error="keep_previous"))
    monitor = CertificateMonitor(router, target_agreement=0.9, audit_rate=0.5, random_state=0)
    down.set()
    answer = monitor.route(X[:300])
    _same(answer, router.route(X[:300]))
    monitor.flush()
    ev = monitor.evidence()
    assert ev["seen"] == 300
    deferred = answer.reached[1]
    assert ev["shadow_failures"] == ev["sampled"] >= int(deferred.sum()) > 0  # retried off the hot path, failed
    monitor.close()


def test_labels_errors_store_nothing(data):
    X, y = data
    monitor = CertificateMonitor(make_router(), target_relative_accuracy=0.9, audit_rate=1.0, random_state=0,
                                 auto_check=False)
    monitor.route(X[:500])
    monitor.flush()
    asked = [r["id"] for r in monitor.label_requests()]
    rows = monitor.ledger.stream_rows()
    never = next(i for i, r in zip(rows["id"], rows["label_requested"]) if not r)
    truth = {f"default:{i}": int(y[i]) for i in range(500)}
    with pytest.raises(LabelError, match="unknown id"):
        monitor.add_labels([asked[0], "default:99999"], [truth[asked[0]], 1])
    with pytest.raises(LabelError, match="never sent for labelling"):
        monitor.add_labels([never], [truth[never]])
    with pytest.raises(LabelError, match="more than once"):
        monitor.add_labels([asked[0], asked[0]], [1, 1])
    with pytest.raises(LabelError, match="not among the classes"):
        monitor.add_labels([asked[0]], [7])
    assert monitor.evidence()["labels_received"] == 0
    assert monitor.add_labels(asked, [truth[i] for i in asked]) == len(asked)
    with pytest.raises(LabelError, match="already have a label"):
        monitor.add_labels(asked[:1], [truth[asked[0]]])
    ev = monitor.evidence()
    assert ev["labels_received"] == ev["labels_requested"] == len(asked) and ev["labels_pending"] == 0
    monitor.close()


def test_label_free_objective_asks_no_labels(data):
    X, _ = data
    monitor = CertificateMonitor(make_router(), target_agreement=0.9, audit_rate=0.5, random_state=0)
    monitor.route(X[:1000])
    monitor.flush()
    ev = monitor.evidence()
    assert ev["disagreements"] > 0 and ev["labels_requested"] == 0
    monitor.close()


def test_sinks_callable_jsonl_and_http(data, tmp_path):
    X, y = data
    got = []
    posted = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            posted.extend(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for sink in (got.extend, tmp_path / "requests.jsonl", f"http://127.0.0.1:{server.server_port}/labels"):
            monitor = CertificateMonitor(make_router(), target_relative_accuracy=0.9, audit_rate=0.5,
                                         random_state=0, label_sink=sink, auto_check=False)
            monitor.route(X[:600])
            monitor.flush()
            n = monitor.evidence()["labels_requested"]
            assert n > 0 and all(r["sent"] for r in monitor.label_requests())
            monitor.close()
    finally:
        server.shutdown()
    from_file = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert got == from_file == posted
    first = got[0]
    assert set(first) == {"id", "input", "predictions", "reason"}
    i = int(first["id"].split(":")[1])
    np.testing.assert_allclose(first["input"], X[i])
    assert set(first["predictions"]) == {"primary", "fallback"}
    assert any(r["predictions"]["primary"] != r["predictions"]["fallback"] for r in got)


def test_a_failing_sink_keeps_requests_for_resending(data):
    X, _ = data
    broken = [True]
    got = []

    def sink(requests):
        if broken[0]:
            raise ConnectionError("sink down")
        got.extend(requests)

    monitor = CertificateMonitor(make_router(), target_relative_accuracy=0.9, audit_rate=0.5, random_state=0,
                                 label_sink=sink, auto_check=False)
    monitor.route(X[:600])
    monitor.flush()
    assert monitor.sink_failures > 0 and not got
    broken[0] = False
    n = monitor.resend_requests()
    assert n == len(got) == monitor.evidence()["labels_requested"] > 0
    assert monitor.resend_requests() == 0
    monitor.close()


def test_import_labels_jsonl_and_csv(data, tmp_path):
    X, y = data
    monitor = CertificateMonitor(make_router(), target_relative_accuracy=0.9, audit_rate=1.0, random_state=0,
                                 auto_check=False)
    monitor.route(X[:500])
    monitor.flush()
    asked = [r["id"] for r in monitor.label_requests()]
    half = len(asked) // 2
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"id": i, "label": int(y[int(i.split(':')[1])])}) + "\n"
                                              for i in asked[:half]))
    (tmp_path / "b.csv").write_text("id,label\n" + "".join(f"{i},{int(y[int(i.split(':')[1])])}\n"
                                                           for i in asked[half:]))
    assert monitor.import_labels(str(tmp_path / "a.jsonl")) == half
    assert monitor.import_labels(str(tmp_path / "b.csv")) == len(asked) - half
    rows = monitor.ledger.stream_rows()
    labelled = rows["label"] >= 0
    assert labelled.sum() == len(asked)
    np.testing.assert_array_equal(rows["label"][labelled], y[:500][labelled])
    monitor.close()


def test_threshold_changes_are_logged_and_reversible(data, tmp_path):
    X, _ = data
    router = make_router(threshold=0.8)
    path = tmp_path / "l.sqlite"
    monitor = CertificateMonitor(router, target_agreement=0.9, ledger=path, random_state=0)
    monitor.route(X[:100])
    monitor.set_threshold(0.95, reason="manual", evidence={"why": "test"})
    assert router.threshold == 0.95
    _same(monitor.route(X[:100]), make_router(threshold=0.95).route(X[:100]))
    monitor.set_threshold(float("inf"), reason="fallback_all")
    assert (monitor.route(X[:50]).stage == 1).all()
    monitor.revert()
    assert router.threshold == 0.95
    monitor.revert()
    assert router.threshold == 0.8
    with pytest.raises(ValueError, match="no threshold change to revert"):
        monitor.revert()
    changes = monitor.changes()
    assert [(c["old"], c["new"], c["reason"]) for c in changes] == [
        (0.8, 0.95, "manual"), (0.95, float("inf"), "fallback_all"), (float("inf"), 0.95, "revert"),
        (0.95, 0.8, "revert")]
    assert changes[0]["evidence"] == {"why": "test"}
    assert changes[2]["reverts"] == changes[1]["ev"] and changes[3]["reverts"] == changes[0]["ev"]
    monitor.close()
    # a restarted monitor deploys the ledger's last threshold and goes on numbering
    router2 = make_router(threshold=0.5)
    monitor = CertificateMonitor(router2, target_agreement=0.9, ledger=path, random_state=0)
    assert router2.threshold == 0.8 and monitor.position == 250
    with pytest.raises(ValueError, match="written for objective"):
        CertificateMonitor(make_router(), target_accuracy=0.9, ledger=SQLiteLedger(path))
    monitor.close()


def test_wrong_arguments_are_refused():
    router = make_router()
    with pytest.raises(ValueError, match="exactly one"):
        CertificateMonitor(router)
    with pytest.raises(ValueError, match="exactly one"):
        CertificateMonitor(router, target_accuracy=0.9, target_agreement=0.9)
    with pytest.raises(ValueError, match="audit_rate"):
        CertificateMonitor(router, target_accuracy=0.9, audit_rate=1.5)
    with pytest.raises(ValueError, match="policy"):
        CertificateMonitor(router, target_accuracy=0.9, policy="panic")


def test_a_full_shadow_backlog_postpones_audits_without_losing_them(data):
    X, _ = data
    release = threading.Event()

    def slow(xs):
        release.wait(30)
        return np.tile([0.5, 0.5], (len(xs), 1))

    router = make_router()
    monitor = CertificateMonitor(router, target_agreement=0.9, audit_rate=1.0, random_state=0, max_shadow_backlog=40,
                                 shadow_fallback=Fallback(CallablePredictor(slow)))
    for lo in range(0, 500, 50):
        _same(monitor.route(X[lo:lo + 50]), router.route(X[lo:lo + 50]))
    release.set()
    monitor.flush()
    ev = monitor.evidence()
    assert monitor.shadow_postponed > 0  # the backlog was full: some waited in the ledger
    assert ev["sampled"] == ev["audited"] > 40 and monitor.ledger.pending_audits() == []
    monitor.close()
